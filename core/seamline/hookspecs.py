"""The plugin contract: every hook a seamline plugin may implement.

seamline's core knows nothing about file formats, architectures or domains. Plugins
teach it, through the hooks below, and the built-in plugins (``seamline_geo``,
``seamline_medical``, the core's own Zarr store) use exactly these hooks and are
registered through the same ``seamline`` entry-point group as any third-party plugin.

Most hooks receive a ``register`` callback and call it once per thing they provide,
with a typed record from :mod:`seamline.plugins` (the pattern of ``llm``'s
``register_models``)::

    from seamline import hookimpl
    from seamline.plugins import Reader

    @hookimpl
    def seamline_readers(register):
        register(Reader(name="npy", suffixes=(".npy",), can_open=can_open, open=open_npy))

Two plugins registering the same name is a :class:`~seamline.errors.PluginError` that
names both. A hook implementation must stay cheap at import and registration time:
import heavy libraries (torch, MONAI) inside the callables it registers, so that
``seamline plugins`` never imports torch.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import pluggy

from .records import Architecture, ModelFormat, Output, Reader, Recipe, ShippedBundle, Writer

if TYPE_CHECKING:  # heavy or circular at run time; the hooks' types for type checkers
    import click
    import numpy as np

    from .card import ModelCard
    from .image import Image
    from .vectorize import VectorBackend

hookspec = pluggy.HookspecMarker("seamline")
hookimpl = pluggy.HookimplMarker("seamline")


@hookspec
def seamline_readers(register: Callable[[Reader], None]) -> None:
    """Register image readers.

    Call ``register(Reader(...))`` once per format. ``Reader.can_open(path)`` must be
    cheap (a suffix or a few magic bytes, like xarray's ``guess_can_open``);
    ``Reader.open(path, chunks=None, **options)`` returns a lazy :class:`~seamline.Image`.
    :func:`seamline.open` uses the first reader whose ``can_open`` accepts the path.

    Parameters
    ----------
    register : callable
        Takes one :class:`~seamline.plugins.Reader`.
    """


@hookspec
def seamline_writers(register: Callable[[Writer], None]) -> None:
    """Register image writers.

    Call ``register(Writer(...))`` once per format. ``Writer.save(image, path, **options)``
    must write through :func:`seamline.atomic.atomic_output` and stream the lazy data
    window by window, never computing the whole image at once.

    Parameters
    ----------
    register : callable
        Takes one :class:`~seamline.plugins.Writer`.
    """


@hookspec
def seamline_models(register: Callable[[Architecture], None]) -> None:
    """Register model architectures by name.

    Call ``register(Architecture(name="smp.Unet", build=..., ...))``.
    ``build(in_channels=..., classes=..., **kwargs)`` returns a ``torch.nn.Module``
    with random weights. Model bundles name an architecture by this name and never
    contain code or pickles.

    Parameters
    ----------
    register : callable
        Takes one :class:`~seamline.plugins.Architecture`.
    """


@hookspec
def seamline_model_formats(register: Callable[[ModelFormat], None]) -> None:
    """Register kinds of trained models made by other tools (nnU-Net folders, MONAI bundles, ...).

    Call ``register(ModelFormat(name=..., can_load=..., load=...))``.
    :func:`seamline.load_model` loads a seamline bundle itself, and hands any other path to
    the first format whose ``can_load(path)`` accepts it. ``load(path, **options)`` returns
    a :class:`~seamline.bundle.Bundle` and never imports or runs code from the folder.

    Parameters
    ----------
    register : callable
        Takes one :class:`~seamline.plugins.ModelFormat`.
    """


@hookspec
def seamline_bundles(register: Callable[[ShippedBundle], None]) -> None:
    """Register model bundles that a plugin ships, so users can name them.

    Call ``register(ShippedBundle(name="glaciers-landsat", path=..., description=...))``.
    ``seamline models`` lists them, and ``--model NAME`` or ``load_model(NAME)`` loads one
    wherever a bundle path is accepted.

    Parameters
    ----------
    register : callable
        Takes one :class:`~seamline.plugins.ShippedBundle`.
    """


@hookspec
def seamline_outputs(register: Callable[[Output], None]) -> None:
    """Register products derived from a prediction: polygons, statistics tables, meshes.

    Call ``register(Output(name="polygons", option="--polygons", write=...))``.
    ``seamline predict`` offers one option per output; ``write(labels, path, *, image,
    overwrite)`` receives the predicted label :class:`~seamline.Image` and the input.

    Parameters
    ----------
    register : callable
        Takes one :class:`~seamline.plugins.Output`.
    """


@hookspec
def seamline_recipes(register: Callable[[Recipe], None]) -> None:
    """Register task presets (glacier mapping, crop fields, MR organs, ...).

    Call ``register(Recipe(name=..., description=..., config={...}))``; the config holds
    defaults for training and prediction (bands, normalization, classes, tile size).

    Parameters
    ----------
    register : callable
        Takes one :class:`~seamline.plugins.Recipe`.
    """


@hookspec
def seamline_commands(cli: click.Group) -> None:
    """Add subcommands to the ``seamline`` command line.

    Parameters
    ----------
    cli : click.Group
        The ``seamline`` group; add commands with ``@cli.command()``. Import heavy
        libraries inside the command, not at module level.
    """


@hookspec(firstresult=True)
def seamline_prepare_input(
    image: Image, card: ModelCard, kind: str
) -> tuple[Image, Callable[[Image, str], Image]] | None:
    """Bring an image onto the grid a model expects, and say how to bring results back.

    Called by :func:`seamline.predict` with a model bundle, and by the trainer for the
    training image and its labels, so a model sees the same grid in training and in
    prediction. A medical plugin reorients a volume to RAS and resamples it to the
    bundle's target spacing here. The first plugin that returns something wins; return
    None to leave the image as it is.

    Parameters
    ----------
    image : seamline.Image
        The image as read.
    card : seamline.card.ModelCard
        The bundle's model card (``target_spacing``, ``spatial_dims``, ...).
    kind : {"image", "labels"}
        What *image* holds: intensities (resampled linearly) or labels (nearest).

    Returns
    -------
    tuple of (seamline.Image, callable) or None
        The image on the model's grid, and a function that maps an output Image on that
        grid back onto the input's own grid (``restore(output, kind)`` where kind is
        ``"labels"`` or ``"scores"``).
    """


@hookspec(firstresult=True)
def seamline_vector_backend() -> VectorBackend | None:
    """Provide the polygon backend that :func:`seamline.vectorize` runs on.

    The core finds connected components across chunks and merges polygon pieces in
    integer pixel coordinates (with shapely); it needs a plugin to trace one chunk into
    polygons and to build the final table (the geo plugin does both with rasterio and
    geopandas). The first plugin that returns a backend wins.

    Returns
    -------
    seamline.vectorize.VectorBackend or None
        ``polygonize(array, connectivity, origin) -> (geometries, values)`` traces the
        4- or 8-connected regions of equal non-zero value of a 2D integer array, a chunk
        whose first pixel is at ``origin = (row, col)``, into shapely polygons whose
        vertices are ``(col, row)`` pixel corners of the image (it runs inside dask tasks,
        so it must pickle);
        ``to_frame(columns, geometry, crs)`` turns a dict of columns and a geometry array in
        world coordinates into a table (a GeoDataFrame).
    """


@hookspec(firstresult=True)
def seamline_overview(image: Image, step: int) -> np.ndarray | None:
    """Read every *step*-th pixel of a 2D image cheaply, from its file's overviews, for a picture.

    :func:`seamline.show` (and so ``--preview``) calls it before drawing a large scene, so
    that a picture of a huge raster reads a few megabytes, not the raster. A plugin
    answers only for an image whose pixels are its file's, untouched (a window, a stride
    or some bands of what its reader returned); the geo plugin reads GeoTIFF overviews.
    The first plugin that returns something wins; return None otherwise, and the image
    is read at the stride, chunk by chunk.

    Parameters
    ----------
    image : seamline.Image
        A 2D image.
    step : int
        The stride along rows and columns (2 or more).

    Returns
    -------
    numpy.ndarray or None
        Shaped like ``image.data[:, ::step, ::step]``. The values are for pictures: a
        pixel of an overview may be an average of the pixels it covers.
    """


@hookspec(firstresult=True)
def seamline_warp(image: Image, like: Image, resampling: str) -> Image | None:
    """Bring an image onto another image's grid, lazily, chunk by chunk.

    :func:`seamline.stack` calls it for an Image input whose grid differs from the
    stack's (a file path is brought onto the grid by its reader instead, through
    ``open(path, like=...)``). The geo plugin warps rasters between any two CRSs with
    GDAL. The first plugin that returns something wins; return None for images this
    plugin cannot warp (no CRS, a volume).

    Parameters
    ----------
    image : seamline.Image
        The image to warp.
    like : seamline.Image
        The image whose grid (affine, CRS, shape) and chunks the result takes; its data
        are never computed.
    resampling : str
        ``"nearest"``, ``"bilinear"``, ``"cubic"``, ``"average"`` or ``"mode"``.

    Returns
    -------
    seamline.Image or None
        The image on *like*'s grid, with its own bands, band names and nodata (and a
        ``mask`` where the grid reaches beyond it).
    """
