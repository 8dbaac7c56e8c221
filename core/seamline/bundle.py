"""Model bundles: weights in safetensors and a model card in JSON, never a pickle.

A bundle is a directory (or a ``.zip`` of one) holding two files::

    model/
      weights.safetensors   the state dict, tensors only
      seamline.json         the ModelCard: architecture name + kwargs, bands, classes,
                            normalization, tile size, overlap, spacing, version, training

The architecture is *named*, and built through the plugin registry
(``seamline.plugins.registry("models")``), so loading a bundle never runs code from the
bundle: :func:`load_model` reads JSON and tensors and nothing else. Nor is the bundle
trusted: its files are read with limits (:mod:`seamline.bundle_files`), its card's
values are checked, no argument in it may name a file outside the bundle, and the
network is built on the ``meta`` device and compared with the weights' header before
any memory is allocated (:mod:`seamline.weights`). Every problem is a
:class:`~seamline.errors.ModelError` naming the bundle.

A :class:`Bundle` is a model that knows how it wants its input: ``bundle.predict(image)``
selects bands by name, checks the band count, normalizes, lets a plugin bring the image
onto the model's grid (``seamline_prepare_input``: reorientation, resampling) and back,
runs the tiled engine with the card's tile size, overlap and blend, and names the classes.
The card also says in which order a model from another tool wants those steps
(normalizing before or after resampling) and how its labels come back onto the input's
grid (nearest label, or the most likely class of the resampled probabilities).
"""

from __future__ import annotations

import dataclasses
import json
import numbers
import os
import zipfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from . import __version__
from .atomic import atomic_output
from .blending import BLENDS
from .bundle_files import CARD_LIMIT, MAX_SIZE, WEIGHTS_LIMIT, count, file_argument, loads, read_file
from .colors import class_color
from .defaults import BLEND, OVERLAP, TILE_SIZE
from .errors import InputError, ModelError, first_line
from .image import Image

__all__ = [
    "ModelCard",
    "Bundle",
    "load_model",
    "save_model",
    "build_module",
    "is_bundle",
    "model_path",
    "read_card",
    "CARD_FILE",
    "WEIGHTS_FILE",
    "CARD_CHOICES",
]

CARD_FILE = "seamline.json"
WEIGHTS_FILE = "weights.safetensors"
FORMAT_VERSION = 1
#: The values the card's fields of choice take.
CARD_CHOICES: dict[str, tuple[str, ...]] = {
    "blend": BLENDS,
    "resample_grid": ("field_of_view", "first_voxel"),
    "normalize_on": ("input", "model_grid"),
    "labels_from": ("labels", "probabilities"),
}


def _class_records(classes: Sequence[Any]) -> list[dict[str, Any]]:
    records = []
    for index, entry in enumerate(classes):
        record = {"id": index, "name": entry} if isinstance(entry, str) else dict(entry)
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
    blend : {"gaussian", "cosine", "constant"}
        How overlapping tiles are weighted (:mod:`seamline.blending`).
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


