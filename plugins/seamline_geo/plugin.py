"""The geo plugin's hook implementations: what seamline_geo registers, and nothing else.

Loading the plugin imports no GDAL, geopandas or torch: formats are recognised from the
path (:mod:`.formats`), and each registered callable imports its module (rasterio,
geopandas, segmentation-models-pytorch) on its first call (:func:`seamline.plugins.deferred`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from seamline.hookspecs import hookimpl
from seamline.plugins import Architecture, ModelFormat, Output, Reader, ShippedBundle, Writer, deferred

from . import formats, recipes, smp_folder

SMP_ARCHITECTURES = (
    "Unet",
    "UnetPlusPlus",
    "MAnet",
    "Linknet",
    "FPN",
    "PSPNet",
    "PAN",
    "DeepLabV3",
    "DeepLabV3Plus",
    "UPerNet",
    "Segformer",
)


@hookimpl
def seamline_readers(register: Any) -> None:
    register(
        Reader(
            name="raster",
            can_open=formats.is_raster,
            open=deferred("seamline_geo.reader", "open_raster"),
            suffixes=formats.RASTER_SUFFIXES,
            description="GeoTIFF, COG, VRT, JPEG2000 and other GDAL rasters (rasterio), lazily by blocks",
        )
    )
    register(
        Reader(
            name="stac",
            can_open=formats.is_stac,
            open=deferred("seamline_geo.stac", "open_stac"),
            suffixes=(".json",),
            description="STAC items and item collections (JSON, or pystac objects): assets as bands on one grid",
        )
    )
    register(
        Reader(
            name="sentinel2",
            can_open=formats.is_sentinel2,
            open=deferred("seamline_geo.sentinel2", "open_sentinel2"),
            suffixes=(".SAFE",),
            description="Sentinel-2 L2A band sets (SAFE or band files) as reflectance, clouds masked by SCL",
        )
    )
    register(
        Reader(
            name="vector-labels",
            can_open=formats.is_vector,
            open=deferred("seamline_geo.vectors", "open_vector_labels"),
            suffixes=formats.VECTOR_SUFFIXES,
            description="polygons (any OGR format, GeoParquet) rasterized onto like=<Image>'s grid",
            needs_grid=True,
        )
    )


@hookimpl
def seamline_writers(register: Any) -> None:
    register(
        Writer(
            name="geotiff",
            can_save=formats.is_geotiff,
            save=deferred("seamline_geo.writer", "save_geotiff"),
            suffixes=formats.GEOTIFF_SUFFIXES,
            description="Cloud-Optimized GeoTIFF (cog=False: tiled GeoTIFF), streamed window by window",
        )
    )


@hookimpl
def seamline_models(register: Any) -> None:
    for name in SMP_ARCHITECTURES:
        register(
            Architecture(
                name=f"smp.{name}",
                build=deferred("seamline_geo.models", "build", name),
                spatial_dims=2,
                description=f"segmentation-models-pytorch {name}, any encoder, any number of bands",
            )
        )


@hookimpl
def seamline_model_formats(register: Any) -> None:
    register(
        ModelFormat(
            name="smp",
            can_load=smp_folder.can_load,
            load=deferred("seamline_geo.smp_folder", "load"),
            description="segmentation-models-pytorch save_pretrained folders (config.json + model.safetensors)",
        )
    )


def _demo_bundle() -> str:
    return str(Path(__file__).resolve().parent / "demo_data" / "bundle")


@hookimpl
def seamline_bundles(register: Any) -> None:
    register(
        ShippedBundle(
            name="glaciers-landsat",
            path=_demo_bundle,
            description="glaciers from Landsat 7 red, green, blue, NIR (uint8 DN), 30 m; the demo's model",
        )
    )


@hookimpl
def seamline_outputs(register: Any) -> None:
    register(
        Output(
            name="polygons",
            option="--polygons",
            write=deferred("seamline_geo.polygons", "polygons_output"),
            check=deferred("seamline_geo.polygons", "check_polygons_output"),
            help="Also write the predicted labels as polygons (.gpkg, .parquet, .fgb, .geojson, .json).",
        )
    )


@hookimpl
def seamline_recipes(register: Any) -> None:
    for recipe in recipes.RECIPES:
        register(recipe)


@hookimpl
def seamline_commands(cli: Any) -> None:
    from .areas_command import areas_command
    from .commands import vectorize_command
    from .demo import command as demo_command

    cli.add_command(vectorize_command)
    cli.add_command(demo_command)
    cli.add_command(areas_command)


@hookimpl
def seamline_vector_backend() -> Any:
    from .polygons import backend

    return backend


@hookimpl
def seamline_overview(image: Any, step: int) -> Any:
    path = image.meta.get("path")
    if not isinstance(path, str) or not formats.is_raster(path):
        return None
    from .overviews import read_overview

    return read_overview(image, step)


@hookimpl
def seamline_warp(image: Any, like: Any, resampling: str) -> Any:
    if image.ndim != 2 or like.ndim != 2 or image.crs is None or like.crs is None:
        return None
    from .warp import warp_image

    return warp_image(image, like, resampling)
