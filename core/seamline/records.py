"""The records plugins register: what a reader, writer, model, output or recipe is.

Every ``register(...)`` callback in :mod:`seamline.hookspecs` takes one of these frozen
dataclasses; :mod:`seamline.plugins` collects them into registries keyed by ``name``.
Their callables may be :func:`deferred`, so that registering a plugin imports none of the
heavy libraries its work needs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import importlib
import inspect
from collections.abc import Callable, Iterator
from typing import Any

__all__ = [
    "Reader",
    "Writer",
    "Architecture",
    "ModelFormat",
    "ShippedBundle",
    "Output",
    "Recipe",
    "deferred",
    "RECORD_TYPES",
]


@dataclasses.dataclass(frozen=True)
class Reader:
    """A format seamline can read.

    Attributes
    ----------
    name : str
        Unique name, e.g. ``"geotiff"``.
    can_open : callable
        ``can_open(path) -> bool``; cheap, never reads the whole file.
    open : callable
        ``open(path, chunks=None, **options) -> Image``; lazy.
    suffixes : tuple of str
        File suffixes, for messages and docs (``(".tif", ".tiff")``).
    description : str
        One line for ``seamline plugins``.
    needs_grid : bool
        True for data without a grid of its own (vector polygons), or with only part of
        one (a DICOM SEG holds only the slices it labels): ``open`` then takes
        ``like=<Image>`` and returns the data on that image's grid. Commands that pair
        files (``seamline evaluate``, and ``seamline predict`` reading back what it wrote)
        pass the other file as ``like``.
    """

    name: str
    can_open: Callable[[str], bool]
    open: Callable[..., Any]
    suffixes: tuple[str, ...] = ()
    description: str = ""
    needs_grid: bool = False


@dataclasses.dataclass(frozen=True)
class Writer:
    """A format seamline can write.

    Attributes
    ----------
    name : str
        Unique name, e.g. ``"cog"``.
    can_save : callable
        ``can_save(path) -> bool``, from the path alone.
    save : callable
        ``save(image, path, *, overwrite=False, **options)``; streams, writes atomically.
    suffixes, description
        As for :class:`Reader`.
    """

    name: str
    can_save: Callable[[str], bool]
    save: Callable[..., Any]
    suffixes: tuple[str, ...] = ()
    description: str = ""


@dataclasses.dataclass(frozen=True)
class Architecture:
    """A model architecture, built by name from a bundle's model card.

    Attributes
    ----------
    name : str
        Unique name, e.g. ``"smp.Unet"`` or ``"medical.TransUNet"``.
    build : callable
        ``build(in_channels, classes, **kwargs) -> torch.nn.Module`` with random weights.
    spatial_dims : int or None
        2 or 3 when the network only takes that rank; None when either works.
    description : str
        One line for ``seamline plugins``.
    """

    name: str
    build: Callable[..., Any]
    spatial_dims: int | None = None
    description: str = ""


@dataclasses.dataclass(frozen=True)
class ModelFormat:
    """A trained model made by another tool, recognised the way a reader recognises a file.

    Attributes
    ----------
    name : str
        Unique name, e.g. ``"nnunet"`` or ``"monai-bundle"``.
    can_load : callable
        ``can_load(path) -> bool``; cheap (file names, a JSON key), never loads weights.
    load : callable
        ``load(path, **options) -> Bundle``: the network with its weights, a
        :class:`~seamline.card.ModelCard`, and the input preparation and output
        restoration the source tool applies. Weights are read with safetensors or
        ``torch.load(..., weights_only=True)``; nothing from the folder is imported or run.
    description : str
        One line for ``seamline plugins``.
    from_card : callable, optional
        ``from_card(module, card) -> Bundle``: the same Bundle again from a seamline bundle
        whose card's ``pipeline`` names this format (what ``seamline import-model`` writes
        from a model of this format), so the imported bundle predicts as its source did.
    """

    name: str
    can_load: Callable[[str], bool]
    load: Callable[..., Any]
    description: str = ""
    from_card: Callable[..., Any] | None = None


@dataclasses.dataclass(frozen=True)
class ShippedBundle:
    """A model bundle a plugin ships, usable by name wherever a bundle path is.

    Attributes
    ----------
    name : str
        Unique name, e.g. ``"glaciers-landsat"``; ``--model glaciers-landsat`` loads it.
    path : callable
        ``path() -> str``: where the bundle lies in the installed package.
    description : str
        One line for ``seamline models``.
    """

    name: str
    path: Callable[[], str]
    description: str = ""


@dataclasses.dataclass(frozen=True)
class Output:
    """A product derived from predicted labels (polygons, a statistics table, meshes).

    Attributes
    ----------
    name : str
        Unique name, e.g. ``"polygons"``.
    option : str
        The ``seamline predict`` option that asks for it, e.g. ``"--polygons"``.
    write : callable
        ``write(labels, path, *, image, overwrite=False)``.
    help : str
        Help text for the option.
    check : callable, optional
        ``check(path, image)``: raise an :class:`~seamline.errors.InputError` when this
        output cannot be written to *path* for the (lazy, unread) input *image*, e.g. an
        unsupported suffix or a 2D scene for a 3D product. ``seamline predict`` calls it
        before any work, so a bad option never leaves a half-made set of outputs.
    """

    name: str
    option: str
    write: Callable[..., Any]
    help: str = ""
    check: Callable[..., Any] | None = None


@dataclasses.dataclass(frozen=True)
class Recipe:
    """A task preset: a named, partial training config with model-card defaults.

    ``seamline train --recipe NAME`` (or ``recipe: NAME`` in a config file) starts from
    *config* and lets the user's config and options override any of it; what the recipe
    leaves out (the image, the labels, the output folder) the user gives.

    Attributes
    ----------
    name : str
        Unique name, e.g. ``"glaciers-landsat"``.
    description : str
        One line, for ``seamline recipes``.
    config : dict
        Sections of a training config, checked against the same schema as a
        ``seamline train`` YAML file (:data:`seamline.training.config.EXAMPLE`):
        ``classes``, ``model``, ``normalization``, ``patches``, ``loss``, ``predict``
        (the card's tile size, overlap and target spacing), ``card`` (the card's band
        names), ...
    """

    name: str
    description: str
    config: dict = dataclasses.field(default_factory=dict)


def deferred(module: str, name: str, *bound: Any) -> Callable[..., Any]:
    """A function that imports *module* on its first call and calls *name* there.

    Plugins register it in records so that loading the plugin (``seamline plugins``)
    imports none of the heavy libraries the work needs.

    Parameters
    ----------
    module : str
        The full module name, e.g. ``"seamline_medical.nifti"``.
    name : str
        The function in that module.
    *bound
        Leading positional arguments, passed before the caller's.

    Returns
    -------
    callable
        ``call(*args, **kwargs) = module.name(*bound, *args, **kwargs)``; its
        ``inspect.signature`` is the target's (imported when asked), so the options a
        reader or writer takes can be checked before calling it.
    """
    return _Deferred(module, name, bound)


class _Deferred:
    """The callable :func:`deferred` returns."""

    def __init__(self, module: str, name: str, bound: tuple) -> None:
        self.module, self.bound = module, bound
        self.__name__ = name
        self.__qualname__ = f"deferred({module}.{name})"

    def _target(self) -> Callable[..., Any]:
        return functools.partial(getattr(importlib.import_module(self.module), self.__name__), *self.bound)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        with _named_if_not_installed():
            return self._target()(*args, **kwargs)

    @property
    def __signature__(self) -> inspect.Signature:
        with _named_if_not_installed():
            return inspect.signature(self._target())


@contextlib.contextmanager
def _named_if_not_installed() -> Iterator[None]:
    """An import that fails in a plugin whose extra is missing says which extra to install."""
    try:
        yield
    except ImportError as exc:
        from .plugins import not_installed

        error = not_installed(exc)
        if error is None:
            raise
        raise error from exc


RECORD_TYPES: dict[str, type[Any]] = {
    "seamline_readers": Reader,
    "seamline_writers": Writer,
    "seamline_models": Architecture,
    "seamline_model_formats": ModelFormat,
    "seamline_bundles": ShippedBundle,
    "seamline_outputs": Output,
    "seamline_recipes": Recipe,
}
