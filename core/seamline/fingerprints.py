"""The inputs of a job: never written over, and the same at the end as at the start.

A lazy job reads its inputs while it writes its outputs, so an input replaced halfway
would give a mix of old and new pixels, and an output written over an input would
destroy the scene it came from. Each input is therefore fingerprinted when it is opened
(:class:`Fingerprint`: device, inode, size and modification time in nanoseconds; for a
directory store, those summed over its files), and a job declares its inputs with
:func:`reading`. Before an output takes its final name,
:func:`seamline.atomic.atomic_output` checks that it is none of the inputs
(:func:`check_not_input`, which sees through symbolic and hard links) and that no input
changed (:func:`check_unchanged`); either failure writes nothing.

:func:`seamline.open` puts the fingerprint of the file it opens in the Image's
``meta["sources"]``, which follows every Image made from it, and :func:`seamline.save`
declares those sources as the save's inputs. Commands declare theirs themselves.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import functools
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from .errors import InputError

__all__ = ["Fingerprint", "reading", "reads", "current_inputs", "same_file", "check_not_input", "check_unchanged"]

_INPUTS: contextvars.ContextVar[tuple[Fingerprint, ...]] = contextvars.ContextVar("seamline_inputs", default=())


@dataclasses.dataclass(frozen=True)
class Fingerprint:
    """What identifies a file's content cheaply: where it is, its size and its last change.

    Parameters
    ----------
    path : str
        The file or directory, as opened.
    device, inode : int
        Its ``st_dev`` and ``st_ino``.
    size : int
        Its size in bytes (the sum over its files for a directory).
    mtime_ns : int
        Its modification time in nanoseconds (the latest over a directory and its files).
    """

    path: str
    device: int
    inode: int
    size: int
    mtime_ns: int

    @classmethod
    def of(cls, path: str | os.PathLike) -> Fingerprint:
        """Fingerprint *path* now.

        Parameters
        ----------
        path : str or os.PathLike
            An existing file or directory.

        Returns
        -------
        Fingerprint

        Raises
        ------
        FileNotFoundError
            If *path* does not exist.
        """
        path = os.fspath(path)
        stat = os.stat(path)
        size, mtime = stat.st_size, stat.st_mtime_ns
        if os.path.isdir(path):
            size = 0
            for root, _, files in os.walk(path):
                mtime = max(mtime, os.stat(root).st_mtime_ns)
                for name in files:
                    with contextlib.suppress(FileNotFoundError):
                        inner = os.stat(os.path.join(root, name))
                        size, mtime = size + inner.st_size, max(mtime, inner.st_mtime_ns)
        return cls(path, stat.st_dev, stat.st_ino, size, mtime)

    def changed(self) -> bool:
        """Whether the file is gone, replaced or modified since it was fingerprinted."""
        try:
            return Fingerprint.of(self.path) != self
        except FileNotFoundError:
            return True


def _fingerprints(inputs: Iterable[str | os.PathLike | Fingerprint | None]) -> tuple[Fingerprint, ...]:
    prints = []
    for item in inputs:
        if isinstance(item, Fingerprint):
            prints.append(item)
        elif item is not None and os.path.exists(item):
            prints.append(Fingerprint.of(item))
    return tuple(prints)


@contextlib.contextmanager
def reading(*inputs: str | os.PathLike | Fingerprint | None) -> Iterator[tuple[Fingerprint, ...]]:
    """Declare the inputs of the job run inside the ``with`` block.

    Paths are fingerprinted now; fingerprints taken earlier (when the file was opened)
    are kept as they are, so a change made in between is seen too. Paths that do not
    exist and None are skipped. Blocks nest: the inputs add up.

    Parameters
    ----------
    *inputs : str, os.PathLike, Fingerprint or None

    Yields
    ------
    tuple of Fingerprint
        Every input declared for the block, the enclosing blocks' included.

    Examples
    --------
    >>> with reading("scene.tif"):  # doctest: +SKIP
    ...     seamline.save(labels, "scene.tif", overwrite=True)  # refused: an input
    """
    token = _INPUTS.set(_INPUTS.get() + _fingerprints(inputs))
    try:
        yield _INPUTS.get()
    finally:
        _INPUTS.reset(token)


def reads(*parameters: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Declare a command's inputs: the values of its parameters *parameters*, for the whole command.

    Put it right above the command function, below click's decorators.

    Parameters
    ----------
    *parameters : str
        Names of the function's keyword parameters that hold input paths, or sequences of
        them (click's ``nargs=-1``); None is skipped.

    Returns
    -------
    callable
        A decorator.

    Examples
    --------
    >>> @click.command()  # doctest: +SKIP
    ... @click.argument("labels")
    ... @click.argument("out")
    ... @reads("labels")
    ... def vectorize(labels, out): ...
    """

    def decorate(function: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(function)
        def wrapped(*args: Any, **kwargs: Any) -> Any:
            values = [kwargs.get(name) for name in parameters]
            paths = [path for value in values for path in (value if isinstance(value, (tuple, list)) else (value,))]
            with reading(*paths):
                return function(*args, **kwargs)

        return wrapped

    return decorate


def current_inputs() -> tuple[Fingerprint, ...]:
    """The inputs declared by the enclosing :func:`reading` blocks.

    Returns
    -------
    tuple of Fingerprint
    """
    return _INPUTS.get()


def same_file(first: str | os.PathLike, second: str | os.PathLike) -> bool:
    """Whether two paths name one file: the same real path, or the same device and inode.

    Parameters
    ----------
    first, second : str or os.PathLike

    Returns
    -------
    bool
    """
    if os.path.realpath(first) == os.path.realpath(second):
        return True
    try:
        a, b = os.stat(first), os.stat(second)
    except OSError:
        return False
    return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


def check_not_input(target: str | os.PathLike) -> None:
    """Refuse an output path that is an input of the current job, whatever name it goes by.

    Parameters
    ----------
    target : str or os.PathLike

    Raises
    ------
    InputError
        If *target* is one of the declared inputs (also through a link), even with
        overwrite asked for.
    """
    for source in _INPUTS.get():
        if same_file(target, source.path):
            raise InputError(f"is an input of this job ({source.path}); write the output elsewhere", Path(target))


def check_unchanged(target: str | os.PathLike) -> None:
    """Refuse to finish an output when an input changed while the job read it.

    Parameters
    ----------
    target : str or os.PathLike
        The output about to take its name (named in the message).

    Raises
    ------
    InputError
        Naming the first input whose fingerprint changed.
    """
    for source in _INPUTS.get():
        if source.changed():
            raise InputError(
                f"changed while this job read it (size, time or inode); {os.fspath(target)} was not written",
                source.path,
            )