class Bundle:
    """A model with its card: what :func:`load_model` returns.

    Parameters
    ----------
    module : torch.nn.Module
        The network, weights loaded.
    card : ModelCard
        What it expects and produces.
    missing : sequence of str
        Card fields the model's source did not say and that hold placeholders (a model
        from another tool may lack ``"bands"``, ``"classes"`` names or ``"normalization"``);
        ``seamline import-model`` asks for them.
    """

    def __init__(self, module: Any, card: ModelCard, *, missing: Sequence[str] = ()) -> None:
        self.module = module
        self.card = card
        self.missing = tuple(missing)

    def __repr__(self) -> str:
        names = ", ".join(self.card.class_names.values())
        return f"Bundle({self.card.architecture}, in_channels={self.card.in_channels}, classes=[{names}])"

    def prepare(self, image: Image, *, normalized: bool = True) -> Image:
        """Select the card's bands, check their count and normalize (lazily).

        Parameters
        ----------
        image : Image
            The image as read.
        normalized : bool
            Normalize it too (False: select and check only).

        Returns
        -------
        Image
            The image the network takes (before any plugin regridding).

        Raises
        ------
        InputError
            If bands named by the card are missing, the band count differs from the
            model's (both numbers are named), or the rank is too low for the model.
        """
        source = image.meta.get("path") or image.meta.get("source")
        card = self.card
        names = image.meta.get("band_names")
        if card.bands and names and list(names) != list(card.bands):
            missing = [b for b in card.bands if b not in list(names)]
            if missing:
                raise InputError(
                    f"model expects {len(card.bands)} bands {card.bands}, the image has {len(names)} "
                    f"{list(names)}: it lacks {missing}",
                    source,
                )
            image = image[[list(names).index(b) for b in card.bands]]
        if image.channels != card.in_channels:
            raise InputError(f"model expects {card.in_channels} bands, the image has {image.channels}", source)
        if image.ndim != card.spatial_dims:
            raise InputError(f"a {image.ndim}D image for a {card.spatial_dims}D model", source)
        from .normalize import normalize

        return normalize(image, card.normalization) if normalized else image

    def model_input(self, image: Image) -> tuple[Image, Callable[[Image, str], Image] | None]:
        """The image as the network sees it, and how to bring outputs back onto *image*'s grid.

        Bands are selected and checked, and the image is normalized and brought onto the
        model's grid (``seamline_prepare_input``) in the card's order (``normalize_on``).

        Parameters
        ----------
        image : Image
            The image as read.

        Returns
        -------
        model_input : Image
            Lazy, on the model's grid.
        restore : callable or None
            ``restore(output, kind)`` with kind ``"labels"`` or ``"scores"``; None when the
            model's grid is the image's own.

        Raises
        ------
        InputError
            If the image does not fit the model (see :meth:`prepare`).
        """
        from .normalize import normalize
        from .plugins import call_hook

        on_input = self.card.normalize_on == "input"
        model_input = self.prepare(image, normalized=on_input)
        prepared = call_hook("seamline_prepare_input", image=model_input, card=self.card, kind="image")
        restore = None
        if prepared is not None:
            model_input, restore = prepared
        if not on_input:
            model_input = normalize(model_input, self.card.normalization)
        return model_input, restore

    def predict(self, image: Image | Any, **options: Any) -> Image:
        """Predict *image* tile by tile, lazily, as the card says.

        Parameters
        ----------
        image : Image or array-like
            Shaped ``(C, *spatial)``.
        **options
            Passed to :func:`seamline.inference.predict` (``output``, ``batch_size``,
            ``device``, ...); ``tile_size``, ``overlap`` and ``blend`` default to the card's.

        Returns
        -------
        Image
            Labels or scores on the input's own grid, with ``class_names``, ``colors`` and
            the card's ``normalization`` in its meta (a preview shows the input through the
            model's intensity window), and the class names as ``band_names`` for scores.

        Raises
        ------
        InputError
            If the image does not fit the model (see :meth:`prepare`).
        """
        from .inference import predict
        from .logits import labels_of

        if not isinstance(image, Image):
            image = Image.from_array(image)
        model_input, restore = self.model_input(image)
        options.setdefault("tile_size", self.card.tile_size)
        options.setdefault("overlap", self.card.overlap)
        options.setdefault("blend", self.card.blend)
        wanted = options.get("output", "scores")
        via_probabilities = wanted == "labels" and restore is not None and self.card.labels_from == "probabilities"
        if via_probabilities:
            options["output"] = "probabilities"
        result = predict(model_input, self.module, **options)
        kind = "labels" if options.get("output") == "labels" else "scores"
        if restore is not None:
            result = restore(result, kind)
        if via_probabilities:
            result, kind = labels_of(result), "labels"
        meta = {k: v for k, v in result.meta.items() if k != "band_names"}
        meta.update(class_names=self.card.class_names, colors=self.card.colors, normalization=self.card.normalization)
        if kind == "scores":
            meta["band_names"] = list(self.card.class_names.values())
        return result.replace(meta=meta)


def is_bundle(path: str | os.PathLike) -> bool:
    """Whether *path* is a seamline bundle: a directory or zip holding ``seamline.json``.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    bool
    """
    path = Path(path)
    if path.is_dir():
        return (path / CARD_FILE).is_file()
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(Path(name).name == CARD_FILE for name in archive.namelist())


def model_path(model: str | os.PathLike) -> Path:
    """The path a model argument names: itself, or a bundle a plugin ships under that name.

    Parameters
    ----------
    model : str or os.PathLike
        A path, or a name from ``seamline models`` (``"glaciers-landsat"``).

    Returns
    -------
    pathlib.Path

    Raises
    ------
    ModelError
        If *model* is neither an existing path nor a shipped bundle's name.
    """
    from .plugins import registry

    path = Path(model)
    if path.exists():
        return path
    shipped = registry("bundles")
    if os.fspath(model) in shipped:
        return Path(shipped[os.fspath(model)].path())
    names = f"; shipped bundles: {', '.join(shipped)}" if shipped else ""
    raise ModelError(f"no such model bundle or model folder{names}", path)


