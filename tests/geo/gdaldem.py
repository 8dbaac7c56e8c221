"""GDAL's own ``gdaldem``, as a test reference, from whichever form of GDAL is installed.

In order: the Python bindings (``osgeo.gdal.DEMProcessing``), the ``gdaldem`` program, or
``GDALDEMProcessing`` called through ctypes in the libgdal that rasterio loaded (rasterio's
wheels ship it without the bindings or the programs). All three run the same C++ code.
The test is skipped when none is found.
"""

from __future__ import annotations

import ctypes
import importlib.util
import shutil
import subprocess
from pathlib import Path

import pytest
import rasterio


def _loaded_libgdal() -> ctypes.CDLL | None:
    maps = Path("/proc/self/maps")
    if not maps.exists():
        return None
    for line in maps.read_text().splitlines():
        path = line.split()[-1]
        if "libgdal" in Path(path).name and ".so" in path:
            lib = ctypes.CDLL(path)
            lib.GDALOpen.restype = ctypes.c_void_p
            lib.GDALOpen.argtypes = [ctypes.c_char_p, ctypes.c_int]
            lib.GDALDEMProcessingOptionsNew.restype = ctypes.c_void_p
            lib.GDALDEMProcessingOptionsNew.argtypes = [ctypes.POINTER(ctypes.c_char_p), ctypes.c_void_p]
            lib.GDALDEMProcessingOptionsFree.argtypes = [ctypes.c_void_p]
            lib.GDALDEMProcessing.restype = ctypes.c_void_p
            lib.GDALDEMProcessing.argtypes = [
                ctypes.c_char_p,
                ctypes.c_void_p,
                ctypes.c_char_p,
                ctypes.c_char_p,
                ctypes.c_void_p,
                ctypes.POINTER(ctypes.c_int),
            ]
            lib.GDALClose.argtypes = [ctypes.c_void_p]
            return lib
    return None


def _through_ctypes(source: str, out: str, processing: str, args: list[str]) -> bool:
    lib = _loaded_libgdal()
    if lib is None:
        return False
    lib.GDALAllRegister()
    dataset = lib.GDALOpen(source.encode(), 0)
    argv = [a.encode() for a in ["-of", "GTiff", *args]]
    options = lib.GDALDEMProcessingOptionsNew((ctypes.c_char_p * (len(argv) + 1))(*argv, None), None)
    error = ctypes.c_int(0)
    result = lib.GDALDEMProcessing(out.encode(), dataset, processing.encode(), None, options, ctypes.byref(error))
    lib.GDALDEMProcessingOptionsFree(options)
    if result:
        lib.GDALClose(result)
    lib.GDALClose(dataset)
    return bool(result)


def gdaldem(source: Path, processing: str, folder: Path, *args: str):
    """Run ``gdaldem <processing> source out.tif <args>`` and return (pixels, nodata).

    Parameters
    ----------
    source : Path
        The DEM.
    processing : str
        ``slope``, ``aspect``, ``hillshade``, ...
    folder : Path
        Where to write the result.
    *args : str
        More gdaldem options.
    """
    out = str(folder / f"gdaldem_{processing}.tif")
    if importlib.util.find_spec("osgeo") is not None:
        from osgeo import gdal

        gdal.UseExceptions()
        gdal.DEMProcessing(out, str(source), processing, options=["-of", "GTiff", *args]).Close()
    elif shutil.which("gdaldem"):
        subprocess.run(["gdaldem", processing, str(source), out, "-of", "GTiff", *args], check=True)
    elif not _through_ctypes(str(source), out, processing, list(args)):
        pytest.skip("GDAL's gdaldem is not available (no osgeo, no gdaldem program, no libgdal loaded)")
    with rasterio.open(out) as dataset:
        return dataset.read(1), dataset.nodata
