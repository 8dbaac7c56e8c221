"""Surface meshes of labels: marching cubes per label, vertices in world millimetres.

For every label of a volume, :func:`label_mesh` runs
:func:`skimage.measure.marching_cubes` on the label's bounding box only (read from the
lazy volume, padded by one voxel so that every surface closes), at the iso-level 0.5
between inside and outside voxel centres, and maps the vertices through the affine into
world coordinates (RAS mm for NIfTI). When the affine flips handedness (LPS, LAS, ...),
the triangles' winding is reversed so that normals still point outwards.
:func:`write_meshes` saves one file per label, binary STL or Wavefront OBJ.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import skimage.measure

from seamline.atomic import atomic_output
from seamline.errors import InputError
from seamline.image import Image

from .stats import measure_labels

__all__ = ["label_mesh", "write_meshes", "write_stl", "write_obj", "check_meshes_output", "MESH_FORMATS"]

MESH_FORMATS = ("stl", "obj")
_STL_TRIANGLE = np.dtype([("normal", "<f4", 3), ("vertices", "<f4", (3, 3)), ("attribute", "<u2")])


def label_mesh(
    labels: Image, label: int, *, bbox: tuple[slice, ...] | None = None, step_size: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """The surface of one label, in world coordinates.

    Parameters
    ----------
    labels : Image
        A label volume with one channel.
    label : int
        The label id.
    bbox : tuple of slice, optional
        Its bounding box in voxel indices (from :func:`seamline.measure.measure`); the
        whole volume when omitted.
    step_size : int
        Marching cubes step (larger is coarser and faster).

    Returns
    -------
    vertices : numpy.ndarray
        ``(V, 3)`` float, world coordinates.
    faces : numpy.ndarray
        ``(F, 3)`` int, vertex indices, outward-facing (counter-clockwise seen from
        outside).
    """
    bbox = bbox or tuple(slice(0, n) for n in labels.spatial_shape)
    inside = np.asarray(labels.data[(0, *bbox)].compute() == label, dtype=np.uint8)
    inside = np.pad(inside, 1)
    vertices, faces, _, _ = skimage.measure.marching_cubes(inside, 0.5, step_size=step_size)
    start = np.array([s.start for s in bbox], dtype=float) - 1
    world = (vertices + start) @ labels.affine[:3, :3].T + labels.affine[:3, 3]
    # skimage winds these faces clockwise seen from outside in index space; a mirroring
    # affine turns them counter-clockwise already.
    if np.linalg.det(labels.affine[:3, :3]) > 0:
        faces = faces[:, ::-1]
    return world, faces


def write_stl(vertices: np.ndarray, faces: np.ndarray, path: str | os.PathLike) -> None:
    """Write a binary STL file.

    Parameters
    ----------
    vertices : numpy.ndarray
        ``(V, 3)`` coordinates.
    faces : numpy.ndarray
        ``(F, 3)`` vertex indices.
    path : str or os.PathLike
        The file to write (not atomic by itself; :func:`write_meshes` is).
    """
    corners = vertices[faces]
    normals = np.cross(corners[:, 1] - corners[:, 0], corners[:, 2] - corners[:, 0])
    lengths = np.linalg.norm(normals, axis=1, keepdims=True)
    triangles = np.zeros(len(faces), dtype=_STL_TRIANGLE)
    triangles["normal"] = np.divide(normals, lengths, out=np.zeros_like(normals), where=lengths > 0)
    triangles["vertices"] = corners
    with open(path, "wb") as f:
        f.write(b"seamline surface mesh".ljust(80, b" "))
        f.write(np.uint32(len(faces)).tobytes())
        f.write(triangles.tobytes())


def write_obj(vertices: np.ndarray, faces: np.ndarray, path: str | os.PathLike) -> None:
    """Write a Wavefront OBJ file (vertices and triangles).

    Parameters
    ----------
    vertices : numpy.ndarray
        ``(V, 3)`` coordinates.
    faces : numpy.ndarray
        ``(F, 3)`` vertex indices (written 1-based).
    path : str or os.PathLike
        The file to write.
    """
    with open(path, "w") as f:
        np.savetxt(f, vertices, fmt="v %.6f %.6f %.6f")
        np.savetxt(f, faces + 1, fmt="f %d %d %d")


def _file_name(label: int, name: str, fmt: str) -> str:
    return f"{label:03d}_{re.sub(r'[^A-Za-z0-9_.-]+', '_', name).strip('_') or 'label'}.{fmt}"


def write_meshes(
    labels: Image,
    directory: str | os.PathLike,
    *,
    names: Mapping[int, str] | None = None,
    format: str = "stl",
    step_size: int = 1,
    overwrite: bool = False,
) -> list[str]:
    """Write one surface mesh per label into *directory*, atomically.

    Parameters
    ----------
    labels : Image
        A label volume with one channel (0 is background and gets no mesh).
    directory : str or os.PathLike
        The directory to create; files are named ``<id>_<name>.<format>``.
    names : mapping of int to str, optional
        Label names; ``labels.meta["class_names"]`` by default.
    format : {"stl", "obj"}
        Binary STL or Wavefront OBJ.
    step_size : int
        Marching cubes step.
    overwrite : bool
        Replace an existing directory.

    Returns
    -------
    list of str
        The files written.

    Raises
    ------
    InputError
        If the labels are not a 3D volume, the format is unknown, or the directory exists
        and *overwrite* is false.
    """
    if format not in MESH_FORMATS:
        raise InputError(f"unknown mesh format {format!r}; one of {', '.join(MESH_FORMATS)}")
    check_meshes_output(directory, labels)
    names = names if names is not None else labels.meta.get("class_names") or {}
    table = measure_labels(labels)
    write = write_stl if format == "stl" else write_obj
    written = []
    with atomic_output(directory, overwrite=overwrite) as tmp:
        tmp.mkdir()
        for label, row in table.iterrows():
            bbox = tuple(slice(int(row[f"bbox_start_{a}"]), int(row[f"bbox_stop_{a}"])) for a in range(3))
            vertices, faces = label_mesh(labels, int(label), bbox=bbox, step_size=step_size)
            file_name = _file_name(int(label), names.get(int(label), f"label_{label}"), format)
            write(vertices, faces, tmp / file_name)
            written.append(os.fspath(Path(directory) / file_name))
    return written


def check_meshes_output(path: str | os.PathLike, image: Image) -> None:
    """Check, before any work, that meshes can be made from *image*: it must be a 3D volume.

    Parameters
    ----------
    path : str or os.PathLike
        The directory the meshes go to.
    image : Image
        The (lazy, unread) input of ``seamline predict``, or the label volume.

    Raises
    ------
    InputError
        If *image* is not 3D (a 2D scene has no surfaces), naming its file.
    """
    if image.ndim != 3:
        raise InputError(f"meshes need a 3D volume, got a {image.ndim}D image", image.meta.get("path"))


def write_meshes_output(
    labels: Image, path: str | os.PathLike, *, image: Image | None = None, overwrite: bool = False
) -> list[str]:
    """The ``meshes`` output of ``seamline predict``: one STL per predicted label.

    Parameters
    ----------
    labels : Image
        Predicted labels on the input's grid.
    path : str or os.PathLike
        The directory to create.
    image : Image, optional
        The input volume (unused: a surface depends on the labels only).
    overwrite : bool
        Replace an existing directory.

    Returns
    -------
    list of str
        The files written.
    """
    return write_meshes(labels, path, overwrite=overwrite)
