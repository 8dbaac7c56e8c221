"""nnU-Net's inference around seamline's engine: the bundle an nnU-Net model loads as.

:class:`NNUNetBundle` runs for one volume what nnunetv2's ``nnUNetPredictor`` runs
(preprocessing, ``predict_sliding_window_return_logits``,
``convert_predicted_logits_to_segmentation_with_correct_shape``), in the same order and
with the same numbers, all from the card's ``pipeline`` (so a bundle written by
``seamline import-model`` runs it too):

1. :func:`.preprocess.to_network_grid`: axes, crop, normalization, resampling;
2. the engine, with nnU-Net's tile placement and importance map
   (``placement="nnunet"``, ``blend="nnunet"``, tile step 0.5 of the patch), the module
   averaging mirrorings and folds;
3. the way back (the ``restore`` of :meth:`NNUNetBundle.model_input`): the logits
   resampled back onto the crop (linear by default, the anisotropic rule as for the
   data), turned into labels (argmax, or the regions painted in ``regions_class_order``)
   or probabilities (softmax, or sigmoid per region), pasted into the uncropped volume
   (background outside the box), and the axes put back as the input had them.

Everything after the few reductions of step 1 is lazy and block by block: no step holds
a (classes x volume) array, the one that makes nnU-Net itself run out of memory on large
volumes. On a GPU the networks run under float16 autocast, as nnU-Net's
(``amp="float16"``, where the engine would choose bfloat16), and on the CPU in float32, as
nnU-Net's. nnU-Net sums tiles and exports logits in float16; seamline keeps float32, so a
label may differ where two logits are within float16 rounding of each other: on
boundaries between labels.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import dask.array as da
import numpy as np
from nibabel import orientations
from scipy.special import expit

from seamline.bundle import Bundle, ModelCard
from seamline.devices import resolve_device
from seamline.errors import InputError, ModelError
from seamline.image import Image
from seamline.inference import OUTPUTS
from seamline.inference import predict as run_engine
from seamline.logits import label_dtype, paint_regions, probabilities

from ..geometry import GEOMETRY_KEYS, reorient
from .checks import check_pipeline
from .preprocess import Grid, to_network_grid
from .resample import resample_to_shape

__all__ = ["NNUNetBundle", "from_card"]


def _labels(logits: np.ndarray, order: list[int] | None, dtype: np.dtype) -> np.ndarray:
    """Labels of one block: argmax, or each region painted over the last where its sigmoid exceeds 0.5."""
    if order is None:
        return logits.argmax(axis=0).astype(dtype)[None]
    return paint_regions(expit(logits), order).astype(dtype)


def _probabilities(logits: np.ndarray, regions: bool) -> np.ndarray:
    return expit(logits) if regions else probabilities(logits)


def _on_cuda(device: Any) -> bool:
    try:
        return resolve_device(device).type == "cuda"
    except (RuntimeError, TypeError):  # not a device: the engine says so
        return False


def _paste(data: da.Array, box: tuple[tuple[int, int], ...], shape: tuple[int, ...], fill: list[float]) -> da.Array:
    """The crop put back in the uncropped volume, each channel padded with its own value."""
    pads = [(0, 0), *((lo, n - hi) for (lo, hi), n in zip(box, shape, strict=True))]
    if not any(any(p) for p in pads):
        return data
    return da.concatenate(
        [da.pad(data[c : c + 1], pads, mode="constant", constant_values=value) for c, value in enumerate(fill)]
    )


class NNUNetBundle(Bundle):
    """An nnU-Net v2 model: its folds as one module, its card, and nnU-Net's pipeline around the engine.

    Parameters
    ----------
    module : seamline_medical.nnunet.network.NNUNetNetwork
        The folds' networks with nnU-Net's mirroring.
    card : ModelCard
        With ``pipeline["format"] == "nnunet"`` (see :mod:`.plans`).

    Raises
    ------
    ModelError
        If the pipeline lacks a step or holds a value nnU-Net's pipeline does not take
        (:func:`.checks.check_pipeline`).
    """

    def __init__(self, module: Any, card: ModelCard) -> None:
        super().__init__(module, card)
        heads = card.kwargs.get("heads") or len(card.classes)
        self.pipeline = check_pipeline(card.pipeline, channels=card.in_channels, heads=heads, classes=len(card.classes))
        self._regions = self.pipeline["regions"] is not None

    def model_input(self, image: Image) -> tuple[Image, Callable[[Image, str], Image]]:
        """The image on the network's grid as nnU-Net's preprocessing leaves it, and the way back.

        Parameters
        ----------
        image : Image
            ``(C, i, j, k)``, NIfTI voxel axes, the model's channels.

        Returns
        -------
        model_input : Image
            Normalized and resampled, along nnU-Net's axes (lazy; the crop box and the
            statistics are computed here); its affine places it in world space.
        restore : callable
            ``restore(logits, output)``: unlike a seamline bundle's, it takes the network's
            logits on that grid and makes *output* (``"labels"``, ``"probabilities"`` or
            ``"scores"``) from them on *image*'s grid, as nnU-Net's export does.

        Raises
        ------
        InputError
            If the image does not have the model's channels or is not a volume.
        ModelError
            If the card sets a normalization (nnU-Net's is in its pipeline).
        """
        if self.card.normalization.get("kind") != "none":
            raise ModelError("an nnU-Net model normalizes as its plans say; its card's normalization must be none")
        checked = self.prepare(image, normalized=False)  # bands chosen and counted
        prepared, grid = to_network_grid(checked.replace(data=checked.data.astype(np.float32)), self.pipeline)
        return prepared, functools.partial(self._restore, grid=grid, image=image)

    def _engine_options(self, options: dict[str, Any]) -> dict[str, Any]:
        options.setdefault("overlap", 1 - self.pipeline["tile_step_size"])
        options.setdefault("blend", "nnunet")
        options.setdefault("placement", "nnunet")
        options.setdefault("batch_size", 1)  # as nnU-Net: its patches are large
        if _on_cuda(options.get("device", "auto")):
            options.setdefault("amp", "float16")  # nnU-Net's torch.autocast("cuda"); it runs the CPU in float32
        return super()._engine_options(options)

    def network_scores(self, image: Image | Any, **options: Any) -> Image:
        """The blended logits on the network's grid, before nnU-Net's export (lazy).

        Parameters
        ----------
        image : Image or array-like
            As for :meth:`model_input`.
        **options
            Engine options (``batch_size``, ``device``, ``progress``, ...).

        Returns
        -------
        Image
            ``(heads, *network_shape)`` float32 logits.
        """
        image = image if isinstance(image, Image) else Image.from_array(image)
        options.pop("output", None)
        return run_engine(self.model_input(image)[0], self.module, output="scores", **self._engine_options(options))

    def predict(self, image: Image | Any, **options: Any) -> Image:
        """Predict *image* as nnU-Net's predictor does, lazily, block by block.

        Parameters
        ----------
        image : Image or array-like
            ``(C, i, j, k)``, NIfTI voxel axes (the model's channels).
        **options
            ``output`` (``"scores"``, ``"probabilities"`` or ``"labels"``) and the engine's
            options; ``tile_size`` and ``overlap`` default to the patch size and nnU-Net's
            tile step of 0.5, ``blend`` to nnU-Net's importance map, ``batch_size`` to 1
            (nnU-Net's patches are large).

        Returns
        -------
        Image
            On the input's grid (same shape, affine and header), with ``class_names`` and
            ``colors``.

        Raises
        ------
        InputError
            If the image does not fit the model, or an option is invalid.
        """
        output = options.pop("output", "scores")
        if output not in OUTPUTS:
            raise InputError(f"output must be one of {', '.join(OUTPUTS)}; got {output!r}")
        image = image if isinstance(image, Image) else Image.from_array(image)
        prepared, restore = self.model_input(image)
        return restore(run_engine(prepared, self.module, output="scores", **self._engine_options(options)), output)

    def _restore(self, scores: Image, output: str, *, grid: Grid, image: Image) -> Image:
        """Network-grid logits back onto the input as *output*, as nnU-Net's export does."""
        logits = scores.data
        resampling = self.pipeline["resampling"]["probabilities"]
        if resampling is not None:
            logits = resample_to_shape(logits, grid.crop_shape, grid.network_spacing, grid.spacing, **resampling)
        heads = logits.shape[0]
        if output == "labels":
            dtype = label_dtype(len(self.card.classes))
            order = self.pipeline["regions_class_order"]
            data = da.map_blocks(_labels, logits, order, dtype, dtype=dtype, chunks=((1,), *logits.chunks[1:]))
            fill = [0.0]
        elif output == "probabilities":
            data = da.map_blocks(_probabilities, logits, self._regions, dtype=np.float32)
            fill = [0.0 if self._regions or c else 1.0 for c in range(heads)]
        else:
            data = logits
            fill = [0.0 if not self._regions and not c else -np.inf for c in range(heads)]
        data = _paste(data, grid.box, grid.full_shape, fill)
        data = data.transpose((0, *(int(a) + 1 for a in np.argsort(grid.axes))))
        result = grid.source.replace(data=data)
        if grid.reoriented:
            result = reorient(result, axcodes=orientations.aff2axcodes(image.affine))
        meta = {k: v for k, v in image.meta.items() if k not in ("band_names", "nodata", "mask")}
        meta.update({k: image.meta[k] for k in GEOMETRY_KEYS if k in image.meta})
        meta.update(class_names=self.card.class_names, colors=self.card.colors)
        if output != "labels":
            meta["band_names"] = [self.card.class_names.get(v, f"class {v}") for v in self._channel_labels(heads)]
        if output == "probabilities" and self._regions:
            meta["regions_class_order"] = list(self.pipeline["regions_class_order"])  # how labels_of reads them
        return result.replace(affine=image.affine, meta=meta)

    def _channel_labels(self, heads: int) -> list[int]:
        """The label each output channel stands for: the class, or the region's painted value."""
        order = self.pipeline["regions_class_order"]
        return list(order) if order is not None else list(range(heads))


def from_card(module: Any, card: ModelCard) -> NNUNetBundle:
    """The bundle for a card whose pipeline is nnU-Net's (a folder, or a bundle imported from one).

    Parameters
    ----------
    module : torch.nn.Module
        The architecture ``"nnunet.network"``, weights loaded.
    card : ModelCard

    Returns
    -------
    NNUNetBundle

    Raises
    ------
    ModelError
        If the pipeline lacks a step this version runs, or a value in it is not what
        nnU-Net's pipeline takes (checked as :mod:`.plans` checks the plans).
    """
    return NNUNetBundle(module, card)
