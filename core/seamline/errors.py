"""The errors seamline raises, one hierarchy.

Every error a user can cause is a :class:`SeamlineError`. Its message is one line that
names the file (or the argument) and what is wrong with it, so that the command line can
print ``error: <message>`` and exit without a traceback. The CLI exits 2 where the user
can fix what they gave: :class:`InputError` (a bad file or argument), :class:`ModelError`
(a bad model bundle or model folder: it is input too) and :class:`NotInstalledError`
(something to install); and 1 for every other failure, such as an output the file
system refuses to take (a full disk, no permission).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

__all__ = [
    "SeamlineError",
    "InputError",
    "OutputExistsError",
    "PluginError",
    "ModelError",
    "NotInstalledError",
    "about",
    "first_line",
]


class SeamlineError(Exception):
    """Base class of every error seamline raises on purpose.

    Parameters
    ----------
    message : str
        What is wrong, in one line.
    path : str or os.PathLike, optional
        The file the problem is about; it leads the message as ``<path>: <message>``.
    """

    exit_code = 1

    def __init__(self, message: str, path: str | os.PathLike | None = None) -> None:
        self.path = os.fspath(path) if path is not None else None
        self.message = message
        super().__init__(f"{self.path}: {message}" if self.path is not None else message)


class InputError(SeamlineError, ValueError):
    """The input is wrong: a file nobody can read, bad geometry, a bad argument."""

    exit_code = 2


class OutputExistsError(InputError, FileExistsError):
    """The output path exists and overwriting was not asked for."""


class PluginError(SeamlineError):
    """A plugin broke the contract: two plugins claim one name, a bad record, ..."""


class ModelError(SeamlineError):
    """A model cannot be built, loaded or run on this input: a bad bundle is bad input."""

    exit_code = 2


class NotInstalledError(SeamlineError, ImportError):
    """A plugin needed here is not installed; the message says what to ``pip install``."""

    exit_code = 2


@contextlib.contextmanager
def about(path: str | os.PathLike, *, context: str | None = None) -> Iterator[None]:
    """Name *path* in the errors raised inside that name no file of their own.

    A command uses it around work on one of its arguments, so that a problem found deep
    inside (``shape (2, 3) differs ...``) reaches the user as ``<path>: <problem>``.

    Parameters
    ----------
    path : str or os.PathLike
        The file the work is about.
    context : str, optional
        Appended to the message in parentheses (``"ground truth: b.tif"``).

    Examples
    --------
    >>> try:
    ...     with about("scene.tif"):
    ...         raise InputError("has 3 bands, the model takes 4")
    ... except InputError as exc:
    ...     print(exc)
    scene.tif: has 3 bands, the model takes 4
    """
    try:
        yield
    except SeamlineError as exc:
        if exc.path is not None:
            raise
        message = f"{exc.message} ({context})" if context else exc.message
        raise type(exc)(message, path) from exc


def first_line(exc: BaseException) -> str:
    """The first non-empty line of an exception's message, else its type's name.

    Parameters
    ----------
    exc : BaseException

    Returns
    -------
    str
        Never empty, so that an error message built from it always says something.
    """
    for line in str(exc).splitlines():
        if line.strip():
            return line.strip()
    return type(exc).__name__
