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

from typing import Any

import pluggy

hookspec = pluggy.HookspecMarker("seamline")
hookimpl = pluggy.HookimplMarker("seamline")


@hookspec
def seamline_readers(register: Any) -> None:
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
def seamline_writers(register: Any) -> None:
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
def seamline_models(register: Any) -> None:
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
def seamline_outputs(register: Any) -> None:
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
def seamline_recipes(register: Any) -> None:
    """Register task presets (glacier mapping, crop fields, MR organs, ...).

    Call ``register(Recipe(name=..., description=..., config={...}))``; the config holds
    defaults for training and prediction (bands, normalization, classes, tile size).

    Parameters
    ----------
    register : callable
        Takes one :class:`~seamline.plugins.Recipe`.
    """


@hookspec
def seamline_commands(cli: Any) -> None:
    """Add subcommands to the ``seamline`` command line.

    Parameters
    ----------
    cli : click.Group
        The ``seamline`` group; add commands with ``@cli.command()``. Import heavy
        libraries inside the command, not at module level.
    """


@hookspec(firstresult=True)
def seamline_prepare_input(image: Any, card: Any, kind: str) -> Any:
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
    card : seamline.bundle.ModelCard
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
def seamline_vector_backend() -> Any:
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
