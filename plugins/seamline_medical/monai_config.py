"""A MONAI bundle's config read as data: JSON or YAML, plain references followed, nothing run.

A MONAI bundle config (``configs/inference.json`` or ``.yaml``) is a tree of plain values,
component definitions (``{"_target_": "Spacingd", "pixdim": [1.5, 1.5, 2.0], ...}``),
references to other entries (``"@network_def"``, ``"@network_def::in_channels"``, the
older ``"@a#b"``), expressions (``"$torch.device('cuda')"``, Python code) and macros
(``"%other.json#key"``). MONAI's ``ConfigParser`` evaluates the expressions and imports
whatever a ``_target_`` names; seamline does neither. :class:`BundleConfig` hands out
values with their plain references followed (also ``"$@name"``, an expression that is
only a reference), and a value that needs code or another file to be known is a
:class:`~seamline.errors.ModelError` naming the entry and the config file. Entries that
are never asked for (the data loader, the device, handlers) may hold any expression.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from seamline.errors import ModelError

__all__ = ["CONFIG_NAMES", "find_config", "BundleConfig", "component_name"]

CONFIG_NAMES = ("inference.json", "inference.yaml", "inference.yml")
_REFERENCE = re.compile(r"^\$?@(\w+(?:(?:::|#)\w+)*)$")
#: Keys of a component definition that are not arguments of its class.
SPECIAL_KEYS = ("_target_", "_disabled_", "_requires_", "_desc_", "_mode_")


def find_config(folder: str | Path) -> Path | None:
    """The inference config of a MONAI bundle folder, or None.

    Parameters
    ----------
    folder : str or pathlib.Path

    Returns
    -------
    pathlib.Path or None
        ``configs/inference.json`` (or ``.yaml``, ``.yml``) when it exists.
    """
    configs = Path(folder) / "configs"
    return next((configs / name for name in CONFIG_NAMES if (configs / name).is_file()), None)


def component_name(target: Any, package: str, path: Path, where: str) -> str:
    """The class name a ``_target_`` gives, when it names something in *package* (or nothing else).

    Parameters
    ----------
    target : object
        The ``_target_`` value: ``"Spacingd"``, ``"monai.transforms.Spacingd"``, ...
    package : str
        The package it must lie in, e.g. ``"monai.transforms"``.
    path : pathlib.Path
        The config file, for errors.
    where : str
        The entry, for errors.

    Returns
    -------
    str
        The last dotted part: ``"Spacingd"``.

    Raises
    ------
    ModelError
        If *target* is not a string naming a name in *package*.
    """
    if not isinstance(target, str) or not target or target[0] in "$@%":
        raise ModelError(f"{where}: _target_ {target!r} is not a class name", path)
    module, _, name = target.rpartition(".")
    if module and not (module == package or module.startswith(package + ".")):
        raise ModelError(f"{where}: {target} is not in {package}, and seamline imports nothing else", path)
    return name


class BundleConfig:
    """A MONAI bundle config, read without evaluating anything.

    Parameters
    ----------
    path : str or pathlib.Path
        A JSON or YAML config file.

    Raises
    ------
    ModelError
        If the file is not valid JSON or YAML, or not a mapping.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        text = self.path.read_text(encoding="utf-8")
        try:
            if self.path.suffix == ".json":
                data = json.loads(text)
            else:
                import yaml

                data = yaml.safe_load(text)
        except (json.JSONDecodeError, ValueError) as exc:
            raise ModelError(f"not a valid config: {exc}", self.path) from exc
        except Exception as exc:  # yaml.YAMLError and its kin
            raise ModelError(f"not a valid config: {str(exc).splitlines()[0]}", self.path) from exc
        if not isinstance(data, Mapping):
            raise ModelError("not a valid config: the top level is not a mapping", self.path)
        self.data = data

    def __contains__(self, key: str) -> bool:
        return key in self.data

    def _lookup(self, reference: str, seen: tuple[str, ...]) -> Any:
        value: Any = self.data
        for part in re.split(r"::|#", reference):
            if isinstance(value, Mapping) and part in value:
                value = value[part]
            elif isinstance(value, list) and part.isdigit() and int(part) < len(value):
                value = value[int(part)]
            else:
                where = seen[-1] if seen else reference
                raise ModelError(f"{where}: the reference @{reference} names no entry", self.path)
        return value

    def resolve(self, value: Any, where: str, seen: tuple[str, ...] = ()) -> Any:
        """*value* with its plain references followed, recursively.

        Parameters
        ----------
        value : object
            A config value.
        where : str
            The entry it came from, for errors.
        seen : tuple of str
            References being followed (to catch a cycle).

        Returns
        -------
        object
            Plain JSON-like data. Component definitions stay mappings.

        Raises
        ------
        ModelError
            If the value holds an expression other than a plain reference, a macro, a
            reference to nothing, or a reference cycle.
        """
        if isinstance(value, str):
            found = _REFERENCE.match(value)
            if found:
                reference = found.group(1)
                if reference in seen:
                    raise ModelError(f"{where}: the reference @{reference} refers to itself", self.path)
                return self.resolve(self._lookup(reference, seen), where, (*seen, reference))
            if value.startswith("$"):
                raise ModelError(f"{where} is Python code ({value!r}); seamline evaluates no config code", self.path)
            if value.startswith("%"):
                raise ModelError(f"{where} takes a value from another file ({value!r}); not supported", self.path)
            return value
        if isinstance(value, Mapping):
            return {key: self.resolve(item, f"{where}::{key}", seen) for key, item in value.items()}
        if isinstance(value, list):
            return [self.resolve(item, f"{where}::{i}", seen) for i, item in enumerate(value)]
        return value

    def get(self, key: str, default: Any = None) -> Any:
        """The entry *key* (``"network_def"``, ``"inferer"``), references followed; *default* if absent."""
        if key not in self.data:
            return default
        return self.resolve(self.data[key], key)

    def component(self, definition: Any, where: str, package: str) -> tuple[str, dict[str, Any]] | None:
        """A component definition's class name and arguments, each argument resolved when read.

        Parameters
        ----------
        definition : object
            ``{"_target_": ..., args...}``, or a reference to one.
        where : str
            The entry, for errors.
        package : str
            The package its ``_target_`` must lie in.

        Returns
        -------
        tuple of (str, dict) or None
            The class name and the raw (unresolved) arguments; None when ``_disabled_``.

        Raises
        ------
        ModelError
            If *definition* is not a component, or its ``_mode_`` asks for something
            other than building it.
        """
        while isinstance(definition, str) and _REFERENCE.match(definition):
            definition = self._lookup(_REFERENCE.match(definition).group(1), (where,))  # type: ignore[union-attr]
        if not isinstance(definition, Mapping) or "_target_" not in definition:
            raise ModelError(f"{where} is not a component definition with a _target_", self.path)
        if self.resolve(definition.get("_disabled_", False), f"{where}::_disabled_") in (True, "true", "True"):
            return None
        mode = self.resolve(definition.get("_mode_", "default"), f"{where}::_mode_")
        if mode != "default":
            raise ModelError(f"{where} has _mode_ {mode!r}; seamline only builds components", self.path)
        name = component_name(definition["_target_"], package, self.path, where)
        return name, {key: value for key, value in definition.items() if key not in SPECIAL_KEYS}
