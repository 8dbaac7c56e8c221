"""The model card: what a bundle says about its model, checked before anything is built.

A :class:`ModelCard` is the JSON half of a bundle (``seamline.json``): the architecture's
registered name and arguments, the bands and classes, the normalization, the tiling and
the grid the model wants. Every value is checked when the card is made, because a card
comes from a file that may be hostile: sizes are bounded, choices are from fixed lists,
and no argument may name a file. :func:`build_module` builds the named architecture
through the plugin registry, so a card never runs code of its own.
"""

from __future__ import annotations

import dataclasses
import numbers
import os
from collections.abc import Mapping, Sequence
from typing import Any

from . import __version__
from .blending import BLENDS
from .bundle_files import MAX_SIZE, count, file_argument
from .colors import class_color
from .defaults import BLEND, OVERLAP, TILE_SIZE
from .errors import ModelError, first_line

__all__ = ["ModelCard", "build_module", "CARD_CHOICES", "FORMAT_VERSION"]

FORMAT_VERSION = 1
#: The values the card's fields of choice take.
CARD_CHOICES: dict[str, tuple[str, ...]] = {
    "blend": BLENDS,
    "resample_grid": ("field_of_view", "first_voxel"),
    "normalize_on": ("input", "model_grid"),
    "labels_from": ("labels", "probabilities"),
}


def _class_records(classes: Sequence[Any]) -> list[dict[str, Any]]:
    records: list[dict[str, Any]] = []
    for index, entry in enumerate(classes):
        record: dict[str, Any] = {"id": index, "name": entry} if isinstance(entry, str) else dict(entry)
        record.setdefault("id", index)
        record.setdefault("name", f"class {record['id']}")
        record.setdefault("color", class_color(record["id"]))
        record["color"] = [int(c) for c in record["color"]]
        records.append(record)
    if [r["id"] for r in records] != list(range(len(records))):
        raise ModelError(f"class ids must be 0..{len(records) - 1} in order, got {[r['id'] for r in records]}")
    return records


def _axis_codes(codes: Any) -> bool:
    """Whether *codes* names each of the three world axes once: L or R, P or A, I or S."""
    axis = {"L": 0, "R": 0, "P": 1, "A": 1, "I": 2, "S": 2}
    return isinstance(codes, str) and sorted(axis.get(c, -1) for c in codes) == [0, 1, 2]


