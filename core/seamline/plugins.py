"""The plugin manager: built-in plugins and third-party ones, loaded the same way.

Plugins are modules listed under the ``seamline`` entry-point group (see
:mod:`seamline.hookspecs` for what they may implement). The built-ins are declared in
seamline's own ``pyproject.toml``::

    [project.entry-points.seamline]
    geo = "seamline_geo.plugin"
    medical = "seamline_medical.plugin"

What the hooks register is collected into registries of the typed records of
:mod:`seamline.records` (:class:`Reader`, :class:`Writer`, :class:`Architecture`,
:class:`ModelFormat`, :class:`ShippedBundle`, :class:`Output`, :class:`Recipe`,
re-exported here), keyed by name.

- A plugin is *built in* when its entry point comes from the ``seamline`` distribution.
- A plugin whose entry point is named like an extra of its distribution (``geo`` and
  ``seamline[geo]``) needs that extra's libraries (:mod:`seamline.installed`). When one is
  missing, the plugin is listed as ``not installed (pip install 'seamline[geo]')``; its
  records stay registered, so a file or command it handles names the missing extra
  (:class:`NotInstalledError`, exit 2) instead of saying that nothing handles it.
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
import importlib.metadata
import os
import warnings
from collections.abc import Callable, Iterator
from typing import Any

import pluggy

from . import hookspecs
from .errors import InputError, NotInstalledError, PluginError
from .installed import PluginInfo, blame, not_installed_error, plugin_info
from .records import (
    RECORD_TYPES,
    Architecture,
    ModelFormat,
    Output,
    Reader,
    Recipe,
    ShippedBundle,
    Writer,
    _named_if_not_installed,
    deferred,
)

__all__ = [
    "Reader",
    "Writer",
    "Architecture",
    "ModelFormat",
    "ShippedBundle",
    "Output",
    "Recipe",
    "PluginInfo",
    "deferred",
    "get_plugin_manager",
    "register_plugin",
    "unregister_plugin",
    "registry",
    "owners",
    "call_hook",
    "list_plugins",
    "add_commands",
    "not_installed",
    "reset",
    "ENV_VAR",
]

ENTRY_POINT_GROUP = "seamline"
ENV_VAR = "SEAMLINE_PLUGINS"
KINDS = ("readers", "writers", "models", "model_formats", "bundles", "outputs", "recipes")


@dataclasses.dataclass
class _State:
    """What seamline knows about the plugins it loaded, beside pluggy's manager."""

    manager: pluggy.PluginManager
    infos: dict[str, PluginInfo] = dataclasses.field(default_factory=dict)
    #: Top-level package of each plugin that is not installed, to the plugin's info.
    packages: dict[str, PluginInfo] = dataclasses.field(default_factory=dict)
    registries: dict[str, dict[str, tuple[Any, str]]] = dataclasses.field(default_factory=dict)


_state: _State | None = None


def _selected(name: str) -> bool:
    chosen = os.environ.get(ENV_VAR)
    if chosen is None:
        return True
    return name in {n.strip() for n in chosen.split(",") if n.strip()}


def _load_entry_points(state: _State) -> None:
    pm = state.manager
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if not _selected(ep.name) or pm.get_plugin(ep.name) is not None:
            continue
        try:
            plugin = ep.load()
            pm.register(plugin, name=ep.name)
        except Exception as exc:  # a broken plugin never takes seamline down
            warnings.warn(
                f"seamline plugin {ep.name!r} ({ep.value}) failed to load and is skipped: {exc}",
                RuntimeWarning,
                stacklevel=3,
            )
            continue
        info = plugin_info(ep)
        state.infos[ep.name] = info
        if info.missing:
            state.packages[ep.value.split(".")[0]] = info


def _loaded() -> _State:
    global _state
    if _state is None:
        pm = pluggy.PluginManager("seamline")
        pm.add_hookspecs(hookspecs)
        _state = _State(pm)
        _load_entry_points(_state)
    return _state


def get_plugin_manager() -> pluggy.PluginManager:
    """Return the plugin manager, loading entry-point plugins on first use.

    Returns
    -------
    pluggy.PluginManager
    """
    return _loaded().manager


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
    state = _loaded()
    registered = state.manager.register(plugin, name=name)
    if registered is None:  # pluggy returns None for a blocked name
        raise PluginError(f"plugin name {name!r} is blocked")
    state.infos[registered] = PluginInfo(name=registered, version=version, hooks=(), builtin=False)
    state.registries.clear()
    return registered


