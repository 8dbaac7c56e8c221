"""Temporary names that say who owns them, and cleaning up after owners that died.

Everything seamline writes on its way to an output lies beside the output under a name
such as ``.glaciers.3f9a0c-12345-8812345.a1b2c3d4.partial.tif``: the output's stem, its
owner (a hash of the host name, the process id, and the process's start time, so that a
later process given the same id is not taken for the owner), a random token, the kind
(``partial``: work in progress; ``old``: an output moved aside while it is replaced) and
the output's suffix. A writer's helper files (a GeoTIFF's tile file, a GeoPackage
journal, a NIfTI scratch file) extend the partial name, so they share its owner.

A process killed at any moment leaves such names behind. :func:`clean` removes those in
a directory whose owner is no longer alive, and puts an ``old`` output back at its name
when its owner died before the new one took its place; every save calls it on the
directory it writes to. Names of owners on another host are never touched: whether such
an owner is alive cannot be known from here.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import logging
import os
import re
import secrets
import shutil
import socket
from pathlib import Path

__all__ = ["temporary_path", "owner_alive", "clean", "remove", "split_name"]

log = logging.getLogger(__name__)

_NAME = re.compile(
    r"^\.(?P<stem>.*)\.(?P<host>[0-9a-f]{6})-(?P<pid>\d+)-(?P<start>\d+)\.[0-9a-f]{8}\.(?P<kind>partial|old)(?P<rest>.*)$"
)


@functools.cache
def _host() -> str:
    return hashlib.sha1(socket.gethostname().encode()).hexdigest()[:6]


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """A process's state letter and start time (clock ticks after boot), from /proc; None without it."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2 :].split()
    return fields[0], int(fields[19])


@functools.cache
def _owner(pid: int) -> str:
    stat = _proc_stat(pid)
    return f"{_host()}-{pid}-{stat[1] if stat else 0}"


def split_name(path: str | os.PathLike) -> tuple[str, str]:
    """Split a file name into its stem and its suffixes (``"a.nii.gz"`` -> ``("a", ".nii.gz")``).

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    tuple of str
    """
    name = Path(path).name
    suffix = "".join(Path(name).suffixes)
    return (name[: len(name) - len(suffix)], suffix) if suffix else (name, "")


def temporary_path(target: str | os.PathLike, kind: str = "partial") -> Path:
    """A new temporary name beside *target*, owned by this process.

    Parameters
    ----------
    target : str or os.PathLike
        The output it is for.
    kind : {"partial", "old"}
        Work in progress, or an output moved aside.

    Returns
    -------
    pathlib.Path
        In *target*'s directory, ending in *target*'s suffixes (libraries that choose a
        format from the suffix still do).
    """
    target = Path(target)
    stem, suffix = split_name(target)
    return target.with_name(f".{stem}.{_owner(os.getpid())}.{secrets.token_hex(4)}.{kind}{suffix}")


def owner_alive(host: str, pid: int, start: int) -> bool:
    """Whether the owner of a temporary name may still be running.

    Parameters
    ----------
    host : str
        The hash of its host name; an owner on another host counts as alive.
    pid : int
        Its process id.
    start : int
        Its start time in clock ticks after boot (0 when unknown).

    Returns
    -------
    bool
        False only when the owner is known to be gone: no such process, a zombie, or
        another process that got the same id later.
    """
    if host != _host():
        return True
    stat = _proc_stat(pid)
    if stat is None:
        if os.path.isdir("/proc"):
            return False
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True
    state, started = stat
    return state not in ("Z", "X") and (start == 0 or started == start)


def remove(path: str | os.PathLike) -> None:
    """Remove a file, a link or a directory tree, as far as it can be: never an error.

    Parameters
    ----------
    path : str or os.PathLike
    """
    path = Path(path)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif os.path.lexists(path):
        with contextlib.suppress(OSError):
            path.unlink()


def clean(directory: str | os.PathLike) -> None:
    """Remove the temporary names of dead owners in *directory*; put back outputs moved aside.

    An ``old`` output whose owner died before replacing it is renamed back to its own
    name when that name is free, and removed otherwise. Nothing else is touched, and a
    directory that cannot be listed or changed is left as it is.

    Parameters
    ----------
    directory : str or os.PathLike
    """
    try:
        entries = list(os.scandir(os.fspath(directory)))
    except OSError:
        return
    for entry in entries:
        found = _NAME.match(entry.name) if entry.name.startswith(".") else None
        if found is None or owner_alive(found["host"], int(found["pid"]), int(found["start"])):
            continue
        path = Path(entry.path)
        with contextlib.suppress(OSError):
            if found["kind"] == "old" and not os.path.lexists(path.with_name(found["stem"] + found["rest"])):
                target = path.with_name(found["stem"] + found["rest"])
                os.rename(path, target)
                log.warning("%s: put back the previous output, left aside by a process that died", target)
                continue
            remove(path)
