"""Task presets for remote sensing: glacier mapping and crop fields.

A recipe is data, not code: a partial training config (the sections of
``seamline train``'s YAML: ``data.bands``, ``classes``, ``model``, ``normalization``,
``loss``, ``patches``, ``predict``) that a user completes with their own image, labels
and output folder. Bands are named as the sensor's products name them, in the order the
model takes them; normalization is a :mod:`seamline.normalize` spec.

Glacier mapping takes visible, near-infrared and (where the sensor has it) shortwave
infrared bands, which separate clean ice from snow, cloud and rock; debris-covered tongues
are glacier too, which is what the boundary-aware loss is for (as in the glacier work of
Aryal et al. 2023). Crop fields segment field interiors, so that
``seamline.vectorize(labels, instances=True)`` then counts and measures fields.
"""

from __future__ import annotations

from typing import Any

from seamline.defaults import OVERLAP
from seamline.plugins import Recipe

__all__ = ["RECIPES"]


def _glacier(name: str, sensor: str, bands: list[str], normalization: dict[str, Any]) -> Recipe:
    return Recipe(
        name=name,
        description=f"glacier outlines from {sensor} ({', '.join(bands)})",
        config={
            "data": {"bands": bands},
            "classes": ["background", "glacier"],
            "model": {"architecture": "smp.Unet", "kwargs": {"encoder_name": "resnet18"}},
            "normalization": normalization,
            "loss": {"kind": "boundary"},
            "patches": {"size": 256, "foreground_fraction": 0.5},
            "predict": {"tile_size": 256, "overlap": OVERLAP},
        },
    )


RECIPES = (
    # Landsat 7 ETM+ digital numbers (uint8), as in the Everest scene: red, green, blue, near infrared.
    _glacier("glacier-landsat7", "Landsat 7 ETM+", ["B3", "B2", "B1", "B4"], {"kind": "scale", "factor": 1 / 255}),
    # Landsat 8/9 Collection 2 Level-2 surface reflectance (DN * 2.75e-5 - 0.2): red, green, blue, NIR, SWIR 1.
    _glacier(
        "glacier-landsat8",
        "Landsat 8/9 OLI",
        ["SR_B4", "SR_B3", "SR_B2", "SR_B5", "SR_B6"],
        {"kind": "scale", "factor": 2.75e-5, "offset": -0.2},
    ),
    # Sentinel-2 L2A (DN / 10000 with the -1000 offset of processing baseline 04.00): red, green, blue, NIR, SWIR 1.
    _glacier(
        "glacier-sentinel2",
        "Sentinel-2 L2A",
        ["B04", "B03", "B02", "B08", "B11"],
        {"kind": "scale", "factor": 1e-4, "offset": -0.1},
    ),
    Recipe(
        name="crop-fields",
        description="crop fields (e.g. centre pivots) from 30 m multispectral imagery; count them with vectorize",
        config={
            "classes": ["background", "field"],
            "model": {"architecture": "smp.Unet", "kwargs": {"encoder_name": "resnet18"}},
            "normalization": {"kind": "percentile", "low": 1, "high": 99},
            "loss": {"kind": "dice_ce"},
            "patches": {"size": 128, "foreground_fraction": 0.5},
            "predict": {"tile_size": 256, "overlap": OVERLAP},
        },
    ),
)
