"""Cut the demo scene shipped inside seamline_geo from the Everest Landsat scene.

The demo scene is a 384 x 384 crop of the eastern half of the Everest Landsat 7 scene
(RGB + NIR stacked as four bands, deflate-compressed GeoTIFF) with the RGI 6.0 glacier
outlines that touch it, reprojected to the scene's CRS. The demo bundle is trained on the
western half only (tools/train_demo_bundle.py), so the demo predicts on unseen ground.

Run from the repository root: ``python tools/make_demo_data.py [SHARED_DATA_DIR]``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import geopandas as gpd
import numpy as np
import rasterio
from rasterio.windows import Window, bounds

SOURCE = Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/data") / "geoutils_everest_glaciers"
TARGET = Path(__file__).resolve().parents[1] / "plugins" / "seamline_geo" / "demo_data"
WINDOW = Window(col_off=416, row_off=150, width=384, height=384)


def main() -> None:
    TARGET.mkdir(parents=True, exist_ok=True)
    with (
        rasterio.open(SOURCE / "LE71400412000304SGS00_RGB.tif") as rgb,
        rasterio.open(SOURCE / "LE71400412000304SGS00_B4.tif") as nir,
    ):
        bands = np.concatenate([rgb.read(window=WINDOW), nir.read(window=WINDOW)])
        profile = {
            "driver": "GTiff",
            "dtype": "uint8",
            "count": 4,
            "width": WINDOW.width,
            "height": WINDOW.height,
            "crs": rgb.crs,
            "transform": rgb.window_transform(WINDOW),
            "compress": "deflate",
            "predictor": 2,
            "tiled": True,
            "blockxsize": 128,
            "blockysize": 128,
            "photometric": "MINISBLACK",  # four data bands, not RGB + alpha
        }
        extent = bounds(WINDOW, rgb.transform)
        with rasterio.open(TARGET / "everest_crop.tif", "w", **profile) as out:
            out.write(bands)
            out.descriptions = ("red", "green", "blue", "nir")
        outlines = gpd.read_file(SOURCE / "15_rgi60_glacier_outlines.gpkg").to_crs(rgb.crs)
    outlines = outlines.clip(extent)[["RGIId", "Name", "geometry"]].explode(index_parts=False)
    outlines[~outlines.is_empty].to_file(TARGET / "everest_glaciers.geojson", driver="GeoJSON")
    print(f"wrote {TARGET}/everest_crop.tif and everest_glaciers.geojson ({len(outlines)} polygons)")


if __name__ == "__main__":
    main()
