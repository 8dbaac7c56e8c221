"""segmentation-models-pytorch architectures, registered by name as ``smp.<Architecture>``.

Each architecture takes any encoder smp knows (``encoder_name``) and any number of input
bands. Nothing is downloaded: ``encoder_weights`` is None by default, and weights come
from a model bundle (or from a local ``.safetensors`` file of encoder weights).
segmentation-models-pytorch (and torch) are imported only when a model is built.
"""

from __future__ import annotations

import os
from typing import Any

from seamline.errors import ModelError

__all__ = ["build"]


def build(
    architecture: str,
    in_channels: int,
    classes: int,
    *,
    encoder_name: str = "resnet18",
    encoder_weights: str | os.PathLike | None = None,
    **kwargs: Any,
) -> Any:
    """Build ``segmentation_models_pytorch.<architecture>`` for *in_channels* bands and *classes* classes.

    Parameters
    ----------
    architecture : str
        An smp class name (``"Unet"``, ``"FPN"``, ``"Segformer"``, ...).
    in_channels : int
        Number of input bands.
    classes : int
        Number of output classes.
    encoder_name : str
        Any encoder smp knows (``"resnet18"``, ``"efficientnet-b0"``, ``"mit_b0"``, ...).
    encoder_weights : str or os.PathLike, optional
        None (random weights; nothing is downloaded) or a local ``.safetensors`` file
        holding the encoder's state dict.
    **kwargs
        Passed to the smp class (``decoder_channels``, ``encoder_depth``, ...).

    Returns
    -------
    torch.nn.Module

    Raises
    ------
    ModelError
        If the architecture, encoder or arguments are wrong, or *encoder_weights* is
        neither None nor a local file.
    """
    import segmentation_models_pytorch as smp

    local = encoder_weights is not None and os.path.isfile(encoder_weights)
    if encoder_weights is not None and not local:
        raise ModelError(f"encoder_weights must be None or a local .safetensors file, got {encoder_weights!r}")
    if not hasattr(smp, architecture):
        raise ModelError(f"segmentation-models-pytorch has no architecture {architecture!r}")
    try:
        model = getattr(smp, architecture)(
            encoder_name=encoder_name, encoder_weights=None, in_channels=in_channels, classes=classes, **kwargs
        )
    except (KeyError, ValueError, TypeError) as exc:
        raise ModelError(f"cannot build smp.{architecture} with encoder {encoder_name!r}: {exc}") from exc
    if local and encoder_weights is not None:
        from safetensors.torch import load_file

        model.encoder.load_state_dict(load_file(os.fspath(encoder_weights)))
    return model
