"""Label raster to polygons, chunk by chunk, with the same result whatever the chunking.

:func:`vectorize` works in three steps, all in integer pixel coordinates so that the
pieces of a polygon cut by chunk borders meet exactly:

1. **components across chunks**: :func:`seamline.labels.label` with ``by_value=True``
   gives every connected region of equal class its own number, across chunk borders;
2. **trace each chunk**: each chunk of that numbered raster is traced into polygons, in
   parallel on dask, in the image's pixel coordinates (the chunk's origin is an integer
   translation, exact); components that lie in one chunk are finished right there;
3. **merge**: the pieces of one component meet on whole pixel edges with integer
   vertices; with a vertex put on every pixel corner along the chunk borders, their union
   is a coverage union, exact and fast. The vertices left in the middle of straight edges
   are dropped (whole-image tracing has none), and only then is the image's affine applied.

Chunks are traced a group at a time, and only the pieces still open are kept from one
group to the next: :func:`vectorize_batches` hands each group's finished polygons on as
they come (a writer appends them to a file), so the polygons never all sit in memory;
:func:`vectorize` gathers them into one sorted table.

Tracing a chunk and building the final table need rasterio and geopandas, which the core
never imports: a plugin provides them through the ``seamline_vector_backend`` hook.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Iterator
from typing import Any

import dask
import dask.array as da
import numpy as np
import shapely

from ._chunks import chunk_origins, spatial_array, workers
from .errors import InputError
from .image import Image
from .labels import label
from .plugins import call_hook

__all__ = ["VectorBackend", "vectorize", "vectorize_batches"]

#: The affine of a bare array: world ``(x, y)`` = pixel ``(col, row)``, as rasterio's identity.
PIXEL_AFFINE = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])


@dataclasses.dataclass(frozen=True)
class VectorBackend:
    """What a plugin provides so that :func:`vectorize` can trace and tabulate polygons.

    Attributes
    ----------
    polygonize : callable
        ``polygonize(array, connectivity, origin) -> (geometries, values)``: the 4- or
        8-connected regions of equal non-zero value of a 2D integer array (a chunk whose
        first pixel is at ``origin = (row, col)``) as shapely polygons whose vertices are
        ``(col, row)`` pixel corners of the image, and their values. Must pickle (it runs
        in dask tasks).
    to_frame : callable
        ``to_frame(columns, geometry, crs) -> table``: a dict of column arrays and the
        world-coordinate geometries as a table (a GeoDataFrame).
    """

    polygonize: Callable[[np.ndarray, int, tuple[int, int]], tuple[np.ndarray, np.ndarray]]
    to_frame: Callable[[dict[str, Any], np.ndarray, Any], Any]


def _backend() -> VectorBackend:
    return call_hook("seamline_vector_backend", needed="vectorize needs a polygon backend, such as the geo plugin's")


def _to_world(geometries: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Apply the ``(row, col)`` affine to ``(col, row)`` vertices, in place, in GDAL's order of operations.

    So a vertex gets the same world coordinates as with whole-image ``rasterio.features.shapes``.
    In place, because the geometries are this module's own fresh ones and a copy of every
    polygon would double the memory they take.
    """
    m = affine
    xy = shapely.get_coordinates(geometries)
    col, row = xy[:, 0], xy[:, 1]
    world = np.stack([m[0, 2] + col * m[0, 1] + row * m[0, 0], m[1, 2] + col * m[1, 1] + row * m[1, 0]], axis=1)
    shapely.set_coordinates(geometries, world)
    return geometries


def _trace_chunk(
    ids: np.ndarray,
    values: np.ndarray,
    origin: tuple[int, int],
    inner_edges: tuple[bool, bool, bool, bool],
    connectivity: int,
    affine: np.ndarray,
    polygonize: Callable,
) -> tuple[tuple[np.ndarray, ...], tuple[np.ndarray, ...]]:
    """Step 2 on one chunk: its pieces as (ids, classes, geometries), finished and open.

    A piece is finished when its component lies in this chunk alone (it touches no edge
    shared with another chunk and is its component's only piece here); it is returned in
    world coordinates. Open pieces stay in image pixel coordinates, for step 3. With
    connectivity 8, rings that touch themselves at a corner (GDAL's way of writing pixels
    that meet only diagonally) are first split into valid parts.
    """
    geometries, piece_ids = polygonize(ids, connectivity, origin)
    geometries = np.asarray(geometries, dtype=object)
    if connectivity == 8:
        invalid = ~shapely.is_valid(geometries)
        geometries[invalid] = shapely.make_valid(geometries[invalid], method="structure", keep_collapsed=False)
    piece_ids = np.asarray(piece_ids, dtype=np.int64)
    inside = ids > 0
    present, where = np.unique(ids[inside], return_inverse=True)
    class_of = np.empty(len(present), dtype=np.int64)
    class_of[where] = values[inside]  # every pixel of a component has its class
    classes = class_of[np.searchsorted(present, piece_ids)]
    edges = [ids[0], ids[-1], ids[:, 0], ids[:, -1]]
    on_edges = np.concatenate([edge for edge, inner in zip(edges, inner_edges, strict=True) if inner] or [[]])
    unique, counts = np.unique(piece_ids, return_counts=True)
    is_open = np.isin(piece_ids, on_edges) | np.isin(piece_ids, unique[counts > 1])
    done = ~is_open
    return (
        (piece_ids[done], classes[done], _to_world(geometries[done], affine)),
        (piece_ids[is_open], classes[is_open], geometries[is_open]),
    )


