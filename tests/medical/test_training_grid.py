"""Training sees a volume on the grid prediction will use: RAS axes, the target spacing."""

from __future__ import annotations

import nibabel as nib
import numpy as np

import seamline
from seamline.training.config import load_config
from seamline.training.trainer import _on_model_grid


def test_training_image_and_labels_go_onto_the_prediction_grid(tmp_path):
    rng = np.random.default_rng(0)
    volume = rng.normal(100, 30, (20, 18, 12)).astype(np.float32)
    truth = (volume > 110).astype(np.uint8)
    lps = np.diag([-2.0, -2.0, 3.0, 1.0])
    lps[:3, 3] = (40, 30, -20)
    nib.save(nib.Nifti1Image(volume, lps), tmp_path / "mr.nii.gz")
    nib.save(nib.Nifti1Image(truth, lps), tmp_path / "seg.nii.gz")
    image, labels = seamline.open(tmp_path / "mr.nii.gz"), seamline.open(tmp_path / "seg.nii.gz")
    data = {"image": str(tmp_path / "mr.nii.gz"), "labels": str(tmp_path / "seg.nii.gz")}
    config = {"data": data, "classes": ["background", "bright"]}
    cfg = load_config(config | {"out": str(tmp_path / "run")})

    on_grid, on_grid_labels = _on_model_grid(image, labels, cfg)
    canonical = nib.as_closest_canonical(nib.load(tmp_path / "mr.nii.gz"))
    np.testing.assert_allclose(on_grid.affine, canonical.affine)
    np.testing.assert_array_equal(on_grid.data.compute()[0], canonical.get_fdata().astype(np.float32))
    np.testing.assert_array_equal(on_grid_labels.data.compute()[0], on_grid.data.compute()[0] > 110)

    cfg = load_config(config | {"out": str(tmp_path / "run"), "predict": {"target_spacing": [3.0, 3.0, 3.0]}})
    on_grid, on_grid_labels = _on_model_grid(image, labels, cfg)
    assert on_grid.spacing == (3.0, 3.0, 3.0) and on_grid_labels.spatial_shape == on_grid.spatial_shape
    assert set(np.unique(on_grid_labels.data.compute())) <= {0, 1}  # nearest neighbour: no blended labels