def unregister_plugin(name: str) -> None:
    """Remove a plugin registered under *name*.

    Parameters
    ----------
    name : str
        The name :func:`register_plugin` returned.
    """
    state = _loaded()
    state.manager.unregister(name=name)
    state.infos.pop(name, None)
    state.registries.clear()


def reset() -> None:
    """Forget every plugin; the next use loads entry points afresh (for tests)."""
    global _state
    _state = None


def not_installed(exc: BaseException) -> NotInstalledError | None:
    """The :class:`NotInstalledError` an ImportError stands for, if a missing extra caused it.

    Parameters
    ----------
    exc : BaseException
        Typically a :class:`ModuleNotFoundError` raised while a plugin's code ran.

    Returns
    -------
    NotInstalledError or None
        The error naming the plugin and the command that installs it, when the import
        failed inside a plugin that is not installed; None otherwise.
    """
    if _state is None:
        return None
    return blame(exc, _state.packages)


def _implementations(hook_name: str) -> list[tuple[str, Callable[..., Any]]]:
    """Each plugin's implementation of *hook_name*, with the plugin's name."""
    pm = get_plugin_manager()
    return [(pm.get_name(i.plugin) or repr(i.plugin), i.function) for i in getattr(pm.hook, hook_name).get_hookimpls()]


def call_hook(hook_name: str, *, needed: str | None = None, **kwargs: Any) -> Any:
    """Call a hook; an import that fails in a plugin that is not installed names its extra.

    Parameters
    ----------
    hook_name : str
        The hook, e.g. ``"seamline_vector_backend"``.
    needed : str, optional
        What the caller needs, in a few words; with it, a ``firstresult`` hook that no
        plugin answers is an error that says so.
    **kwargs
        The hook's arguments.

    Returns
    -------
    object
        What pluggy returns: the first result for a ``firstresult`` hook, else a list.

    Raises
    ------
    NotInstalledError
        If an implementation needs a library that is missing, or no plugin answered and
        one that would is not installed.
    PluginError
        If *needed* is given and no plugin answered.
    """
    state = _loaded()
    with _named_if_not_installed():
        result = getattr(state.manager.hook, hook_name)(**kwargs)
    if result is None and needed is not None:
        hook = getattr(state.manager.hook, hook_name)
        implementers = {state.manager.get_name(i.plugin) for i in hook.get_hookimpls()}
        for info in state.infos.values():
            if info.missing and info.name in implementers:
                raise not_installed_error(info)
        raise PluginError(f"{needed}; no loaded plugin provides it ({hook_name})")
    return result


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
            if not isinstance(record, record_type) or not isinstance(record.name, str):
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
    kind : {"readers", "writers", "models", "model_formats", "bundles", "outputs", "recipes"}

    Returns
    -------
    dict
        Name to record, in registration order (first registered plugin first).

    Raises
    ------
    PluginError
        If two plugins register the same name.
    """
    hook_name = f"seamline_{kind}"
    if hook_name not in RECORD_TYPES:
        raise InputError(f"unknown registry {kind!r}; one of {', '.join(KINDS)}")
    registries = _loaded().registries
    if hook_name not in registries:
        registries[hook_name] = _collect(hook_name)
    return {name: record for name, (record, _) in registries[hook_name].items()}


def owners(kind: str) -> dict[str, str]:
    """Return which plugin registered each name of *kind*.

    Parameters
    ----------
    kind : {"readers", "writers", "models", "model_formats", "bundles", "outputs", "recipes"}

    Returns
    -------
    dict
        Registered name to the name of the plugin that registered it.
    """
    registry(kind)
    return {name: owner for name, (_, owner) in _loaded().registries[f"seamline_{kind}"].items()}


def list_plugins() -> list[PluginInfo]:
    """Return every loaded plugin with its version and the hooks it implements.

    Returns
    -------
    list of PluginInfo
    """
    state = _loaded()
    infos = []
    for name, plugin in state.manager.list_name_plugin():
        hooks = tuple(sorted(caller.name for caller in state.manager.get_hookcallers(plugin) or ()))
        known = state.infos.get(name) or PluginInfo(name=name, version=None, hooks=(), builtin=False)
        infos.append(dataclasses.replace(known, hooks=hooks))
    return sorted(infos, key=lambda info: info.name)
