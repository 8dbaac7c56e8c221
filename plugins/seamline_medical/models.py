"""Architectures for volumes and slices: MONAI's networks and TransUNet, built by name.

Each ``build_*`` function takes ``in_channels`` and ``classes`` (the model card's) plus the
network's own keyword arguments, and imports MONAI or timm only when called, so that
registering them costs nothing. MONAI networks take ``spatial_dims`` (3 by default; 2
for slice models). TransUNet is 2D, as in the paper.

A 2D network runs over volumes slice by slice when built with ``slice_axis`` (see
:func:`slice_by_slice`): it is then wrapped in :class:`seamline_medical.slices.SliceWise`
and takes 3D tiles of depth 1 along that axis, so a model card with
``spatial_dims=3``, ``tile_size=[224, 224, 1]`` and ``kwargs={"slice_axis": 2}`` predicts
axial slices through the ordinary 3D engine, geometry round trip included.

:data:`MONAI_NETWORKS` is the allow-list of MONAI network classes seamline builds by name
(``monai.<Class>``): the four with a builder of their own here, and the rest through
:func:`build_monai`, which passes its arguments to the class as they are. A MONAI bundle's
``network_def`` may only name one of them.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Sequence
from typing import Any

__all__ = [
    "MONAI_NETWORKS",
    "build_monai",
    "build_unet",
    "build_swin_unetr",
    "build_unetr",
    "build_segresnet",
    "build_transunet",
    "slice_by_slice",
]

#: MONAI networks seamline builds (``monai.networks.nets.<name>``): each maps
#: ``(N, C, *tile)`` to ``(N, K, *tile)`` in eval mode and takes ``in_channels`` and
#: ``out_channels``.
MONAI_NETWORKS = (
    "UNet",
    "BasicUNet",
    "AttentionUnet",
    "DynUNet",
    "SegResNet",
    "SegResNetDS",
    "SwinUNETR",
    "UNETR",
    "VNet",
    "HighResNet",
)


def slice_by_slice(build: Callable[..., Any]) -> Callable[..., Any]:
    """Give a 2D architecture's ``build`` a ``slice_axis`` option that makes it take volumes.

    Parameters
    ----------
    build : callable
        ``build(in_channels, classes, **kwargs) -> torch.nn.Module``.

    Returns
    -------
    callable
        ``build(in_channels, classes, *, slice_axis=None, **kwargs)``: with ``slice_axis``
        (0, 1 or 2) the network is wrapped in :class:`~seamline_medical.slices.SliceWise`;
        asking for it with ``spatial_dims`` other than 2 is a ``ValueError``.
    """

    default = inspect.signature(build).parameters.get("spatial_dims")
    default_dims = 2 if default is None else default.default

    @functools.wraps(build)
    def wrapped(in_channels: int, classes: int, *, slice_axis: int | None = None, **kwargs: Any) -> Any:
        if slice_axis is not None and kwargs.get("spatial_dims", default_dims) != 2:
            raise ValueError("slice_axis runs a 2D network over volumes; it needs spatial_dims=2")
        module = build(in_channels, classes, **kwargs)
        if slice_axis is None:
            return module
        from .slices import SliceWise

        return SliceWise(module, slice_axis)

    return wrapped


def build_monai(network: str, in_channels: int, classes: int, **kwargs: Any) -> Any:
    """The MONAI network *network*, one of :data:`MONAI_NETWORKS`, with its own arguments.

    Parameters
    ----------
    network : str
        The class name in ``monai.networks.nets``.
    in_channels, classes : int
        Input channels and output classes (MONAI's ``in_channels`` and ``out_channels``).
    **kwargs
        The class's other arguments, as MONAI takes them (its defaults otherwise).

    Returns
    -------
    torch.nn.Module

    Raises
    ------
    ValueError
        If *network* is not in the allow-list.
    """
    if network not in MONAI_NETWORKS:
        raise ValueError(f"{network} is not one of the MONAI networks seamline builds: {', '.join(MONAI_NETWORKS)}")
    from monai.networks import nets

    return getattr(nets, network)(in_channels=in_channels, out_channels=classes, **kwargs)


@slice_by_slice
def build_unet(
    in_channels: int,
    classes: int,
    *,
    spatial_dims: int = 3,
    channels: Sequence[int] = (16, 32, 64, 128, 256),
    strides: Sequence[int] = (2, 2, 2, 2),
    num_res_units: int = 2,
    **kwargs: Any,
) -> Any:
    """MONAI's residual UNet (:class:`monai.networks.nets.UNet`).

    Parameters
    ----------
    in_channels, classes : int
        Input channels and output classes.
    spatial_dims : {2, 3}
        Rank of the network.
    channels, strides, num_res_units
        As in MONAI (defaults follow MONAI's spleen tutorial).
    **kwargs
        Any other :class:`~monai.networks.nets.UNet` argument.

    Returns
    -------
    torch.nn.Module

    Other Parameters
    ----------------
    slice_axis : int, optional
        Run over volumes slice by slice along this axis (added by :func:`slice_by_slice`).
    """
    from monai.networks.nets import UNet

    return UNet(
        spatial_dims=spatial_dims,
        in_channels=in_channels,
        out_channels=classes,
        channels=tuple(channels),
        strides=tuple(strides),
        num_res_units=num_res_units,
        **kwargs,
    )


@slice_by_slice
def build_swin_unetr(
    in_channels: int, classes: int, *, spatial_dims: int = 3, feature_size: int = 24, **kwargs: Any
) -> Any:
    """MONAI's Swin UNETR (:class:`monai.networks.nets.SwinUNETR`); tiles must be multiples of 32.

    Parameters
    ----------
    in_channels, classes : int
        Input channels and output classes.
    spatial_dims : {2, 3}
        Rank of the network.
    feature_size : int
        Width of the first stage (a multiple of 12).
    **kwargs
        Any other :class:`~monai.networks.nets.SwinUNETR` argument.

    Returns
    -------
    torch.nn.Module

    Other Parameters
    ----------------
    slice_axis : int, optional
        Run over volumes slice by slice along this axis (added by :func:`slice_by_slice`).
    """
    from monai.networks.nets import SwinUNETR

    return SwinUNETR(
        in_channels=in_channels, out_channels=classes, spatial_dims=spatial_dims, feature_size=feature_size, **kwargs
    )


@slice_by_slice
def build_unetr(
    in_channels: int,
    classes: int,
    *,
    img_size: int | Sequence[int] = 96,
    spatial_dims: int = 3,
    **kwargs: Any,
) -> Any:
    """MONAI's UNETR (:class:`monai.networks.nets.UNETR`); it takes tiles of exactly *img_size*.

    Parameters
    ----------
    in_channels, classes : int
        Input channels and output classes.
    img_size : int or sequence of int
        The tile size (a multiple of 16 per axis); the card's tile size must equal it.
    spatial_dims : {2, 3}
        Rank of the network.
    **kwargs
        Any other :class:`~monai.networks.nets.UNETR` argument (``hidden_size``, ...).

    Returns
    -------
    torch.nn.Module

    Other Parameters
    ----------------
    slice_axis : int, optional
        Run over volumes slice by slice along this axis (added by :func:`slice_by_slice`).
    """
    from monai.networks.nets import UNETR

    if isinstance(img_size, int):
        img_size = (img_size,) * spatial_dims
    return UNETR(
        in_channels=in_channels, out_channels=classes, img_size=tuple(img_size), spatial_dims=spatial_dims, **kwargs
    )


@slice_by_slice
def build_segresnet(
    in_channels: int, classes: int, *, spatial_dims: int = 3, init_filters: int = 16, **kwargs: Any
) -> Any:
    """MONAI's SegResNet (:class:`monai.networks.nets.SegResNet`); tiles must be multiples of 8.

    Parameters
    ----------
    in_channels, classes : int
        Input channels and output classes.
    spatial_dims : {2, 3}
        Rank of the network.
    init_filters : int
        Width of the first stage.
    **kwargs
        Any other :class:`~monai.networks.nets.SegResNet` argument.

    Returns
    -------
    torch.nn.Module

    Other Parameters
    ----------------
    slice_axis : int, optional
        Run over volumes slice by slice along this axis (added by :func:`slice_by_slice`).
    """
    from monai.networks.nets import SegResNet

    return SegResNet(
        spatial_dims=spatial_dims, in_channels=in_channels, out_channels=classes, init_filters=init_filters, **kwargs
    )


@slice_by_slice
def build_transunet(in_channels: int, classes: int, **kwargs: Any) -> Any:
    """TransUNet (2D); see :func:`seamline_medical.transunet.build_transunet`.

    Parameters
    ----------
    in_channels, classes : int
        Input channels and output classes.
    **kwargs
        ``variant`` (``"base"`` or ``"tiny"``) and any :class:`~seamline_medical.transunet.TransUNet`
        parameter.

    Returns
    -------
    torch.nn.Module

    Other Parameters
    ----------------
    slice_axis : int, optional
        Run over volumes slice by slice along this axis (added by :func:`slice_by_slice`).
    """
    from .transunet import build_transunet as build

    return build(in_channels, classes, **kwargs)
