"""NIfTI in and out: the medical plugin's public NIfTI API in one place.

Reading (:func:`open_nifti`, in :mod:`.nifti_read`) is lazy: a memory-mapped ``.nii`` or
slabs of a ``.nii.gz``, the header kept whole in ``meta``. Writing (:func:`save_nifti`,
in :mod:`.nifti_write`) streams block by block and atomically, keeping the source's
sform and qform. Label volumes carry a label table (:func:`label_table`, in
:mod:`.label_table`) in their header and in a sidecar (:func:`sidecar_path`).
"""

from __future__ import annotations

from .formats import SUFFIXES, can_open, can_save
from .label_table import label_table, sidecar_path
from .nifti_read import VoxelFile, open_nifti
from .nifti_write import save_nifti

__all__ = ["can_open", "can_save", "open_nifti", "save_nifti", "label_table", "sidecar_path", "VoxelFile", "SUFFIXES"]