def load_model(model: str | os.PathLike, *, device: str = "cpu", **options: Any) -> Bundle:
    """Load a model: a seamline bundle, a shipped bundle by name, or a model from another tool.

    A seamline bundle (a directory or ``.zip`` with ``seamline.json`` and
    ``weights.safetensors``) is read without unpickling anything. Any other path goes to the
    first registered :class:`~seamline.plugins.ModelFormat` that recognises it (an nnU-Net
    results folder, a MONAI bundle, ...; ``seamline plugins --all`` lists them).

    Parameters
    ----------
    model : str or os.PathLike
        The bundle or model folder, or the name of a bundle a plugin ships.
    device : str
        Where to put the weights (``"cpu"`` by default; the engine moves them).
    **options
        Options of the model format (for example ``folds`` for nnU-Net, or
        ``architecture`` and its arguments for a checkpoint), and card fields the source
        may lack (``bands``, ``classes``, ``normalization``, ``tile_size``, ``overlap``;
        see :func:`seamline.foreign.fill_card`); a seamline bundle takes none.

    Returns
    -------
    Bundle
        The network in eval mode, with its card.

    Raises
    ------
    ModelError
        If the model is missing, no format recognises it, its card is not valid, its
        architecture is not registered, or its weights are corrupt or do not fit the
        architecture (the message names the file).
    """
    from .plugins import registry

    path = model_path(model)
    if is_bundle(path):
        if options:
            raise ModelError(f"a seamline bundle takes no options; got {', '.join(sorted(options))}", path)
        bundle = _load_bundle(path)
    else:
        formats = registry("model_formats")
        found = next((f for f in formats.values() if f.can_load(os.fspath(path))), None)
        if found is None:
            known = ", ".join(["seamline bundle", *formats])
            raise ModelError(f"not a model bundle or a model folder seamline knows; supported: {known}", path)
        from .foreign import load_foreign

        bundle = load_foreign(found, path, options)
    bundle.module.to(device).eval()
    return bundle


def read_card(path: str | os.PathLike) -> ModelCard:
    """Read a seamline bundle's model card, without its weights.

    Parameters
    ----------
    path : str or os.PathLike
        The bundle (a directory or a ``.zip``).

    Returns
    -------
    ModelCard

    Raises
    ------
    ModelError
        If the card is missing, too large, not JSON, nested too deeply, or not a valid card.
    """
    path = Path(path)
    return ModelCard.from_dict(loads(read_file(path, CARD_FILE, CARD_LIMIT), path, what=CARD_FILE), path)


def _load_bundle(path: Path) -> Bundle:
    """Read a seamline bundle's card and weights, checking both before building anything."""
    from safetensors.torch import load as load_tensors

    from .weights import build_checked, fit_weights, safetensors_shapes

    card = read_card(path)
    weights_name = path / WEIGHTS_FILE if path.is_dir() else Path(f"{path}!{WEIGHTS_FILE}")
    data = read_file(path, WEIGHTS_FILE, WEIGHTS_LIMIT)
    try:
        shapes = safetensors_shapes(data, weights_name)
        module = build_checked(lambda: build_module(card), shapes, weights_name, architecture=card.architecture)
        state = load_tensors(data)
    except ModelError as exc:
        raise ModelError(exc.message, exc.path or path) from exc
    except Exception as exc:  # safetensors raises several types for a corrupt file
        raise ModelError(f"weights cannot be read: {first_line(exc)}", weights_name) from exc
    fit_weights(module, state, source=weights_name, architecture=card.architecture)
    if card.pipeline is None:
        return Bundle(module, card)
    return _with_pipeline(module, card, path)


def _with_pipeline(module: Any, card: ModelCard, path: Path) -> Bundle:
    """The Bundle of the model format that the card's pipeline names."""
    from .plugins import registry

    name = card.pipeline.get("format") if card.pipeline is not None else None
    found = registry("model_formats").get(name) if isinstance(name, str) else None
    if found is None or found.from_card is None:
        raise ModelError(
            f"the card's pipeline needs the model format {name!r}, which no installed plugin provides", path
        )
    return found.from_card(module, card)


def _write_bundle(module: Any, card: ModelCard, target: Path) -> None:
    from safetensors.torch import save as save_tensors

    state = {name: tensor.detach().cpu().contiguous().clone() for name, tensor in module.state_dict().items()}
    files = {WEIGHTS_FILE: save_tensors(state), CARD_FILE: json.dumps(card.to_dict(), indent=2).encode()}
    if target.suffix == ".zip":
        with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as archive:
            for name, payload in files.items():
                archive.writestr(name, payload)
        return
    target.mkdir()
    for name, payload in files.items():
        (target / name).write_bytes(payload)


def save_model(module: Any, path: str | os.PathLike, card: ModelCard, *, overwrite: bool = False) -> Path:
    """Save *module* and *card* as a bundle, atomically.

    Parameters
    ----------
    module : torch.nn.Module
        The network; only its state dict (tensors) is written.
    path : str or os.PathLike
        A directory, or a path ending in ``.zip`` for a single file.
    card : ModelCard
        The model card.
    overwrite : bool
        Replace an existing bundle.

    Returns
    -------
    pathlib.Path
        The bundle's path.

    Raises
    ------
    OutputExistsError
        If *path* exists and *overwrite* is false.
    """
    with atomic_output(path, overwrite=overwrite) as tmp:
        _write_bundle(module, card, Path(tmp))
    return Path(path)