@dataclasses.dataclass
class ModelCard:
    """Everything a bundle says about its model, as stored in ``seamline.json``.

    Parameters
    ----------
    architecture : str
        A registered architecture name (``"core.UNet"``, ``"smp.Unet"``, ...).
    in_channels : int
        Number of input bands or channels.
    classes : sequence
        One entry per output class, in order: a name, or ``{"id", "name", "color"}``.
    kwargs : dict
        Keyword arguments for the architecture's ``build``. ``classes`` among them sets
        the network's output channels where they differ from the class list: 1 for a
        single sigmoid channel whose labels are 0 and 1.
    bands : list of str, optional
        Band names, in the order the model takes them; images whose meta has
        ``band_names`` are matched by name.
    normalization : dict
        A :mod:`seamline.normalize` spec.
    tile_size : int or list of int
        Default tile size for prediction.
    overlap : float
        Default tile overlap (a fraction of the tile).
    spatial_dims : {2, 3}
        The rank the network takes.
    target_spacing : list of float, optional
        Voxel spacing the model was trained at (volumes); a plugin resamples to it. A
        value of 0 (or less) keeps the image's own spacing along that axis.
    blend : {"gaussian", "cosine", "constant", "nnunet"}
        How overlapping tiles are weighted (:mod:`seamline.blending`).
    pad_to_tile : bool
        Pad an image smaller than a tile up to the tile, as MONAI's and nnU-Net's sliding
        windows do, instead of running it with a tile shrunk to the image (the engine's
        ``fit``). Models imported from those tools set it, so that they see what they
        saw there.
    orientation : str or None
        Axis codes a volume is reoriented to before the model (``"RAS"``, ``"LPS"``, ...);
        None keeps the voxel axes as stored.
    resample_grid : {"field_of_view", "first_voxel"}
        Where the grid at ``target_spacing`` lies: covering the image's field of view
        (voxel centres inset), or starting at the first voxel's centre with
        ``round((n - 1) * spacing / target + 1)`` voxels (MONAI's ``Spacing``).
    normalize_on : {"input", "model_grid"}
        Normalize the image as read, or once it is on the model's grid (after
        reorientation and resampling, as a MONAI bundle that normalizes after ``Spacingd``).
    labels_from : {"labels", "probabilities"}
        How labels come back from the model's grid: the nearest label, or the most
        likely class of the probabilities resampled linearly (MONAI's ``Invertd`` before
        ``AsDiscreted``, nnU-Net's export).
    version : str
        The seamline version that wrote the bundle.
    training : dict
        A training summary (epochs, best metric, data, seed, ...).
    pipeline : dict, optional
        How the tool the model came from prepares an input and restores the output, when
        that is more than bands, normalization and target spacing say:
        ``{"format": "nnunet", ...}``. A bundle with one is loaded through the
        :class:`~seamline.plugins.ModelFormat` of that name (its ``from_card``), so a
        model imported with ``seamline import-model`` predicts as its source did.
    """

    architecture: str
    in_channels: int
    classes: list[Any]
    kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)
    bands: list[str] | None = None
    normalization: dict[str, Any] = dataclasses.field(default_factory=lambda: {"kind": "none"})
    tile_size: int | list[int] = TILE_SIZE
    overlap: float = OVERLAP
    spatial_dims: int = 2
    target_spacing: list[float] | None = None
    blend: str = BLEND
    pad_to_tile: bool = False
    orientation: str | None = "RAS"
    resample_grid: str = "field_of_view"
    normalize_on: str = "input"
    labels_from: str = "labels"
    version: str = __version__
    training: dict[str, Any] = dataclasses.field(default_factory=dict)
    pipeline: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.architecture, str) or not self.architecture:
            raise ModelError(f"architecture must be a name, got {self.architecture!r}")
        if not count(self.in_channels):
            raise ModelError(f"in_channels must be an integer from 1 to {MAX_SIZE}, got {self.in_channels!r}")
        if not isinstance(self.classes, list | tuple) or not 1 <= len(self.classes) <= MAX_SIZE:
            raise ModelError(f"classes must be a list of 1 to {MAX_SIZE} classes")
        if not isinstance(self.kwargs, Mapping):
            raise ModelError("kwargs must be a JSON object")
        sizes = self.tile_size if isinstance(self.tile_size, list | tuple) else [self.tile_size]
        if not sizes or not all(count(n, 2**20) for n in sizes):
            raise ModelError(f"tile_size must be a positive integer or a list of them, got {self.tile_size!r}")
        if not isinstance(self.overlap, numbers.Real) or isinstance(self.overlap, bool) or not 0 <= self.overlap < 1:
            raise ModelError(f"overlap must be a fraction from 0 to below 1, got {self.overlap!r}")
        if not isinstance(self.pad_to_tile, bool):
            raise ModelError(f"pad_to_tile must be true or false, got {self.pad_to_tile!r}")
        if self.spatial_dims not in (2, 3) or isinstance(self.spatial_dims, bool):
            raise ModelError(f"spatial_dims must be 2 or 3, got {self.spatial_dims!r}")
        self.classes = _class_records(self.classes)
        if self.bands is not None and len(self.bands) != self.in_channels:
            raise ModelError(f"the card names {len(self.bands)} bands but in_channels is {self.in_channels}")
        for field, choices in CARD_CHOICES.items():
            if getattr(self, field) not in choices:
                raise ModelError(f"{field} must be one of {', '.join(choices)}; got {getattr(self, field)!r}")
        if self.pipeline is not None and not isinstance(self.pipeline, Mapping):
            raise ModelError("pipeline must be a JSON object")
        if self.orientation is not None and not _axis_codes(self.orientation):
            raise ModelError(f"orientation must be three axis codes such as 'RAS' or 'LPS', got {self.orientation!r}")

    @property
    def class_names(self) -> dict[int, str]:
        """Class id to name."""
        return {c["id"]: c["name"] for c in self.classes}

    @property
    def colors(self) -> dict[int, tuple[int, int, int]]:
        """Class id to an RGB colour."""
        return {c["id"]: tuple(c["color"]) for c in self.classes}

    def to_dict(self) -> dict[str, Any]:
        """Return the card as plain JSON-ready data."""
        return {"format": FORMAT_VERSION, **dataclasses.asdict(self)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str | os.PathLike | None = None) -> ModelCard:
        """Build a card from :meth:`to_dict` output.

        Parameters
        ----------
        data : mapping
            The card's fields.
        source : str or os.PathLike, optional
            The bundle it came from, named in errors.

        Returns
        -------
        ModelCard

        Raises
        ------
        ModelError
            If *data* is not a card: required fields missing, unknown fields, values of
            the wrong kind or out of range, or an argument in ``kwargs`` that names a file
            (weights come from the bundle, nothing else is opened).
        """
        if not isinstance(data, Mapping):
            raise ModelError(f"not a seamline model card: expected a JSON object, got {type(data).__name__}", source)
        data = {k: v for k, v in data.items() if k != "format"}
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        missing = sorted({"architecture", "in_channels", "classes"} - set(data))
        if unknown or missing:
            problem = f"unknown fields {unknown}" if unknown else f"missing fields {missing}"
            raise ModelError(f"not a seamline model card: {problem}", source)
        if not isinstance(data.get("kwargs") or {}, Mapping):
            raise ModelError("not a seamline model card: kwargs must be a JSON object", source)
        named = file_argument(data.get("kwargs") or {}, "kwargs")
        if named is not None:
            raise ModelError(f"{named[0]} names a file ({named[1]!r}); a card may not point outside its bundle", source)
        try:
            return cls(**data)
        except ModelError as exc:
            raise ModelError(exc.message, source) from exc
        except (TypeError, ValueError, KeyError, AttributeError) as exc:
            raise ModelError(f"not a seamline model card: {exc}", source) from exc


def build_module(card: ModelCard) -> Any:
    """Build the card's architecture with random weights, through the plugin registry.

    Parameters
    ----------
    card : ModelCard
        The model card.

    Returns
    -------
    torch.nn.Module

    Raises
    ------
    ModelError
        If the architecture is not registered (the message lists the known ones) or
        rejects the card's arguments.
    """
    from .plugins import registry

    models = registry("models")
    if card.architecture not in models:
        raise ModelError(f"unknown architecture {card.architecture!r}; known: {', '.join(models) or 'none'}")
    try:
        arguments = {"classes": len(card.classes), **card.kwargs}
        return models[card.architecture].build(in_channels=card.in_channels, **arguments)
    except (TypeError, ValueError) as exc:
        raise ModelError(f"cannot build {card.architecture!r} from the card: {first_line(exc)}") from exc
    except RuntimeError as exc:  # torch refusing a size (negative, too large to allocate)
        if "meta" in str(exc):
            raise
        raise ModelError(f"cannot build {card.architecture!r} from the card: {first_line(exc)}") from exc
