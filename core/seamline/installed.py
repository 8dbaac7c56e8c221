"""Which plugins are installed: a plugin named like an extra needs that extra's libraries.

seamline's own plugins and third-party ones declare their libraries the same way: the
entry point is named like an extra of its distribution (``geo`` in ``seamline[geo]``), and
the extra lists what the plugin imports. A plugin whose extra is incomplete still loads
(its module is light by rule) but is *not installed*: ``seamline plugins`` says what
``pip install`` adds it, and an ImportError raised in its code becomes that same one-line
:class:`~seamline.errors.NotInstalledError`. Everything here reads distribution metadata;
nothing imports a plugin's libraries.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import sys
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement

from .errors import NotInstalledError

__all__ = ["PluginInfo", "plugin_info", "missing_requirements", "blame", "not_installed_error"]


@dataclasses.dataclass(frozen=True)
class PluginInfo:
    """What ``seamline plugins`` shows about one plugin.

    Attributes
    ----------
    name : str
        The entry-point name (or the name given to :func:`register_plugin`).
    version : str or None
        The version of the distribution that provides it.
    hooks : tuple of str
        The hooks it implements.
    builtin : bool
        Whether it comes with seamline itself.
    missing : tuple of str
        Requirements of its extra that are not installed; empty when it is installed.
    install : str or None
        The command that installs what is missing.
    """

    name: str
    version: str | None
    hooks: tuple[str, ...]
    builtin: bool
    missing: tuple[str, ...] = ()
    install: str | None = None

    @property
    def installed(self) -> bool:
        """Whether everything the plugin needs is installed."""
        return not self.missing


def missing_requirements(dist: Any, extra: str) -> tuple[str, ...]:
    """The requirements of a distribution's extra that are not installed.

    Parameters
    ----------
    dist : importlib.metadata.Distribution
        The distribution that declares the extra.
    extra : str
        The extra's name.

    Returns
    -------
    tuple of str
        The names of the requirements no installed distribution satisfies by name.
    """
    missing = []
    for line in dist.requires or ():
        requirement = Requirement(line)
        marker = requirement.marker
        if marker is None or not marker.evaluate({"extra": extra}) or marker.evaluate({"extra": ""}):
            continue
        try:
            importlib.metadata.distribution(requirement.name)
        except importlib.metadata.PackageNotFoundError:
            missing.append(requirement.name)
    return tuple(missing)


def plugin_info(ep: Any) -> PluginInfo:
    """What is known of an entry point's plugin before any hook runs.

    Parameters
    ----------
    ep : importlib.metadata.EntryPoint
        An entry point of the ``seamline`` group.

    Returns
    -------
    PluginInfo
        Built in when the entry point comes from the ``seamline`` distribution; missing
        requirements when the entry point is named like an extra of its distribution.
    """
    dist = getattr(ep, "dist", None)
    dist_name = dist.metadata["Name"] if dist is not None else None
    extras = (dist.metadata.get_all("Provides-Extra") or []) if dist is not None else []
    missing = missing_requirements(dist, ep.name) if ep.name in extras else ()
    return PluginInfo(
        name=ep.name,
        version=getattr(dist, "version", None),
        hooks=(),
        builtin=dist_name is not None and dist_name.lower() == "seamline",
        missing=missing,
        install=f"pip install '{dist_name}[{ep.name}]'" if missing else None,
    )


def blame(exc: BaseException, packages: Mapping[str, PluginInfo]) -> NotInstalledError | None:
    """The plugin whose code raised an ImportError, among those that are not installed.

    Parameters
    ----------
    exc : BaseException
        The error, with its traceback.
    packages : mapping
        Top-level package of each plugin that is not installed, to the plugin's info.

    Returns
    -------
    NotInstalledError or None
        The error naming the plugin and what installs it, when a frame of the traceback
        lies in one of *packages*; None otherwise.
    """
    if not isinstance(exc, ImportError) or not packages:
        return None
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        for package, info in packages.items():
            module = sys.modules.get(package)
            folder = Path(getattr(module, "__file__", "") or "").parent
            if str(folder) != "." and Path(frame.filename).is_relative_to(folder):
                return not_installed_error(info)
    return None


def not_installed_error(info: PluginInfo) -> NotInstalledError:
    """The one-line error that says a plugin is not installed and how to install it.

    Parameters
    ----------
    info : PluginInfo
        A plugin with missing requirements.

    Returns
    -------
    NotInstalledError
    """
    return NotInstalledError(
        f"the {info.name} plugin is not installed ({info.install}); missing: {', '.join(info.missing)}"
    )
