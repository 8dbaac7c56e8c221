"""CT and MR presets: named radiology windows, and recipes that use them.

CT intensities are Hounsfield units, the same on every scanner, so a CT model is
normalized by a fixed *window* (:data:`CT_WINDOWS`, as ``(level, width)``;
:func:`ct_window` turns one into a ``seamline.normalize`` spec). MR intensities have no
unit, so MR recipes ask for a per-volume z-score or percentile scaling. The recipes
(:data:`RECIPES`) are partial training configs, like every recipe (``seamline train
--recipe ct-organs``); the normalization itself is :mod:`seamline.normalize`'s.
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


def _volume(name: str, description: str, normalization: dict[str, Any]) -> Recipe:
    """A 3D organ recipe: a MONAI residual U-Net on 96-voxel tiles at 1.5 mm, RAS."""
    return Recipe(
        name,
        description,
        {
            "model": {
                "architecture": "monai.UNet",
                "kwargs": {"spatial_dims": 3, "channels": [16, 32, 64, 128], "strides": [2, 2, 2]},
            },
            "normalization": normalization,
            "patches": {"size": [96, 96, 96], "foreground_fraction": 0.5},
            "loss": {"kind": "dice_ce"},
            "predict": {"tile_size": [96, 96, 96], "overlap": 0.5, "target_spacing": [1.5, 1.5, 1.5]},
        },
    )


RECIPES: tuple[Recipe, ...] = (
    _volume("ct-organs", "CT organs: abdominal window (-160..240 HU), 1.5 mm, 3D tiles", ct_window("abdomen")),
    _volume("ct-lung", "CT lungs: lung window (-1350..150 HU), 1.5 mm, 3D tiles", ct_window("lung")),
    _volume("ct-bone", "CT bones: bone window (-500..1300 HU), 1.5 mm, 3D tiles", ct_window("bone")),
    _volume("mr-organs", "MR organs: z-score per volume, 1.5 mm, 3D tiles", {"kind": "zscore"}),
    _volume(
        "mr-organs-percentile",
        "MR organs: 0.5-99.5 percentile scaling per volume, 1.5 mm, 3D tiles",
        {"kind": "percentile", "low": 0.5, "high": 99.5},
    ),
)