def _polygon_parts(geometries: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The polygons of *geometries* as ragged arrays: vertices, ring ends, polygon ends, and owners."""
    parts, owner = shapely.get_parts(geometries, return_index=True)
    if len(parts) == 0:
        return np.empty((0, 2)), np.zeros(1, dtype=np.int64), np.zeros(1, dtype=np.int64), owner
    _, coords, (ring_ends, polygon_ends) = shapely.to_ragged_array(parts)
    return coords, ring_ends, polygon_ends, owner


def _node_on_borders(pieces: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Put a vertex on every pixel corner along the edges that lie on chunk borders.

    Two pieces that meet on a chunk border then share their vertices there, which is
    what a coverage union needs. Returns the noded polygons and the piece each came from.
    """
    coords, ring_ends, polygon_ends, owner = _polygon_parts(pieces)
    x, y = coords[:, 0], coords[:, 1]
    following = np.minimum(np.arange(1, len(x) + 1), max(len(x) - 1, 0))
    last = np.zeros(len(x), dtype=bool)
    last[ring_ends[1:] - 1] = True
    dx, dy = np.where(last, 0, x[following] - x), np.where(last, 0, y[following] - y)
    on_border = ((dx == 0) & np.isin(x, cols)) | ((dy == 0) & np.isin(y, rows))
    repeats = 1 + np.where(on_border & ~last, np.abs(dx) + np.abs(dy) - 1, 0).astype(np.int64)
    source = np.repeat(np.arange(len(x)), repeats)
    step = np.arange(len(source)) - np.repeat(np.cumsum(repeats) - repeats, repeats)
    noded = np.stack([x[source] + step * np.sign(dx)[source], y[source] + step * np.sign(dy)[source]], axis=1)
    ends = np.concatenate([[0], np.cumsum(repeats)])[ring_ends]
    return shapely.from_ragged_array(shapely.GeometryType.POLYGON, noded, (ends, polygon_ends)), owner


def _drop_straight_vertices(geometries: np.ndarray) -> np.ndarray:
    """Remove the vertices that sit in the middle of a straight (axis-aligned) edge.

    Whole-image GDAL tracing has none; a union leaves them where a chunk border crossed an
    edge. Rings are closed (their last vertex repeats the first) and stay closed.
    """
    coords, ring_ends, polygon_ends, owner = _polygon_parts(geometries)
    x, y = coords[:, 0], coords[:, 1]
    sizes = np.diff(ring_ends) - 1  # distinct vertices per ring
    ring = np.repeat(np.arange(len(sizes)), sizes + 1)
    last = np.zeros(len(x), dtype=bool)
    last[ring_ends[1:] - 1] = True
    position = np.arange(len(x)) - ring_ends[ring]
    before = ring_ends[ring] + (position - 1) % sizes[ring]
    after = ring_ends[ring] + (position + 1) % sizes[ring]
    straight = ((x[before] == x) & (x == x[after])) | ((y[before] == y) & (y == y[after]))
    kept = np.flatnonzero(~last & ~straight)
    counts = np.bincount(ring[kept], minlength=len(sizes))
    ends = np.cumsum(counts)
    order = np.insert(kept, ends, kept[ends - counts])  # close each ring on its first kept vertex
    ring_ends = np.concatenate([[0], np.cumsum(counts + 1)])
    parts = shapely.from_ragged_array(shapely.GeometryType.POLYGON, coords[order], (ring_ends, polygon_ends))
    single = np.bincount(owner, minlength=len(geometries)) == 1
    result = shapely.multipolygons(parts, indices=owner)
    result[single] = parts[np.isin(owner, np.flatnonzero(single))]
    return result


def _union_groups(groups: list[np.ndarray], rows: np.ndarray, cols: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Step 3 on a batch of components: the union of each one's pieces, in world coordinates."""
    merged = np.array([pieces[0] for pieces in groups] or [], dtype=object)
    several = np.flatnonzero([len(pieces) > 1 for pieces in groups])
    if len(several):
        pieces = np.concatenate([groups[at] for at in several])
        noded, piece = _node_on_borders(pieces, rows, cols)
        group = np.repeat(np.arange(len(several)), [len(groups[at]) for at in several])[piece]
        starts = np.flatnonzero(np.diff(group, prepend=-1))
        unions = np.array([shapely.coverage_union_all(part) for part in np.split(noded, starts[1:])], dtype=object)
        merged[several] = _drop_straight_vertices(unions)
    return _to_world(merged, affine)


def _merge(
    ids: np.ndarray,
    classes: np.ndarray,
    pieces: np.ndarray,
    borders: tuple[np.ndarray, np.ndarray],
    affine: np.ndarray,
    batches: int,
) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Step 3: one geometry per component id from its open pieces, batches of components in parallel.

    Pieces meet on whole pixel edges with integer vertices, so once those edges are noded
    the union is a coverage union: exact, and much faster than a general overlay. The
    batches come a few at a time (as many as dask runs at once), each as it is made.
    """
    order = np.argsort(ids, kind="stable")
    ids, classes, pieces = ids[order], classes[order], pieces[order]
    unique, starts = np.unique(ids, return_index=True)
    groups = np.split(pieces, starts[1:]) if len(pieces) else []
    del pieces
    bounds = list(itertools.pairwise(np.linspace(0, len(groups), batches + 1).astype(int)))
    union = dask.delayed(_union_groups, pure=False)
    at_once = workers()
    for first in range(0, len(bounds), at_once):
        done = dask.compute(*[union(groups[a:b], *borders, affine) for a, b in bounds[first : first + at_once]])
        for (a, b), merged in zip(bounds[first : first + at_once], done, strict=True):
            yield unique[a:b], classes[starts[a:b]], merged


@dataclasses.dataclass(frozen=True)
class _Source:
    """A label raster ready to trace: its components, classes, chunk layout and where it lies."""

    ids: da.Array
    values: da.Array
    chunks: list[tuple[tuple[int, int], tuple[bool, bool, bool, bool]]]
    borders: tuple[np.ndarray, np.ndarray]
    affine: np.ndarray
    crs: Any
    names: dict
    backend: VectorBackend


def _source(labels: Any, connectivity: int) -> _Source:
    array = spatial_array(labels)
    if array.ndim != 2 or not (np.issubdtype(array.dtype, np.integer) or array.dtype == bool):
        raise InputError(f"vectorize takes a 2D integer label raster, got {array.dtype} of shape {array.shape}")
    if connectivity not in (4, 8):
        raise InputError(f"connectivity must be 4 or 8, got {connectivity!r}")
    backend = _backend()
    meta = labels.meta if isinstance(labels, Image) else {}
    nodata = meta.get("nodata")
    values = array
    if nodata is not None and np.isfinite(nodata):
        values = da.where(array == nodata, 0, array)
    ids, _ = label(values, connectivity=connectivity, by_value=True)
    rows, cols = (np.cumsum((0, *sizes[:-1])) for sizes in ids.chunks)
    chunks = []
    for (r, c), (h, w) in zip(chunk_origins(ids.chunks), itertools.product(*ids.chunks), strict=True):
        chunks.append(((r, c), (r > 0, r + h < ids.shape[0], c > 0, c + w < ids.shape[1])))
    return _Source(
        ids=ids,
        values=values.rechunk(ids.chunks),
        chunks=chunks,
        borders=(rows[1:].astype(float), cols[1:].astype(float)),
        affine=labels.affine if isinstance(labels, Image) else PIXEL_AFFINE,
        crs=labels.crs if isinstance(labels, Image) else None,
        names=meta.get("class_names") or {},
        backend=backend,
    )


def _polygons(source: _Source, connectivity: int) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """(component, class, geometry) in world coordinates, a group of chunks at a time, merged components last.

    Only the pieces still open (components that cross a chunk border) are kept from one
    group to the next, so the polygons never all sit in memory at once.
    """
    ids, values = source.ids.to_delayed().ravel(), source.values.to_delayed().ravel()
    trace = dask.delayed(_trace_chunk, pure=False)
    tasks = [
        trace(i, v, origin, inner, connectivity, source.affine, source.backend.polygonize)
        for i, v, (origin, inner) in zip(ids, values, source.chunks, strict=True)
    ]
    size = 2 * workers()
    opened = []
    for first in range(0, len(tasks), size):
        for finished, still_open in dask.compute(*tasks[first : first + size]):
            opened.append(still_open)
            yield finished
    open_ids, open_classes, open_pieces = (np.concatenate([part[k] for part in opened]) for k in range(3))
    del opened
    yield from _merge(
        open_ids, open_classes, open_pieces, source.borders, source.affine, batches=max(1, len(tasks) // 4)
    )


def _columns(
    class_id: np.ndarray, geometry: np.ndarray, names: dict, simplify: float | None, min_area: float
) -> tuple[np.ndarray, dict[str, Any], np.ndarray]:
    """Simplify, drop the small, and measure: which rows stay, their columns and their geometries."""
    if simplify:
        geometry = shapely.simplify(geometry, simplify, preserve_topology=True)
    area = shapely.area(geometry)
    keep = area >= min_area
    geometry, class_id = geometry[keep], class_id[keep]
    present, where = np.unique(class_id, return_inverse=True)
    columns: dict[str, Any] = {
        "class_id": class_id,
        "class_name": np.array([str(names.get(int(c), int(c))) for c in present], dtype=object)[where],
        "area": area[keep],
        "perimeter": shapely.length(geometry),
    }
    return keep, columns, geometry


def vectorize(
    labels: Any,
    *,
    connectivity: int = 4,
    simplify: float | None = None,
    min_area: float = 0,
    instances: bool = False,
) -> Any:
    """Turn a label raster into one polygon per connected component, exactly, chunk by chunk.

    Parameters
    ----------
    labels : Image, numpy.ndarray or dask.array.Array
        Integer labels: a one-band 2D Image (its affine, CRS, ``class_names`` and
        ``nodata`` are used) or a 2D array (pixel coordinates: x is the column, y the
        row, as with ``rasterio.features.shapes`` and no transform). Class 0 is background and
        nodata pixels are never traced.
    connectivity : {4, 8}
        Pixels that touch by an edge (4) or also by a corner (8) belong to one
        component. With 8, a component whose parts touch only at a corner is a valid
        MultiPolygon (GDAL writes it as one ring that touches itself; both cover the
        same pixels).
    simplify : float, optional
        Douglas-Peucker tolerance in CRS units (topology preserved per polygon). The
        result is then no longer exact.
    min_area : float
        Drop polygons smaller than this, in CRS units squared.
    instances : bool
        Add an ``instance_id`` column numbering the components 1..n (to count fields).

    Returns
    -------
    geopandas.GeoDataFrame
        Columns ``class_id``, ``class_name``, ``area`` and ``perimeter`` (CRS units, from
        the returned geometry; plus ``area_m2`` when the CRS is geographic), optionally
        ``instance_id``, and ``geometry``; rows sorted by class, then by component.

    Raises
    ------
    InputError
        If the labels are not 2D integers or the connectivity is not 4 or 8.
    PluginError
        If no plugin provides a polygon backend.

    Notes
    -----
    The labels are read more than once (components, then polygons); a lazy prediction is
    best saved and reopened (or persisted) first, or the model runs for each read. To
    write the polygons to a file, :func:`vectorize_batches` holds far less memory.
    """
    source = _source(labels, connectivity)
    component, class_id, geometry = (
        np.concatenate(parts) for parts in zip(*_polygons(source, connectivity), strict=True)
    )
    keep, columns, geometry = _columns(class_id, geometry, source.names, simplify, min_area)
    order = np.lexsort((component[keep], columns["class_id"]))
    columns = {name: column[order] for name, column in columns.items()}
    if instances:
        columns["instance_id"] = np.arange(1, len(geometry) + 1)
    return source.backend.to_frame(columns, geometry[order], source.crs)


def vectorize_batches(
    labels: Any,
    *,
    connectivity: int = 4,
    simplify: float | None = None,
    min_area: float = 0,
    instances: bool = False,
) -> Iterator[Any]:
    """The polygons of :func:`vectorize`, as tables of a few chunks each, made one after the other.

    The polygons are the same, but they come as they are finished (the components that
    lie in a group of chunks, then those merged across chunk borders), not sorted, and
    the ones already yielded are not kept: a writer that appends each table to a file
    holds a few chunks' polygons at a time, never all of them.

    Parameters
    ----------
    labels : Image, numpy.ndarray or dask.array.Array
        As for :func:`vectorize`.
    connectivity : {4, 8}
        As for :func:`vectorize`.
    simplify : float, optional
        As for :func:`vectorize`.
    min_area : float
        As for :func:`vectorize`.
    instances : bool
        Number the polygons 1..n in the order they come.

    Yields
    ------
    geopandas.GeoDataFrame
        The columns of :func:`vectorize`; at least one table, maybe empty.

    Raises
    ------
    InputError
        If the labels are not 2D integers or the connectivity is not 4 or 8.
    PluginError
        If no plugin provides a polygon backend.
    """
    source = _source(labels, connectivity)
    written, tables = 0, 0
    for _, class_id, geometry in _polygons(source, connectivity):
        _, columns, geometry = _columns(class_id, geometry, source.names, simplify, min_area)
        if tables and not len(geometry):
            continue
        if instances:
            columns["instance_id"] = np.arange(written + 1, written + len(geometry) + 1)
        written, tables = written + len(geometry), tables + 1
        yield source.backend.to_frame(columns, geometry, source.crs)
