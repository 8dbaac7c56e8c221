"""Labels from probabilities: the most likely class, or regions painted in their order."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from seamline.image import Image
from seamline.logits import labels_of, paint_regions

PROBABILITIES = arrays(np.float32, st.tuples(st.integers(1, 4), st.integers(1, 6), st.integers(1, 6)),
                       elements=st.floats(0, 1, width=32))  # fmt: skip


@settings(max_examples=50, deadline=None)
@given(PROBABILITIES, st.data())
def test_each_voxel_takes_the_last_region_above_one_half(probabilities, data):
    order = data.draw(st.lists(st.integers(1, 300), min_size=len(probabilities), max_size=len(probabilities)))
    painted = paint_regions(probabilities, order)[0]
    for index in np.ndindex(painted.shape):
        above = [value for channel, value in enumerate(order) if probabilities[(channel, *index)] > 0.5]
        assert painted[index] == (above[-1] if above else 0)
    assert painted.dtype == (np.uint8 if max(order) < 255 else np.uint16)  # 255 is uint8 labels' nodata


def test_a_region_labelled_255_needs_uint16_since_255_is_uint8_nodata():
    probabilities = np.ones((2, 1, 1), np.float32)
    assert paint_regions(probabilities, [254, 1]).dtype == np.uint8
    painted = paint_regions(probabilities, [1, 255])
    assert painted.dtype == np.uint16 and int(painted.max()) == 255


@settings(max_examples=30, deadline=None)
@given(PROBABILITIES)
def test_labels_of_follows_the_regions_the_meta_names(probabilities):
    order = list(range(len(probabilities), 0, -1))
    plain = Image.from_array(probabilities)
    regions = plain.replace(meta={"regions_class_order": order})
    np.testing.assert_array_equal(labels_of(regions).data.compute(), paint_regions(probabilities, order))
    assert "regions_class_order" not in labels_of(regions).meta
    if len(probabilities) > 1:
        np.testing.assert_array_equal(labels_of(plain).data.compute()[0], probabilities.argmax(axis=0))
