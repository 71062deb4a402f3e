"""Lazy package exports: a package names what it re-exports, each imported when first asked for.

Used where importing every submodule up front would import PyTorch (or other heavy modules)
for callers that need only the light ones, e.g. a model card checked before torch is installed.
"""

from __future__ import annotations

import importlib
import sys
import types
from collections.abc import Callable, Mapping
from typing import Any


def lazy_getattr(
    package: str, exports: Mapping[str, str], namespace: dict[str, Any]
) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package``: ``exports`` maps a name to its submodule.

    The first access imports ``package.<submodule>`` and stores the value in ``namespace`` (the
    package's ``globals()``), so later accesses are plain attribute lookups.
    """

    def __getattr__(name: str) -> Any:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{module}"), name)
        namespace[name] = value
        return value

    return __getattr__


def keep_exports_over_submodules(package: str, names: frozenset[str]) -> None:
    """Keep each of ``names`` the exported object, not the submodule of the same name.

    Importing ``package.<name>`` sets the package attribute ``<name>`` to that submodule, which
    would hide an exported function of the same name (``complete.complete``,
    ``mc_dropout.mc_dropout``). The package's module class is swapped for one that stores the
    submodule's own ``<name>`` instead.
    """

    class _Package(types.ModuleType):
        def __setattr__(self, name: str, value: Any) -> None:
            if name in names and isinstance(value, types.ModuleType):
                value = getattr(value, name)
            super().__setattr__(name, value)

    sys.modules[package].__class__ = _Package
