"""The plugin manager: built-in plugins and third-party ones, loaded the same way.

Plugins are modules listed under the ``seamline`` entry-point group (see
:mod:`seamline.hookspecs` for what they may implement). The built-ins are declared in
seamline's own ``pyproject.toml``::

    [project.entry-points.seamline]
    geo = "seamline_geo.plugin"
    medical = "seamline_medical.plugin"

What the hooks register is collected into registries of the typed records of
:mod:`seamline.records` (:class:`Reader`, :class:`Writer`, :class:`Architecture`,
:class:`Output`, :class:`Recipe`, re-exported here), keyed by name.

- A plugin that fails to import is skipped with a warning that names it.
- Two plugins registering the same name is a :class:`~seamline.errors.PluginError`
  that names both.
- ``SEAMLINE_PLUGINS`` chooses which entry points load: a comma-separated list of names
  (``SEAMLINE_PLUGINS=geo``), or an empty string for none. Unset, all load. Tests and
  notebooks register their own plugins with :func:`register_plugin`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import importlib.metadata
import os
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import pluggy

from . import hookspecs
from .errors import InputError, PluginError
from .records import RECORD_TYPES, Architecture, Output, Reader, Recipe, Writer, deferred

__all__ = [
    "Reader",
    "Writer",
    "Architecture",
    "Output",
    "Recipe",
    "PluginInfo",
    "deferred",
    "get_plugin_manager",
    "register_plugin",
    "unregister_plugin",
    "registry",
    "list_plugins",
    "add_commands",
    "reset",
    "ENV_VAR",
]

ENTRY_POINT_GROUP = "seamline"
ENV_VAR = "SEAMLINE_PLUGINS"


@dataclasses.dataclass(frozen=True)
class PluginInfo:
    """What ``seamline plugins`` shows about one plugin."""

    name: str
    version: str | None
    hooks: tuple[str, ...]
    builtin: bool


_manager: pluggy.PluginManager | None = None
_registries: dict[str, dict[str, tuple[Any, str]]] | None = None
_builtin = frozenset({"seamline.builtins", "seamline_geo.plugin", "seamline_medical.plugin"})


def _selected(name: str) -> bool:
    chosen = os.environ.get(ENV_VAR)
    if chosen is None:
        return True
    return name in {n.strip() for n in chosen.split(",") if n.strip()}


def _load_entry_points(pm: pluggy.PluginManager) -> None:
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if not _selected(ep.name) or pm.get_plugin(ep.name) is not None:
            continue
        try:
            pm.register(ep.load(), name=ep.name)
        except Exception as exc:  # a broken plugin never takes seamline down
            warnings.warn(
                f"seamline plugin {ep.name!r} ({ep.value}) failed to load and is skipped: {exc}",
                RuntimeWarning,
                stacklevel=3,
            )
            continue
        dist = getattr(ep, "dist", None)
        pm._seamline_versions[ep.name] = getattr(dist, "version", None)  # type: ignore[attr-defined]


def get_plugin_manager() -> pluggy.PluginManager:
    """Return the plugin manager, loading entry-point plugins on first use.

    Returns
    -------
    pluggy.PluginManager
    """
    global _manager
    if _manager is None:
        pm = pluggy.PluginManager("seamline")
        pm.add_hookspecs(hookspecs)
        pm._seamline_versions = {}  # type: ignore[attr-defined]
        _load_entry_points(pm)
        _manager = pm
    return _manager


def register_plugin(plugin: Any, name: str | None = None, version: str | None = None) -> str:
    """Register a plugin object or module by hand (tests, notebooks).

    Parameters
    ----------
    plugin : module or object
        Anything with ``@hookimpl`` functions.
    name : str, optional
        Its name in ``seamline plugins``.
    version : str, optional
        Its version, for listing.

    Returns
    -------
    str
        The name it was registered under.
    """
    global _registries
    pm = get_plugin_manager()
    name = pm.register(plugin, name=name)
    pm._seamline_versions[name] = version  # type: ignore[attr-defined]
    _registries = None
    return name


def unregister_plugin(name: str) -> None:
    """Remove a plugin registered under *name*.

    Parameters
    ----------
    name : str
        The name :func:`register_plugin` returned.
    """
    global _registries
    pm = get_plugin_manager()
    pm.unregister(name=name)
    _registries = None


def reset() -> None:
    """Forget every plugin; the next use loads entry points afresh (for tests)."""
    global _manager, _registries
    _manager = None
    _registries = None


def _implementations(hook_name: str) -> list[tuple[str, Callable[..., Any]]]:
    """Each plugin's implementation of *hook_name*, with the plugin's name."""
    pm = get_plugin_manager()
    return [(pm.get_name(i.plugin) or repr(i.plugin), i.function) for i in getattr(pm.hook, hook_name).get_hookimpls()]


@contextlib.contextmanager
def _skipped_if_broken(owner: str, hook_name: str) -> Iterator[None]:
    """A hook that raises anything but a PluginError is a warning naming its plugin."""
    try:
        yield
    except PluginError:
        raise
    except Exception as exc:
        warnings.warn(
            f"seamline plugin {owner!r} failed in {hook_name} and is skipped there: {exc}", RuntimeWarning, stacklevel=4
        )


def add_commands(cli: Any) -> None:
    """Let every plugin add its commands to the click group *cli*.

    Parameters
    ----------
    cli : click.Group
        The group to extend; a plugin whose hook fails is skipped with a warning.
    """
    for owner, function in _implementations("seamline_commands"):
        with _skipped_if_broken(owner, "seamline_commands"):
            function(cli=cli)


def _collect(hook_name: str) -> dict[str, tuple[Any, str]]:
    record_type = RECORD_TYPES[hook_name]
    found: dict[str, tuple[Any, str]] = {}
    for owner, function in _implementations(hook_name):

        def register(record: Any, *, _owner: str = owner) -> None:
            if not isinstance(record, record_type):
                raise PluginError(
                    f"plugin {_owner!r} registered {type(record).__name__} from {hook_name}, "
                    f"expected {record_type.__name__}"
                )
            if record.name in found:
                other = found[record.name][1]
                raise PluginError(f"plugins {other!r} and {_owner!r} both register {hook_name[9:-1]} {record.name!r}")
            found[record.name] = (record, _owner)

        with _skipped_if_broken(owner, hook_name):
            function(register)
    return found


def registry(kind: str) -> dict[str, Any]:
    """Return what plugins registered for *kind*, by name.

    Parameters
    ----------
    kind : {"readers", "writers", "models", "outputs", "recipes"}

    Returns
    -------
    dict
        Name to record, in registration order (first registered plugin first).

    Raises
    ------
    PluginError
        If two plugins register the same name.
    """
    global _registries
    if _registries is None:
        _registries = {}
    hook_name = f"seamline_{kind}"
    if hook_name not in RECORD_TYPES:
        raise InputError(f"unknown registry {kind!r}; one of {sorted(k[9:] for k in RECORD_TYPES)}")
    if hook_name not in _registries:
        _registries[hook_name] = _collect(hook_name)
    return {name: record for name, (record, _) in _registries[hook_name].items()}


def owners(kind: str) -> dict[str, str]:
    """Return which plugin registered each name of *kind*.

    Parameters
    ----------
    kind : {"readers", "writers", "models", "outputs", "recipes"}

    Returns
    -------
    dict
        Registered name to the name of the plugin that registered it.
    """
    registry(kind)
    return {name: owner for name, (_, owner) in _registries[f"seamline_{kind}"].items()}  # type: ignore[index]


def list_plugins() -> list[PluginInfo]:
    """Return every loaded plugin with its version and the hooks it implements.

    Returns
    -------
    list of PluginInfo
    """
    pm = get_plugin_manager()
    infos = []
    for name, plugin in pm.list_name_plugin():
        hooks = tuple(sorted(impl.name for impl in pm.get_hookcallers(plugin) or ()))
        module = getattr(plugin, "__name__", "")
        infos.append(
            PluginInfo(
                name=name,
                version=pm._seamline_versions.get(name),  # type: ignore[attr-defined]
                hooks=hooks,
                builtin=module in _builtin,
            )
        )
    return sorted(infos, key=lambda info: info.name)
