"""nnU-Net's networks, built from the plans through allow-lists, with all folds in one module.

An nnU-Net configuration names its network by a Python path
(``dynamic_network_architectures.architectures.unet.PlainConvUNet``) and some of its
arguments by Python paths too (``"conv_op": "torch.nn.modules.conv.Conv3d"``, the keys
listed in ``_kw_requires_import``); nnU-Net imports whatever the plans name. seamline looks
each name up in fixed tables instead (:data:`NETWORKS`, :data:`LAYERS`), so a plans file can
only choose among the classes named here. A trainer matters at inference only for how it
builds the network: the trainers in :data:`TRAINERS` (nnunetv2's own, which build it from
the plans unchanged) are accepted.

:class:`NNUNetNetwork` holds the network of every fold and runs nnU-Net's test-time
mirroring: per fold, the logits of the tile and of its flips over the allowed axes, each
flipped back, averaged; then the average over folds. Blending tiles is linear, so
averaging per tile equals nnU-Net's order (blend each fold, then average). The sums are
float32 even where autocast runs the networks in float16 on a GPU (nnU-Net sums them, and
its tiles, in float16). It is the architecture ``"nnunet.network"``: an imported bundle
rebuilds it by name.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from seamline.errors import ModelError, first_line

from . import checks

__all__ = ["NNUNetNetwork", "build_network", "NETWORKS", "LAYERS", "TRAINERS", "check_trainer"]

#: Network classes a plans file may name (by their last dotted part, under dynamic_network_architectures).
NETWORKS = ("PlainConvUNet", "ResidualEncoderUNet", "ResidualUNet")
#: Layer classes a ``_kw_requires_import`` entry may name (by their last dotted part, under torch.nn).
LAYERS = (
    *(f"Conv{d}d" for d in (1, 2, 3)),
    *(f"InstanceNorm{d}d" for d in (1, 2, 3)),
    *(f"BatchNorm{d}d" for d in (1, 2, 3)),
    "GroupNorm",
    "Dropout",
    *(f"Dropout{d}d" for d in (1, 2, 3)),
    "LeakyReLU",
    "ReLU",
    "PReLU",
    "ELU",
    "GELU",
    "SiLU",
)
_BLOCKS = ("BasicBlockD", "BottleneckD")
#: nnunetv2 2.8's trainers that build their network from the plans as nnUNetTrainer does.
TRAINERS = (
    "nnUNetTrainer",
    "nnUNetTrainerAdam",
    "nnUNetTrainerAdam1en3",
    "nnUNetTrainerAdam3en4",
    "nnUNetTrainerAdan",
    "nnUNetTrainerAdan1en1",
    "nnUNetTrainerAdan1en3",
    "nnUNetTrainerAdan3en4",
    "nnUNetTrainerAdanCosAnneal",
    "nnUNetTrainerBenchmark_5epochs",
    "nnUNetTrainerBenchmark_5epochs_noDataLoading",
    "nnUNetTrainerCELoss",
    "nnUNetTrainerCELoss_5epochs",
    "nnUNetTrainerCosAnneal",
    "nnUNetTrainerDA5",
    "nnUNetTrainerDA5Segord0",
    "nnUNetTrainerDA5_10epochs",
    "nnUNetTrainerDA5ord0",
    "nnUNetTrainerDiceCELoss_noSmooth",
    "nnUNetTrainerDiceLoss",
    "nnUNetTrainerDiceTopK10Loss",
    "nnUNetTrainerNoDA",
    "nnUNetTrainerNoDeepSupervision",
    "nnUNetTrainerNoMirroring",
    "nnUNetTrainerTopk10Loss",
    "nnUNetTrainerTopk10LossLS01",
    "nnUNetTrainerVanillaAdam",
    "nnUNetTrainerVanillaAdam1en3",
    "nnUNetTrainerVanillaAdam3en4",
    "nnUNetTrainer_100epochs",
    "nnUNetTrainer_10epochs",
    "nnUNetTrainer_1epoch",
    "nnUNetTrainer_2000epochs",
    "nnUNetTrainer_2000epochs_NoMirroring",
    "nnUNetTrainer_20epochs",
    "nnUNetTrainer_250epochs",
    "nnUNetTrainer_250epochs_NoMirroring",
    "nnUNetTrainer_4000epochs",
    "nnUNetTrainer_4000epochs_NoMirroring",
    "nnUNetTrainer_500epochs",
    "nnUNetTrainer_50epochs",
    "nnUNetTrainer_5epochs",
    "nnUNetTrainer_750epochs",
    "nnUNetTrainer_8000epochs",
    "nnUNetTrainer_8000epochs_NoMirroring",
    "nnUNetTrainer_DASegOrd0",
    "nnUNetTrainer_DASegOrd0_NoMirroring",
    "nnUNetTrainer_noDummy2DDA",
    "nnUNetTrainer_onlyMirror01",
    "nnUNetTrainer_onlyMirror01_1500ep",
    "nnUNetTrainer_onlyMirror01_DA5",
    "nnUNetTrainer_onlyMirror01_DASegOrd0",
    "nnUNetTrainer_probabilisticOversampling",
    "nnUNetTrainer_probabilisticOversampling_010",
    "nnUNetTrainer_probabilisticOversampling_033",
    "nnUNetTrainer_warmup",
    "nnUNet_Trainer_BS8",
)


def check_trainer(name: Any, source: Any = None) -> str:
    """Return the trainer's name when it is one of :data:`TRAINERS`.

    Parameters
    ----------
    name : object
        The checkpoint's ``trainer_name``.
    source : path, optional
        The checkpoint, named in the error.

    Returns
    -------
    str

    Raises
    ------
    ModelError
        For any other trainer (it may build another network).
    """
    if name not in TRAINERS:
        raise ModelError(
            f"trainer_name {name!r} is not a trainer seamline knows to build its network from the plans "
            "(nnU-Net's own trainers are; a custom trainer may build another network)",
            source,
        )
    return str(name)


def _tail(path: Any, prefix: str, allowed: Sequence[str], field: str) -> str:
    """The class a dotted *path* names, when it lies under *prefix* and is allowed."""
    name = str(path).rsplit(".", 1)[-1]
    if not isinstance(path, str) or not path.startswith(prefix) or name not in allowed:
        raise ModelError(f"{field} {path!r} is not one of the classes seamline builds: {', '.join(allowed)}")
    return name


def _layer(path: Any, field: str) -> Any:
    """The class an import entry names: a torch.nn layer or a residual block."""
    if path is None:
        return None
    if isinstance(path, str) and path.startswith("dynamic_network_architectures."):
        from dynamic_network_architectures.building_blocks import residual

        return getattr(residual, _tail(path, "dynamic_network_architectures.building_blocks.", _BLOCKS, field))
    return getattr(torch.nn, _tail(path, "torch.nn.", LAYERS, field))


def _network_class(path: str) -> Any:
    name = _tail(path, "dynamic_network_architectures.architectures.", NETWORKS, "network_class_name")
    from dynamic_network_architectures.architectures import unet

    return getattr(unet, name)


def build_fold(
    in_channels: int, heads: int, network: str, arch_kwargs: Mapping[str, Any], requires_import: Sequence[str]
) -> torch.nn.Module:
    """Build one fold's network as nnU-Net's ``get_network_from_plans`` does (no deep supervision).

    Parameters
    ----------
    in_channels : int
        Input channels.
    heads : int
        Output channels (classes, or regions).
    network : str
        The plans' ``network_class_name``.
    arch_kwargs : mapping
        The plans' ``arch_kwargs``.
    requires_import : sequence of str
        The plans' ``_kw_requires_import``: the keys whose values name classes.

    Returns
    -------
    torch.nn.Module

    Raises
    ------
    ModelError
        If a class is not allowed or the arguments do not build the network.
    """
    kwargs = dict(arch_kwargs)
    for key in requires_import:
        if key not in kwargs:
            raise ModelError(f"_kw_requires_import names {key!r}, which arch_kwargs lacks")
        kwargs[key] = _layer(kwargs[key], f"arch_kwargs.{key}")
    kwargs["deep_supervision"] = False
    cls = _network_class(network)
    try:
        return cls(input_channels=in_channels, num_classes=heads, **kwargs)
    except (TypeError, ValueError, AssertionError, KeyError, IndexError, RuntimeError) as exc:
        if isinstance(exc, RuntimeError) and "meta" in str(exc):
            raise  # not the arguments' fault: this layer cannot be built on torch's meta device
        raise ModelError(f"arch_kwargs do not build {network.rsplit('.', 1)[-1]}: {first_line(exc)}") from exc


class NNUNetNetwork(torch.nn.Module):
    """The networks of several folds, with nnU-Net's mirroring, as one module.

    Parameters
    ----------
    folds : sequence of torch.nn.Module
        One network per fold, weights loaded.
    mirror_axes : sequence of int
        The spatial axes nnU-Net may flip at inference (the checkpoint's
        ``inference_allowed_mirroring_axes``); empty for no mirroring.
    heads : int
        The output channels (an empty batch is answered without running the networks).
    """

    def __init__(self, folds: Sequence[torch.nn.Module], mirror_axes: Sequence[int], heads: int):
        super().__init__()
        self.folds = torch.nn.ModuleList(folds)
        self.mirror_axes = tuple(int(a) for a in mirror_axes)
        self.heads = heads
        axes = [a + 2 for a in self.mirror_axes]
        self._flips = [c for n in range(len(axes)) for c in itertools.combinations(axes, n + 1)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Average logits over the mirrorings and the folds, shaped like the tiles."""
        if not len(x):
            return x.new_zeros((0, self.heads, *x.shape[2:]))
        total = None
        for network in self.folds:
            logits = network(x).float()  # summed in float32 even when autocast runs the network in float16
            for axes in self._flips:
                logits += torch.flip(network(torch.flip(x, axes)), axes).float()
            logits /= len(self._flips) + 1
            total = logits if total is None else total + logits
        assert total is not None
        if len(self.folds) > 1:
            total /= len(self.folds)
        return total


def build_network(
    in_channels: int,
    classes: int,
    *,
    network: str,
    arch_kwargs: Mapping[str, Any],
    requires_import: Sequence[str] = (),
    heads: int | None = None,
    folds: int = 1,
    mirror_axes: Sequence[int] = (),
) -> NNUNetNetwork:
    """Build :class:`NNUNetNetwork` with random weights: the architecture ``"nnunet.network"``.

    Parameters
    ----------
    in_channels : int
        Input channels.
    classes : int
        The card's class count (the output channels unless *heads* says otherwise).
    network, arch_kwargs, requires_import
        The plans' architecture, as for :func:`build_fold`.
    heads : int, optional
        Output channels, when they differ from the classes (regions).
    folds : int
        How many folds' networks.
    mirror_axes : sequence of int
        Axes mirrored at inference.

    Returns
    -------
    NNUNetNetwork

    Raises
    ------
    ModelError
        If the arguments do not build the network, or *mirror_axes* are not spatial axes.
    """
    axes = checks.mirror_axes(mirror_axes, "kwargs.mirror_axes", None)
    heads = heads or classes
    nets = [build_fold(in_channels, heads, network, arch_kwargs, requires_import) for _ in range(folds)]
    return NNUNetNetwork(nets, axes, heads)
