"""The CT organ recipe, end to end on the real CT: a few epochs at the recipe's 1.5 mm grid."""

from __future__ import annotations

import numpy as np
import pytest

import seamline
from tests.conftest import data_file

pytestmark = pytest.mark.slow

LIVER, SPLEEN = 5, 1


def test_ct_organs_recipe_trains_and_predicts_on_the_input_grid(tmp_path):
    folder = "totalsegmentator_ct_mr"
    ct, segmentation = data_file(folder, "example_ct_sm.nii.gz"), data_file(folder, "example_seg.nii.gz")
    result = seamline.train(
        None,
        recipe="ct-organs",
        data={"image": str(ct), "labels": str(segmentation), "label_map": {LIVER: 1, SPLEEN: 2}},
        classes=["background", "liver", "spleen"],
        patches={"size": [48, 48, 32], "per_epoch": 8},
        predict={"tile_size": [48, 48, 32]},
        validation=None,
        training={"epochs": 2, "batch_size": 2, "progress": False},
        out=tmp_path / "run",
    )
    card = result.bundle.card
    assert card.target_spacing == [1.5, 1.5, 1.5] and card.overlap == 0.5
    assert card.normalization == {"kind": "window", "low": -160.0, "high": 240.0}
    image = seamline.open(ct)
    labels = seamline.predict(image, result.bundle, output="labels", progress=False)
    assert labels.spatial_shape == image.spatial_shape
    np.testing.assert_allclose(labels.affine, image.affine)
