"""Surface meshes: closed, outward, in world millimetres, as STL and OBJ."""

from __future__ import annotations

import numpy as np
import pytest

from seamline import Image, InputError, OutputExistsError
from seamline_medical.meshes import label_mesh, write_meshes


def _signed_volume(vertices, faces):
    corners = vertices[faces]
    return np.einsum("ij,ij->i", corners[:, 0], np.cross(corners[:, 1], corners[:, 2])).sum() / 6


def _ball(shape=(24, 22, 20), centre=(11, 10, 9), radius=7):
    grid = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"))
    return (((grid - np.reshape(centre, (3, 1, 1, 1))) ** 2).sum(0) < radius**2).astype(np.uint8)


@pytest.mark.parametrize("diagonal", [(2.0, 3.0, 4.0), (-2.0, -3.0, 4.0), (-2.0, 3.0, 4.0)])
def test_mesh_encloses_the_label_volume_outwards(diagonal):
    ball = _ball()
    affine = np.diag([*diagonal, 1.0])
    affine[:3, 3] = [-50.0, 20.0, 5.0]
    vertices, faces = label_mesh(Image(ball[None], affine), 1)
    voxel_volume = abs(np.prod(diagonal))
    assert _signed_volume(vertices, faces) == pytest.approx(ball.sum() * voxel_volume, rel=0.05)
    centre = np.array([11, 10, 9]) @ affine[:3, :3].T + affine[:3, 3]
    np.testing.assert_allclose(vertices.mean(0), centre, atol=0.5)


def _read_stl(path):
    raw = path.read_bytes()
    count = int(np.frombuffer(raw[80:84], "<u4")[0])
    triangles = np.frombuffer(raw[84:], dtype=[("normal", "<f4", 3), ("vertices", "<f4", (3, 3)), ("attribute", "<u2")])
    assert len(triangles) == count
    return triangles


def test_write_meshes_stl_and_obj(tmp_path):
    labels = np.zeros((1, 20, 20, 20), np.uint8)
    labels[0, 2:8, 2:8, 2:8] = 1
    labels[0, 10:18, 11:17, 4:15] = 4
    image = Image(labels, np.diag([1.5, 1.5, 2.0, 1.0]), meta={"class_names": {1: "left kidney", 4: "liver"}})
    files = write_meshes(image, tmp_path / "stl")
    assert [f.rsplit("/", 1)[1] for f in files] == ["001_left_kidney.stl", "004_liver.stl"]
    triangles = _read_stl(tmp_path / "stl" / "004_liver.stl")
    volume = _signed_volume(
        triangles["vertices"].astype(float).reshape(-1, 3), np.arange(3 * len(triangles)).reshape(-1, 3)
    )
    assert volume == pytest.approx(8 * 6 * 11 * 4.5, rel=0.1)
    np.testing.assert_allclose(np.linalg.norm(triangles["normal"], axis=1), 1.0, atol=1e-5)
    files = write_meshes(image, tmp_path / "obj", format="obj")
    text = open(files[0]).read().splitlines()
    assert text[0].startswith("v ") and text[-1].startswith("f ")
    with pytest.raises(OutputExistsError):
        write_meshes(image, tmp_path / "obj", format="obj")


def test_meshes_need_a_volume_and_a_known_format(tmp_path):
    with pytest.raises(InputError, match="3D"):
        write_meshes(Image(np.ones((1, 4, 4), np.uint8)), tmp_path / "m")
    with pytest.raises(InputError, match="format"):
        write_meshes(Image(np.ones((1, 4, 4, 4), np.uint8)), tmp_path / "m", format="ply")


def test_meshes_of_a_2d_image_are_refused_before_work(tmp_path):
    from seamline_medical.meshes import check_meshes_output

    scene = Image(np.ones((1, 8, 8), np.uint8), meta={"path": "scene.tif"})
    with pytest.raises(InputError, match="meshes need a 3D volume, got a 2D image") as info:
        check_meshes_output(tmp_path / "meshes", scene)
    assert info.value.path == "scene.tif"
