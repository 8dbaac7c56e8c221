"""NIfTI: header extensions survive a save, and a header that lies about its size is refused."""

from __future__ import annotations

import gzip

import nibabel as nib
import numpy as np
import pytest

import seamline
from seamline import InputError


def test_header_extensions_round_trip(tmp_path):
    source = nib.Nifti1Image(np.arange(24, dtype=np.int16).reshape(2, 3, 4), np.diag([2.0, 2.0, 3.0, 1.0]))
    source.header.extensions.append(nib.nifti1.Nifti1Extension(6, b"scanner protocol: T1 MPRAGE"))
    source.header.extensions.append(nib.nifti1.Nifti1Extension(4, b"<afni>attributes</afni>"))
    nib.save(source, tmp_path / "source.nii.gz")
    for name in ("copy.nii", "copy.nii.gz"):
        seamline.save(seamline.open(tmp_path / "source.nii.gz"), tmp_path / name)
        kept = nib.load(tmp_path / name).header.extensions
        assert [(e.get_code(), e.get_content()) for e in kept] == [
            (6, b"scanner protocol: T1 MPRAGE"),
            (4, b"<afni>attributes</afni>"),
        ]
        np.testing.assert_array_equal(nib.load(tmp_path / name).get_fdata(), source.get_fdata())


def test_label_volumes_replace_their_table_and_keep_other_extensions(tmp_path):
    labels = seamline.Image(np.array([[[[0, 1], [2, 1]]]], np.uint8), meta={"class_names": {1: "liver", 2: "spleen"}})
    seamline.save(labels, tmp_path / "a.nii.gz")
    header = nib.load(tmp_path / "a.nii.gz").header
    header.extensions.append(nib.nifti1.Nifti1Extension(6, b"note"))
    image = seamline.open(tmp_path / "a.nii.gz")
    meta = {**image.meta, "nifti_header": header, "class_names": {1: "kidney", 2: "spleen"}}
    seamline.save(image.replace(meta=meta), tmp_path / "b.nii.gz")
    reread = seamline.open(tmp_path / "b.nii.gz")
    assert reread.meta["class_names"] == {1: "kidney", 2: "spleen"}
    contents = [e.get_content() for e in nib.load(tmp_path / "b.nii.gz").header.extensions]
    assert b"note" in contents and len(contents) == 2


def test_a_compressed_header_claiming_more_voxels_than_the_file_can_hold(tmp_path):
    header = nib.Nifti2Image(np.zeros((2, 2, 2), np.uint8), np.eye(4)).header
    header.set_data_shape((100_000, 100_000, 100_000))
    with gzip.open(tmp_path / "huge.nii.gz", "wb") as f:
        header.write_to(f)
        f.write(bytes(1000))
    with pytest.raises(InputError, match=r"huge\.nii\.gz: is truncated or corrupt: its header claims \(100000, 100000"):
        seamline.open(tmp_path / "huge.nii.gz")
