"""Model bundles: weights in safetensors and a model card in JSON, never a pickle.

A bundle is a directory (or a ``.zip`` of one) holding two files::

    model/
      weights.safetensors   the state dict, tensors only
      seamline.json         the ModelCard: architecture name + kwargs, bands, classes,
                            normalization, tile size, overlap, spacing, version, training

The card is a :class:`~seamline.card.ModelCard` (:mod:`seamline.card`).

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

import json
import os
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .atomic import atomic_output
from .bundle_files import CARD_LIMIT, WEIGHTS_LIMIT, loads, read_file
from .card import CARD_CHOICES, ModelCard, build_module
from .errors import InputError, ModelError, first_line
from .image import Image

# ModelCard, build_module and CARD_CHOICES live in seamline.card; they are part of the bundle API too
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

    def _engine_options(self, options: dict[str, Any]) -> dict[str, Any]:
        """*options* for the engine, with the card's tile size, overlap, blend and fit where unset."""
        options.setdefault("tile_size", self.card.tile_size)
        options.setdefault("overlap", self.card.overlap)
        options.setdefault("blend", self.card.blend)
        options.setdefault("fit", not self.card.pad_to_tile)
        return options

    def predict(self, image: Image | Any, **options: Any) -> Image:
        """Predict *image* tile by tile, lazily, as the card says.

        Parameters
        ----------
        image : Image or array-like
            Shaped ``(C, *spatial)``.
        **options
            Passed to :func:`seamline.inference.predict` (``output``, ``batch_size``,
            ``device``, ...); ``tile_size``, ``overlap``, ``blend`` and ``fit`` (not
            ``pad_to_tile``) default to the card's.

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
        options = self._engine_options(options)
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
