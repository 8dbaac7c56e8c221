"""The medical plugin registers its records without importing the libraries they use."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import seamline
from seamline.plugins import registry


def test_loading_the_plugin_imports_no_nibabel():
    code = (
        "import sys; import seamline.plugins as p\n"
        "for kind in ('readers', 'writers', 'models', 'outputs', 'recipes'): p.registry(kind)\n"
        "heavy = ('nibabel', 'torch', 'monai', 'pydicom', 'highdicom', 'seamline_medical.nifti_read',\n"
        "         'seamline_medical.stats', 'seamline_medical.meshes', 'seamline_medical.geometry',\n"
        "         'seamline_medical.dicom_read', 'seamline_medical.dicom_seg')\n"
        "print([m for m in heavy if m in sys.modules])"
    )
    env = {**os.environ, "SEAMLINE_PLUGINS": "medical"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    assert result.stdout.strip() == "[]"


def test_deferred_records_do_the_work(tmp_path, fresh_plugins):
    reader, writer = registry("readers")["nifti"], registry("writers")["nifti"]
    assert reader.open.__name__ == "open_nifti" and writer.save.__name__ == "save_nifti"
    path = writer.save(seamline.Image(np.arange(8, dtype=np.uint8).reshape(1, 2, 2, 2)), tmp_path / "v.nii")
    np.testing.assert_array_equal(reader.open(path).data.compute().ravel(), np.arange(8))
    with pytest.raises(seamline.InputError, match="statistics are written as"):
        registry("outputs")["stats"].check(tmp_path / "s.txt", reader.open(path))
