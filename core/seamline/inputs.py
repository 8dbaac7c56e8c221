"""What a command takes as its input: one file, several files stacked, or a band list.

``seamline predict`` and ``seamline stack`` take one or more INPUTs:

- one file (or store, STAC item, ...) is opened by its reader;
- several files are stacked as the bands of one image (:func:`seamline.stack`), on the
  first file's grid, the others warped onto it where their grids differ;
- a band list (``.yaml``/``.yml``: ``name: path`` or ``name: {path: ..., band: ...}``;
  ``.txt``: lines ``name path [band]``) names each band and says where it comes from, so a
  band can be picked out of a multi-band file. Relative paths are relative to the list.

A model card that names its bands (``card.bands``) is matched against the input's band
names (band descriptions, or names a reader gives, such as STAC asset keys and their
aliases in ``meta["band_aliases"]``) and, for bands read from single-band files, against
the file names: ``B04`` names ``T33UUP_20230601T101559_B04_10m.tif``. A band the card
needs that nothing names is an :class:`~seamline.errors.InputError` that lists what is
missing and what the inputs hold.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from . import io
from .errors import InputError
from .image import Image
from .stack import stack

__all__ = ["BAND_LIST_SUFFIXES", "read_band_list", "open_inputs", "match_bands"]

BAND_LIST_SUFFIXES = (".yaml", ".yml", ".txt")


def _band(value: Any, where: str) -> int | str | None:
    if value is None or isinstance(value, int):
        return value
    text = str(value).strip()
    return int(text) if text.isdigit() else text


def read_band_list(path: str | os.PathLike) -> list[tuple[str, str, int | str | None]]:
    """Read a band list: the name of each band, its file, and the band of that file.

    Parameters
    ----------
    path : str or os.PathLike
        A ``.yaml``/``.yml`` mapping ``name: path`` or ``name: {path: ..., band: ...}``, or a
        ``.txt`` file of lines ``name path [band]`` (``#`` starts a comment).

    Returns
    -------
    list of (str, str, int or str or None)
        ``(name, file, band)`` in order; *band* is a 1-based index or a band name, or None
        for a single-band file.

    Raises
    ------
    InputError
        If the file cannot be read or parsed, or lists nothing.
    """
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise InputError(f"cannot read the band list ({exc.strerror or exc})", path) from exc
    entries: list[tuple[str, Any, Any]] = []
    if path.suffix.lower() == ".txt":
        for number, line in enumerate(text.splitlines(), start=1):
            words = line.split("#", 1)[0].split()
            if not words:
                continue
            if len(words) not in (2, 3):
                raise InputError(f"line {number}: expected 'name path [band]', got {line.strip()!r}", path)
            entries.append((words[0], words[1], words[2] if len(words) == 3 else None))
    else:
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise InputError(f"not a valid YAML band list: {str(exc).splitlines()[0]}", path) from exc
        if not isinstance(data, dict) and data is not None:
            raise InputError("a band list is a mapping of band names to files", path)
        data = data or {}
        for name, value in data.items():
            spec = value if isinstance(value, dict) else {"path": value}
            if set(spec) - {"path", "band"} or not spec.get("path"):
                raise InputError(f"band {name!r}: expected a path or {{path: ..., band: ...}}, got {value!r}", path)
            entries.append((str(name), spec["path"], spec.get("band")))
    if not entries:
        raise InputError("the band list names no band", path)
    return [(name, os.fspath(path.parent / str(file)), _band(band, os.fspath(path))) for name, file, band in entries]


def _pick(image: Image, file: str, band: int | str | None, name: str, listing: str) -> int:
    """The index, within *file*'s own bands, of the band a band list entry names."""
    names = list(image.meta.get("band_names") or [])
    if band is None:
        if image.channels != 1:
            raise InputError(f"band {name!r}: {file} has {image.channels} bands; say which one (band: N)", listing)
        return 0
    if isinstance(band, int):
        if not 1 <= band <= image.channels:
            raise InputError(f"band {name!r}: {file} has no band {band} (it has {image.channels})", listing)
        return band - 1
    if band in names:
        return names.index(band)
    unnamed = re.fullmatch(r"band(\d+)", band)
    if unnamed and not names and 1 <= int(unnamed.group(1)) <= image.channels:
        return int(unnamed.group(1)) - 1
    raise InputError(f"band {name!r}: {file} has no band named {band!r}; its bands are {names or 'unnamed'}", listing)


def _open_band_list(listing: str, resampling: str, grid: dict[str, Any]) -> Image:
    entries = read_band_list(listing)
    files = list(dict.fromkeys(file for _, file, _ in entries))
    parts = {file: io.open(file) for file in files}
    starts, start = {}, 0
    for file in files:
        starts[file], start = start, start + parts[file].channels
    indexes = [starts[file] + _pick(parts[file], file, band, name, listing) for name, file, band in entries]
    stacked = stack(files, resampling=resampling, **grid)
    picked = stacked[indexes]
    return picked.replace(meta={**picked.meta, "band_names": [name for name, _, _ in entries], "source": listing})


def open_inputs(
    paths: Sequence[str | os.PathLike],
    *,
    names: Sequence[str] | None = None,
    bands: Sequence[int | str] | None = None,
    resampling: str = "nearest",
    grid: dict[str, Any] | None = None,
    options: dict[str, Any] | None = None,
) -> Image:
    """Open what a command was given as its input: one file, several stacked, or a band list.

    Parameters
    ----------
    paths : sequence of str or os.PathLike
        One file (or a band list), or several files to stack in band order.
    names : sequence of str, optional
        Names for the bands, in order (not for a band list, which names its own).
    bands : sequence of int or str, optional
        Bands to read from a single file, by 1-based index or name.
    resampling : str
        How files on another grid than the first are warped onto it.
    grid : dict, optional
        A grid for the result instead of the first file's: :func:`seamline.stack`'s
        ``like``, ``crs``, ``resolution`` and ``bounds``.
    options : dict, optional
        Options for a single input's reader (``series=3`` for a DICOM folder, ...).

    Returns
    -------
    Image
        With ``meta["band_files"]``: the index of each unnamed band read alone from a file,
        mapped to that file (for :func:`match_bands`).

    Raises
    ------
    InputError
        If a file cannot be opened or stacked, or an option does not fit the input.
    """
    files = [os.fspath(p) for p in paths]
    listing = len(files) == 1 and files[0].lower().endswith(BAND_LIST_SUFFIXES)
    if (names or bands) and listing:
        raise InputError("a band list names and picks its own bands; --names and --bands do not apply", files[0])
    if options and (listing or len(files) > 1):
        raise InputError("reader options (--input-option) apply to a single INPUT", files[0])
    grid = {k: v for k, v in (grid or {}).items() if v is not None}
    if listing:
        return _open_band_list(files[0], resampling, grid)
    if len(files) == 1 and not grid:
        image = io.open(files[0], **(options or {}), **({"bands": list(bands)} if bands else {}))
        if names is None:
            return image
        if len(names) != image.channels:
            raise InputError(f"{len(names)} names for {image.channels} bands", files[0])
        return image.replace(meta={**image.meta, "band_names": list(names)})
    if bands:
        raise InputError("--bands picks bands of a single input; name stacked bands with --names", files[0])
    image = stack(files, names=names, resampling=resampling, **grid)
    if names is None:
        alone, start = {}, 0
        for path in files:
            part = io.open(path)
            if part.channels == 1 and not part.meta.get("band_names"):
                alone[start] = path
            start += part.channels
        image = image.replace(meta={**image.meta, "band_files": alone})
    return image


def _names_in_file_name(band: str, stem: str) -> bool:
    return re.search(rf"(?<![0-9a-z]){re.escape(band.lower())}(?![0-9a-z])", stem.lower()) is not None


def match_bands(image: Image, wanted: Sequence[str]) -> Image:
    """Name *image*'s bands as the model card does, where another name of theirs says they are the same.

    A band the card names matches the band of that name; else a band whose aliases
    (``meta["band_aliases"]``) hold the name (any case); else an unnamed band read alone
    from a file whose name holds it as a word (``meta["band_files"]``). When nothing names
    any band, the image is left unnamed: the model then takes its bands in order. A band
    the card needs that nothing names is left for the bundle to report (it names what the
    input has and lacks).

    Parameters
    ----------
    image : Image
        The input, with ``meta["band_names"]`` (or none).
    wanted : sequence of str
        The card's band names.

    Returns
    -------
    Image
        *image* with the matched bands renamed to the card's names (bands are not reordered
        or dropped here; the bundle picks them by name).

    Raises
    ------
    InputError
        If a band the card needs matches several bands.
    """
    given = image.meta.get("band_names")
    names = None if given is None else [str(n) for n in given]
    if names is not None and all(band in names for band in wanted):
        return image
    aliases = {name: {a.lower() for a in values} for name, values in (image.meta.get("band_aliases") or {}).items()}
    files = {int(i): Path(os.fspath(f)).stem for i, f in (image.meta.get("band_files") or {}).items()}
    renamed = list(names or [files.get(i, f"band{i + 1}") for i in range(image.channels)])
    found = False
    for band in wanted:
        if names is not None and band in names:
            continue
        hits = []
        if names is not None:
            hits = [i for i, n in enumerate(names) if band.lower() in aliases.get(n, ()) or n.lower() == band.lower()]
        if not hits:
            hits = [i for i, stem in files.items() if _names_in_file_name(band, stem)]
        if len(hits) > 1:
            raise InputError(
                f"the model's band {band!r} matches several input bands: {[renamed[i] for i in hits]}",
                image.meta.get("source") or image.meta.get("path"),
            )
        if hits:
            renamed[hits[0]], found = band, True
    if names is None and not found:
        return image  # nothing names any band: the model takes them in order
    return image.replace(meta={**image.meta, "band_names": renamed})
