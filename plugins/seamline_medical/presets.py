"""CT and MR presets: named radiology windows, and recipes that use them.

CT intensities are Hounsfield units, the same on every scanner, so a CT model is
normalized by a fixed *window* (:data:`CT_WINDOWS`, as ``(level, width)``;
:func:`ct_window` turns one into a ``seamline.normalize`` spec). MR intensities have no
unit, so MR recipes ask for a per-volume z-score or percentile scaling. The recipes
(:data:`RECIPES`) are configs in the model card's field names; the normalization itself
is :mod:`seamline.normalize`'s.
"""

from __future__ import annotations

from typing import Any

from seamline.plugins import Recipe

__all__ = ["CT_WINDOWS", "ct_window", "RECIPES"]

#: Radiology windows as (level, width) in HU.
CT_WINDOWS: dict[str, tuple[float, float]] = {
    "abdomen": (40.0, 400.0),
    "soft-tissue": (50.0, 350.0),
    "liver": (30.0, 150.0),
    "lung": (-600.0, 1500.0),
    "bone": (400.0, 1800.0),
    "brain": (40.0, 80.0),
}


def ct_window(name: str) -> dict[str, Any]:
    """The normalization spec of a named CT window.

    Parameters
    ----------
    name : str
        A key of :data:`CT_WINDOWS`.

    Returns
    -------
    dict
        ``{"kind": "window", "low": level - width / 2, "high": level + width / 2}``.

    Raises
    ------
    KeyError
        If the window is unknown.
    """
    level, width = CT_WINDOWS[name]
    return {"kind": "window", "low": level - width / 2, "high": level + width / 2}


_VOLUME = {"spatial_dims": 3, "target_spacing": [1.5, 1.5, 1.5], "tile_size": [96, 96, 96], "overlap": 0.5}

RECIPES: tuple[Recipe, ...] = (
    Recipe(
        "ct-organs",
        "CT organs: abdominal window (-160..240 HU), 1.5 mm, 3D tiles",
        {**_VOLUME, "architecture": "monai.UNet", "normalization": ct_window("abdomen")},
    ),
    Recipe(
        "ct-lung",
        "CT lungs: lung window (-1350..150 HU), 1.5 mm, 3D tiles",
        {**_VOLUME, "architecture": "monai.UNet", "normalization": ct_window("lung")},
    ),
    Recipe(
        "ct-bone",
        "CT bones: bone window (-500..1300 HU), 1.5 mm, 3D tiles",
        {**_VOLUME, "architecture": "monai.UNet", "normalization": ct_window("bone")},
    ),
    Recipe(
        "mr-organs",
        "MR organs: z-score per volume, 1.5 mm, 3D tiles",
        {**_VOLUME, "architecture": "monai.UNet", "normalization": {"kind": "zscore"}},
    ),
    Recipe(
        "mr-organs-percentile",
        "MR organs: 0.5-99.5 percentile scaling per volume, 1.5 mm, 3D tiles",
        {**_VOLUME, "architecture": "monai.UNet", "normalization": {"kind": "percentile", "low": 0.5, "high": 99.5}},
    ),
)
