"""What a segment is, in codes: class names to SNOMED CT concepts for DICOM SEG.

A DICOM segment says what it is with coded concepts: a *category* (an anatomical
structure, a morphologically abnormal one, tissue) and a *type* (liver, kidney, ...),
optionally with a laterality modifier. :func:`segment_codes` finds them for a class name
from a small table of common organs and findings (TotalSegmentator's names among them).
The codes themselves come from pydicom's DICOM code dictionary (``codes.SCT``), never
typed here. A name is normalised first: lower case, words joined by ``_``, ``left`` or
``right`` taken out as the laterality, numbers and vertebra levels (``rib_left_3``,
``vertebrae_L1``) dropped. A name the table does not know is "Tissue" (category and
type), as 3D Slicer's default terminology does, with the class name as the segment's
label.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from pydicom.sr.codedict import codes
from pydicom.sr.coding import Code

__all__ = ["SegmentCodes", "segment_codes", "ORGANS", "FINDINGS"]

#: Normalised class name -> pydicom ``codes.SCT`` keyword, category "Anatomical Structure".
ORGANS = {
    "adrenal_gland": "AdrenalGland",
    "aorta": "Aorta",
    "bladder": "Bladder",
    "urinary_bladder": "Bladder",
    "bone": "Bone",
    "brain": "Brain",
    "brainstem": "BrainStem",
    "breast": "Breast",
    "cerebellum": "Cerebellum",
    "clavicle": "Clavicle",
    "clavicula": "Clavicle",
    "colon": "Colon",
    "duodenum": "Duodenum",
    "esophagus": "Esophagus",
    "eye": "Eye",
    "fat": "Fat",
    "femur": "Femur",
    "gallbladder": "Gallbladder",
    "heart": "Heart",
    "hip": "Hip",
    "hippocampus": "Hippocampus",
    "humerus": "Humerus",
    "iliac_artery": "IliacArtery",
    "inferior_vena_cava": "InferiorVenaCava",
    "kidney": "Kidney",
    "kidneys": "Kidney",
    "liver": "Liver",
    "lung": "Lung",
    "lungs": "Lung",
    "muscle": "Muscle",
    "pancreas": "Pancreas",
    "portal_vein": "PortalVein",
    "portal_vein_and_splenic_vein": "PortalVein",
    "prostate": "Prostate",
    "pulmonary_artery": "PulmonaryArtery",
    "pulmonary_vein": "PulmonaryVein",
    "rectum": "Rectum",
    "rib": "Rib",
    "sacrum": "Sacrum",
    "scapula": "Scapula",
    "skin": "Skin",
    "skull": "Skull",
    "small_bowel": "SmallIntestine",
    "small_intestine": "SmallIntestine",
    "spinal_cord": "SpinalCord",
    "spleen": "Spleen",
    "sternum": "Sternum",
    "stomach": "Stomach",
    "thyroid": "Thyroid",
    "thyroid_gland": "Thyroid",
    "trachea": "Trachea",
    "uterus": "Uterus",
    "vertebra": "Vertebra",
    "vertebrae": "Vertebra",
}
#: Normalised class name -> keyword, category "Morphologically Abnormal Structure".
FINDINGS = {"lesion": "Lesion", "mass": "Mass", "neoplasm": "Neoplasm", "tumor": "Neoplasm", "tumour": "Neoplasm"}

_LEVEL = re.compile(r"^(\d+|[ctls]\d{1,2})$")


class SegmentCodes(NamedTuple):
    """The coded concepts of one segment."""

    category: Code
    type: Code
    laterality: Code | None


def segment_codes(name: str) -> SegmentCodes:
    """The category, type and laterality codes for a class called *name*.

    Parameters
    ----------
    name : str
        A class name, e.g. ``"liver"``, ``"kidney_left"``, ``"Adrenal gland right"``.

    Returns
    -------
    SegmentCodes
        SNOMED CT codes; "Tissue" for both category and type when the name is not in
        :data:`ORGANS` or :data:`FINDINGS`.
    """
    words = [w for w in re.split(r"[\s_\-]+", name.strip().lower()) if w]
    side = next((w for w in words if w in ("left", "right")), None)
    key = "_".join(w for w in words if w not in ("left", "right") and not _LEVEL.match(w))
    laterality = codes.SCT.Left if side == "left" else codes.SCT.Right if side == "right" else None
    if key in ORGANS:
        return SegmentCodes(codes.SCT.AnatomicalStructure, getattr(codes.SCT, ORGANS[key]), laterality)
    if key in FINDINGS:
        return SegmentCodes(codes.SCT.MorphologicallyAbnormalStructure, getattr(codes.SCT, FINDINGS[key]), laterality)
    return SegmentCodes(codes.SCT.Tissue, codes.SCT.Tissue, None)
