"""``seamline areas``: dates from GeoTIFF tags and names, a table, a CSV and a plot, one-line errors."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyproj
import pytest
import rasterio
from click.testing import CliRunner
from PIL import Image as PILImage

import seamline
from seamline.area import date_of
from seamline.cli import get_cli

AFFINE = np.array([[0.0, 30.0, 627175.0], [-30.0, 0.0, 4852085.0], [0, 0, 1]])
NAMES = {0: "background", 1: "glacier"}


def write_labels(path, glacier_rows: int, cog: bool = True, **meta):
    labels = np.zeros((1, 40, 50), np.uint8)
    labels[0, :glacier_rows, 10:30] = 1
    image = seamline.Image(labels, AFFINE, pyproj.CRS.from_epsg(32718), {"class_names": NAMES, **meta})
    return seamline.save(image, path, cog=cog)


def test_dates_come_from_tags_and_names_and_the_table_says_the_change(tmp_path):
    first = write_labels(tmp_path / "glaciers_2000-10-30.tif", 30)
    second = write_labels(tmp_path / "glaciers_later.tif", 20, datetime="2012-03-18")
    third = write_labels(tmp_path / "glaciers_20200101.tif", 10)
    with rasterio.open(second) as dataset:
        assert dataset.tags()["ACQUISITIONDATE"] == "2012-03-18"  # written by seamline.save, read back
    csv, png = tmp_path / "areas.csv", tmp_path / "areas.png"
    args = ["areas", third, first, second, "--csv", str(csv), "--plot", str(png)]
    result = CliRunner().invoke(get_cli(), args)
    assert result.exit_code == 0, result.output
    assert "2012-03-18" in result.output and "glacier" in result.output
    table = pd.read_csv(csv, parse_dates=["date"])
    assert table["date"].dt.strftime("%Y-%m-%d").tolist() == ["2000-10-30", "2012-03-18", "2020-01-01"]
    np.testing.assert_allclose(table["area_km2"], [r * 20 * 900 / 1e6 for r in (30, 20, 10)])
    np.testing.assert_allclose(table["change_km2"].iloc[1:], [-0.18, -0.18])
    assert PILImage.open(png).format == "PNG"
    again = CliRunner().invoke(get_cli(), args)
    assert again.exit_code == 2 and "exists" in again.output


def test_tiff_datetime_is_the_last_resort(tmp_path):
    path = write_labels(tmp_path / "glaciers.tif", 5, cog=False)
    with rasterio.open(path, "r+") as dataset:
        dataset.update_tags(TIFFTAG_DATETIME="2015:06:01 10:00:00")
    image = seamline.open(path)
    assert image.meta["created"] == "2015:06:01 10:00:00" and "datetime" not in image.meta
    assert date_of(image) == pd.Timestamp("2015-06-01 10:00:00")


@pytest.mark.parametrize("problem", ["no date", "another grid"])
def test_refusals_are_one_line_errors_naming_the_file(tmp_path, problem):
    first = write_labels(tmp_path / "glaciers_2000-10-30.tif", 30)
    if problem == "no date":
        other, expected = write_labels(tmp_path / "glaciers.tif", 5), "glaciers.tif: has no date"
    else:
        image = seamline.open(first)
        other = seamline.save(image[:, 1:, :], tmp_path / "glaciers_2010-01-01.tif")
        expected = (
            "glaciers_2010-01-01.tif: glaciers_2000-10-30.tif shape (40, 50) differs from glaciers_2010-01-01.tif"
        )
    result = CliRunner().invoke(get_cli(), ["areas", first, other])
    assert result.exit_code == 2
    assert expected in result.output and len(result.output.strip().splitlines()) == 1
