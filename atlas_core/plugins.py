"""Plugin discovery and the registry of backends, reducers and renderers.

Built-ins (``atlas_core.builtins``) are registered like any plugin; external
plugins come from the entry-point group ``atlas_core``. A plugin that fails to
import is recorded with its error and skipped. ``ATLAS_DISABLE_PLUGINS`` is a
comma-separated list of plugin (entry-point) names to skip, or ``all`` to load
no external plugin.
"""

from __future__ import annotations

import difflib
import os
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, Callable, Optional

import pluggy

from . import hookspecs
from .types import UsageError

GROUP = "atlas_core"
DISABLE_ENV = "ATLAS_DISABLE_PLUGINS"
FAMILIES = ("backends", "reducers", "renderers")


class PluginError(UsageError):
    """A plugin misbehaved in a way the user must fix (e.g. a duplicate name)."""


@dataclass
class Registration:
    family: str
    name: str
    factory: Callable[..., Any]
    plugin: str
    description: str = ""


@dataclass
class PluginInfo:
    name: str
    distribution: str
    version: str
    registers: dict = field(default_factory=dict)  # family -> [names]


@dataclass
class FailedPlugin:
    name: str
    distribution: str
    error: str


class Registry:
    """What the loaded plugins registered, by family and name."""

    def __init__(self, pm: pluggy.PluginManager):
        self.pm = pm
        self.plugins: dict[str, PluginInfo] = {}
        self.failed: list[FailedPlugin] = []
        self.entries: dict[str, dict[str, Registration]] = {f: {} for f in FAMILIES}

    # -- collection -----------------------------------------------------
    def collect(self) -> "Registry":
        for family in FAMILIES:
            hook = getattr(self.pm.hook, f"atlas_register_{family}")
            for impl in hook.get_hookimpls():
                plugin_name = self.pm.get_name(impl.plugin) or repr(impl.plugin)

                def register(name, factory, description="", _f=family, _p=plugin_name):
                    self._add(Registration(_f, name, factory, _p, description))

                try:
                    impl.function(register=register)
                except PluginError:
                    raise
                except Exception as exc:  # a plugin whose hook raises is skipped, not fatal
                    self._drop(plugin_name, f"{type(exc).__name__}: {exc}")
        return self

    def _drop(self, plugin: str, error: str) -> None:
        info = self.plugins.pop(plugin, None)
        self.failed.append(FailedPlugin(plugin, info.distribution if info else "?", error))
        for table in self.entries.values():
            for name in [n for n, r in table.items() if r.plugin == plugin]:
                del table[name]

    def _add(self, reg: Registration) -> None:
        table = self.entries[reg.family]
        if reg.name in table:
            other = table[reg.name].plugin
            raise PluginError(
                f"{reg.family[:-1]} {reg.name!r} is registered twice: by plugin {other!r} and by "
                f"plugin {reg.plugin!r}; uninstall one or disable it with {DISABLE_ENV}={reg.plugin}")
        table[reg.name] = reg
        info = self.plugins.get(reg.plugin)
        if info is not None:
            info.registers.setdefault(reg.family, []).append(reg.name)

    # -- lookup ---------------------------------------------------------
    def names(self, family: str) -> list[str]:
        return sorted(self.entries[family])

    def get(self, family: str, name: str) -> Registration:
        table = self.entries[family]
        if name not in table:
            near = difflib.get_close_matches(name, list(table), n=3)
            hint = f" (did you mean {', '.join(near)}?)" if near else ""
            known = ", ".join(sorted(table)) or "none installed"
            raise UsageError(f"unknown {family[:-1]} {name!r}{hint}; available: {known}")
        return table[name]

    def backend(self, name: str):
        return self.get("backends", name).factory()

    def reducer(self, name: str, **params):
        return self.get("reducers", name).factory(**params)

    def renderer(self, name: str):
        return self.get("renderers", name).factory()

    def backend_for(self, source, name: Optional[str] = None):
        """The backend named ``name``, or the first (by name) that can open ``source``."""
        if name:
            backend = self.backend(name)
            if not backend.can_open(source):
                raise UsageError(f"backend {name!r} cannot open {source!r}")
            return backend
        for bname in self.names("backends"):
            backend = self.backend(bname)
            if backend.can_open(source):
                return backend
        installed = ", ".join(self.names("backends")) or "none"
        raise UsageError(f"no installed backend can open {source!r} (installed backends: {installed}); "
                         "install a backend plugin, e.g. pip install ./plugins/onnx")


def _disabled() -> set[str]:
    raw = os.environ.get(DISABLE_ENV, "")
    return {part.strip() for part in raw.split(",") if part.strip()}


def make_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager("atlas_core")
    pm.add_hookspecs(hookspecs)
    return pm


def load(entry_points: bool = True, extra: tuple = ()) -> Registry:
    """A fresh registry: built-ins, then (unless disabled) entry-point plugins, then ``extra``.

    ``extra`` holds (name, plugin object) pairs, for tests and scripts.
    """
    from . import builtins

    pm = make_manager()
    registry = Registry(pm)
    own = metadata.version("actatlas") if _installed("actatlas") else "0"
    pm.register(builtins, name="builtins")
    registry.plugins["builtins"] = PluginInfo("builtins", "actatlas", own)
    disabled = _disabled()
    if entry_points and not ({"all", "*"} & disabled):
        for ep in sorted(metadata.entry_points(group=GROUP), key=lambda e: e.name):
            if ep.name in disabled or pm.has_plugin(ep.name):
                continue
            dist = ep.dist.name if ep.dist else "?"
            version = ep.dist.version if ep.dist else "?"
            try:
                plugin = ep.load()
                pm.register(plugin, name=ep.name)
            except Exception as exc:  # a broken plugin must not break the rest
                registry.failed.append(FailedPlugin(ep.name, dist, f"{type(exc).__name__}: {exc}"))
                continue
            registry.plugins[ep.name] = PluginInfo(ep.name, dist, version)
    for name, plugin in extra:
        pm.register(plugin, name=name)
        registry.plugins[name] = PluginInfo(name, "(in process)", "")
    return registry.collect()


def _installed(dist: str) -> bool:
    try:
        metadata.version(dist)
        return True
    except metadata.PackageNotFoundError:
        return False


_REGISTRY: Optional[Registry] = None


def get_registry() -> Registry:
    """The process-wide registry, loaded on first use."""
    global _REGISTRY
    if _REGISTRY is None:
        _REGISTRY = load()
    return _REGISTRY
