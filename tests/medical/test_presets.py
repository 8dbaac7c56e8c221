"""CT and MR presets: recipes whose specs seamline.normalize applies per volume, lazily."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

import seamline
from seamline.normalize import normalize
from seamline.plugins import registry
from seamline_medical.presets import CT_WINDOWS, ct_window
from tests.conftest import data_file

FOLDER = "totalsegmentator_ct_mr"


def test_recipes_are_training_configs_at_1_5_mm(fresh_plugins):
    recipes = registry("recipes")
    assert {"ct-organs", "mr-organs", "mr-organs-percentile"} <= set(recipes)
    assert recipes["ct-organs"].config["normalization"] == {"kind": "window", "low": -160.0, "high": 240.0}
    assert recipes["mr-organs"].config["model"]["kwargs"]["spatial_dims"] == 3
    assert recipes["ct-lung"].config["predict"]["target_spacing"] == [1.5, 1.5, 1.5]


def test_ct_window_clips_and_scales():
    path = data_file(FOLDER, "example_ct_sm.nii.gz")
    hu = np.asanyarray(nib.load(path).dataobj).astype(np.float32)
    got = normalize(seamline.open(path, chunks=(1, 61, 101, 10)), ct_window("abdomen")).data.compute()[0]
    np.testing.assert_allclose(got, (np.clip(hu, -160, 240) + 160) / 400, atol=1e-6)
    level, width = CT_WINDOWS["lung"]
    assert ct_window("lung") == {"kind": "window", "low": level - width / 2, "high": level + width / 2}


def test_mr_presets_are_per_volume(fresh_plugins):
    path = data_file(FOLDER, "example_mr_sm.nii.gz")
    mr = np.asanyarray(nib.load(path).dataobj).astype(np.float64)
    image = seamline.open(path, chunks=(1, 117, 91, 5))
    recipes = registry("recipes")
    z = normalize(image, recipes["mr-organs"].config["normalization"]).data.compute()[0]
    np.testing.assert_allclose(z, (mr - mr.mean()) / mr.std(), atol=1e-4)
    scaled = normalize(image, recipes["mr-organs-percentile"].config["normalization"]).data.compute()[0]
    low, high = np.percentile(mr, [0.5, 99.5])
    np.testing.assert_allclose(scaled, (np.clip(mr, low, high) - low) / (high - low), atol=0.01)
    assert scaled.min() == 0 and scaled.max() == pytest.approx(1)
