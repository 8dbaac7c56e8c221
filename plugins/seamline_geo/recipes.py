"""Task presets for remote sensing: glacier mapping and crop fields.

A recipe is data, not code: a partial training config (the sections of ``seamline
train``'s YAML: ``classes``, ``model``, ``normalization``, ``loss``, ``patches``,
``predict``, and ``card`` for the model card's band names) that a user completes with
their own image, labels and output folder. Band names are the model card's, in the order
the model takes the bands; normalization is a :mod:`seamline.normalize` spec.

Glacier mapping takes visible, near-infrared and (where the sensor has it) shortwave
infrared bands, which separate clean ice from snow, cloud and rock; debris-covered tongues
are glacier too, which is what the boundary-aware loss is for (as in the glacier work of
Aryal et al. 2023). ``glaciers-landsat`` is the recipe the shipped model of the same name
was trained with (``benchmarks/train_glaciers.py``). Elevation and slope help where
optical bands cannot tell debris from moraine: ``glaciers-sentinel2-terrain`` and
``glaciers-dem`` name them as two more bands, made with :func:`seamline.terrain` from a
DEM on the scene's grid (``glaciers-dem`` is what ``benchmarks/train_glaciers_terrain.py``
trains). Crop fields segment field interiors, so that
``seamline.vectorize(labels, instances=True)`` then counts and measures fields.
"""

from __future__ import annotations

from typing import Any

from seamline.defaults import OVERLAP
from seamline.plugins import Recipe

__all__ = ["RECIPES"]

_GLACIER_CLASSES = [{"name": "background", "color": [0, 0, 0]}, {"name": "glacier", "color": [80, 200, 255]}]


def _glacier(name: str, sensor: str, bands: list[str], normalization: dict[str, Any]) -> Recipe:
    return Recipe(
        name=name,
        description=f"glacier outlines from {sensor} ({', '.join(bands)})",
        config={
            "card": {"bands": bands},
            "classes": _GLACIER_CLASSES,
            "model": {"architecture": "smp.Unet", "kwargs": {"encoder_name": "resnet18", "encoder_weights": None}},
            "normalization": normalization,
            "loss": {"kind": "boundary"},
            "patches": {"size": 256, "foreground_fraction": 0.5},
            "predict": {"tile_size": 256, "overlap": OVERLAP},
        },
    )


def _small_unet(name: str, description: str, bands: list[str]) -> Recipe:
    """The benchmarks' run: a small core.UNet, per-band z-scores fitted on the training image."""
    return Recipe(
        name=name,
        description=description,
        config={
            "card": {"bands": bands},
            "classes": _GLACIER_CLASSES,
            "model": {"architecture": "core.UNet", "kwargs": {"widths": [16, 32, 64, 128]}},
            "normalization": {"kind": "zscore"},
            "patches": {"size": 128, "per_epoch": 256, "foreground_fraction": 0.33},
            "augment": {"flip": True, "rotate": True, "intensity": 0.1},
            "loss": {"kind": "dice_ce"},
            "optimizer": {"lr": 0.003, "weight_decay": 0.0001, "schedule": "cosine", "warmup": 0.05},
            "training": {"epochs": 40, "batch_size": 8, "metric": "mean_iou"},
            "predict": {"tile_size": 256, "overlap": OVERLAP},
        },
    )


RECIPES = (
    # What the shipped glaciers-landsat model was trained with: Landsat 7 ETM+ digital
    # numbers (uint8) of red, green, blue and near infrared (bands 3, 2, 1, 4).
    _small_unet(
        "glaciers-landsat",
        "glacier outlines from Landsat 7 ETM+ red, green, blue, NIR (uint8 DN); the shipped model's",
        ["red", "green", "blue", "nir"],
    ),
    # A DEM alone, as benchmarks/train_glaciers_terrain.py trains on the Exploradores DEM.
    _small_unet(
        "glaciers-dem", "glacier outlines from a DEM's elevation and slope (seamline.terrain)", ["elevation", "slope"]
    ),
    # Landsat 8/9 Collection 2 Level-2 surface reflectance (DN * 2.75e-5 - 0.2): red, green, blue, NIR, SWIR 1.
    _glacier(
        "glaciers-landsat8",
        "Landsat 8/9 OLI",
        ["SR_B4", "SR_B3", "SR_B2", "SR_B5", "SR_B6"],
        {"kind": "scale", "factor": 2.75e-5, "offset": -0.2},
    ),
    # Sentinel-2 L2A (DN / 10000 with the -1000 offset of processing baseline 04.00): red, green, blue, NIR, SWIR 1.
    _glacier(
        "glaciers-sentinel2",
        "Sentinel-2 L2A",
        ["B04", "B03", "B02", "B08", "B11"],
        {"kind": "scale", "factor": 1e-4, "offset": -0.1},
    ),
    # Sentinel-2 L2A read as reflectance (the sentinel2 reader: BOA offset applied, SCL clouds masked): red,
    # green, blue, NIR at 10 m, SWIR 1 and 2 at 20 m brought onto the 10 m grid.
    _glacier(
        "glaciers-sentinel2-l2a",
        "Sentinel-2 L2A reflectance read by the sentinel2 reader",
        ["B04", "B03", "B02", "B08", "B11", "B12"],
        {"kind": "none"},
    ),
    # The same reflectance, then a DEM's elevation (metres, as km) and slope (degrees, as a share of 90) on its grid.
    _glacier(
        "glaciers-sentinel2-terrain",
        "Sentinel-2 L2A reflectance and a DEM",
        ["B04", "B03", "B02", "B08", "B11", "B12", "elevation", "slope"],
        {"kind": "scale", "factor": [1.0] * 6 + [1e-3, 1 / 90]},
    ),
    Recipe(
        name="crop-fields",
        description="crop fields (e.g. centre pivots) from 30 m multispectral imagery; count them with vectorize",
        config={
            "classes": [{"name": "background", "color": [0, 0, 0]}, {"name": "field", "color": [60, 180, 75]}],
            "model": {"architecture": "smp.Unet", "kwargs": {"encoder_name": "resnet18", "encoder_weights": None}},
            "normalization": {"kind": "percentile", "low": 1, "high": 99},
            "loss": {"kind": "dice_ce"},
            "patches": {"size": 128, "foreground_fraction": 0.5},
            "predict": {"tile_size": 256, "overlap": OVERLAP},
        },
    ),
)
