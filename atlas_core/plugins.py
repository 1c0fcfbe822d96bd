"""Plugin discovery and the registry of what plugins provide, by family and name.

Built-ins (``atlas_core.builtins``) are registered like any plugin; external
plugins come from the entry-point group ``atlas_core``. A plugin that fails to
import, or whose hook raises or registers nonsense, is recorded with its error
and skipped. A name registered twice in one family is a conflict: the
first-party registration (a distribution of this project) or else the first
one is kept, the other is named by ``atlas plugins`` and ignored.
``ATLAS_DISABLE_PLUGINS`` is a comma-separated list of plugin (entry-point)
names to skip, or ``all`` to load no external plugin.
"""

from __future__ import annotations

import difflib
import os
import sys
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any, Callable, Optional

import pluggy

from . import hookspecs
from .types import UsageError

GROUP = "atlas_core"
DISABLE_ENV = "ATLAS_DISABLE_PLUGINS"
FAMILIES = ("backends", "reducers", "renderers", "exporters", "executors", "gradients", "sources", "commands")
FIRST_PARTY = "actatlas"  # distributions named actatlas or actatlas-*
# where this project's own names come from, for "unknown reducer 'umap'" after a minimal install
PROVIDED_BY = {("reducers", "umap"): "plugins/umap", ("reducers", "tsne"): "plugins/tsne",
               ("renderers", "featureviz"): "plugins/jax", ("backends", "onnx"): "plugins/onnx[cpu]",
               ("backends", "onnx-jax"): "plugins/jax", ("backends", "jax"): "plugins/jax",
               ("backends", "torch"): "plugins/torch", ("sources", "demo"): "plugins/demo",
               ("commands", "demo"): "plugins/demo", ("executors", "ray"): "plugins/ray",
               ("commands", "grid"): "plugins/grid"}


class PluginError(UsageError):
    """A plugin misbehaved in a way the user must fix."""


@dataclass
class Registration:
    family: str
    name: str
    factory: Callable[..., Any]
    plugin: str
    description: str = ""
    priority: int = 0


@dataclass
class PluginInfo:
    name: str
    distribution: str
    version: str
    registers: dict = field(default_factory=dict)  # family -> [names]

    @property
    def first_party(self) -> bool:
        return self.name == "builtins" or self.distribution == FIRST_PARTY or \
            self.distribution.startswith(FIRST_PARTY + "-")


@dataclass
class FailedPlugin:
    name: str
    distribution: str
    error: str


@dataclass
class Conflict:
    family: str
    name: str
    kept: str     # plugin whose registration is used
    ignored: str  # plugin whose registration is not

    def __str__(self) -> str:
        return (f"{self.family[:-1]} {self.name!r} is registered by plugins {self.kept!r} and {self.ignored!r}; "
                f"using {self.kept!r} (uninstall {self.ignored!r} or disable it with "
                f"{DISABLE_ENV}={self.ignored})")


class Registry:
    """What the loaded plugins registered, by family and name."""

    def __init__(self, pm: pluggy.PluginManager):
        self.pm = pm
        self.plugins: dict[str, PluginInfo] = {}
        self.failed: list[FailedPlugin] = []
        self.conflicts: list[Conflict] = []
        self.entries: dict[str, dict[str, Registration]] = {f: {} for f in FAMILIES}
        self._warned: set = set()

    # -- collection -----------------------------------------------------
    def collect(self) -> "Registry":
        for family in FAMILIES:
            hook = getattr(self.pm.hook, f"atlas_register_{family}")
            for impl in hook.get_hookimpls():  # in registration order: built-ins first
                plugin_name = self.pm.get_name(impl.plugin) or repr(impl.plugin)
                if plugin_name not in self.plugins:
                    continue  # dropped after an earlier failure
                made: list = []

                def register(name=None, factory=None, description="", priority=0, _f=family, _p=plugin_name,
                             _made=made):
                    if not isinstance(name, str) or not name or not callable(factory):
                        raise PluginError(f"register() needs a name (str) and a factory (callable), got "
                                          f"{name!r}, {factory!r}")
                    _made.append(Registration(_f, name, factory, _p, str(description or ""), int(priority)))

                try:
                    impl.function(register=register)
                except Exception as exc:  # a plugin whose hook raises is skipped, not fatal
                    self._drop(plugin_name, f"atlas_register_{family}: {type(exc).__name__}: {exc}")
                    continue
                for reg in made:
                    self._add(reg)
        return self

    def _drop(self, plugin: str, error: str) -> None:
        info = self.plugins.pop(plugin, None)
        self.failed.append(FailedPlugin(plugin, info.distribution if info else "?", error))
        for table in self.entries.values():
            for name in [n for n, r in table.items() if r.plugin == plugin]:
                del table[name]

    def _add(self, reg: Registration) -> None:
        table = self.entries[reg.family]
        old = table.get(reg.name)
        if old is not None:
            new_wins = self.plugins[reg.plugin].first_party and not self.plugins[old.plugin].first_party
            kept, ignored = (reg, old) if new_wins else (old, reg)
            self.conflicts.append(Conflict(reg.family, reg.name, kept.plugin, ignored.plugin))
            if not new_wins:
                return
            self.plugins[old.plugin].registers[reg.family].remove(reg.name)
        table[reg.name] = reg
        self.plugins[reg.plugin].registers.setdefault(reg.family, []).append(reg.name)

    # -- lookup ---------------------------------------------------------
    def names(self, family: str) -> list[str]:
        return sorted(self.entries[family])

    def get(self, family: str, name: str) -> Registration:
        table = self.entries[family]
        if name not in table:
            near = difflib.get_close_matches(name, list(table), n=3)
            hint = f" (did you mean {', '.join(near)}?)" if near else ""
            known = ", ".join(sorted(table)) or "none installed"
            where = PROVIDED_BY.get((family, name))
            install = f"; it comes with pip install ./{where}" if where else ""
            if where and family == "reducers":
                install += " (or use --reducer pca)"
            raise UsageError(f"unknown {family[:-1]} {name!r}{hint}{install}; available: {known}")
        self._warn_conflict(family, name)
        return table[name]

    def _warn_conflict(self, family: str, name: str) -> None:
        for conflict in self.conflicts:
            if (conflict.family, conflict.name) == (family, name) and id(conflict) not in self._warned:
                self._warned.add(id(conflict))
                print(f"atlas: note: {conflict}", file=sys.stderr)

    def ordered(self, family: str) -> list[Registration]:
        """The registrations of a family by descending priority, then name."""
        return sorted(self.entries[family].values(), key=lambda r: (-r.priority, r.name))

    def create(self, family: str, name: str, *args, **kwargs):
        return self.get(family, name).factory(*args, **kwargs)

    def backend(self, name: str):
        return self.create("backends", name)

    def renderer(self, name: str):
        return self.create("renderers", name)

    def exporter(self, name: str):
        return self.create("exporters", name)

    def reducer(self, name: str, **params):
        """A reducer with these hyperparameters; an unknown one is refused by name before any work."""
        from .reducers import param_names
        factory = self.get("reducers", name).factory
        try:
            probe = factory()
        except TypeError as exc:
            raise UsageError(f"reducer {name!r} cannot be made without parameters: {exc}") from None
        known = [p for p in param_names(type(probe)) if p not in ("args", "kwargs")]
        unknown = sorted(set(params) - set(known))
        if unknown and known:
            raise UsageError(f"unknown parameter {', '.join(map(repr, unknown))} for reducer {name}; "
                             f"known: {', '.join(known)}")
        try:
            return factory(**params)
        except TypeError as exc:
            raise UsageError(f"bad parameter for reducer {name!r}: {exc}") from None

    def backend_for(self, source, name: Optional[str] = None):
        """The backend named ``name``, or the first by priority that can open ``source``."""
        if name:
            backend = self.backend(name)
            if not backend.can_open(source):
                raise UsageError(f"backend {name!r} cannot open {source!r}")
            return backend
        for reg in self.ordered("backends"):
            backend = reg.factory()
            if backend.can_open(source):
                self._warn_conflict("backends", reg.name)
                return backend
        installed = ", ".join(self.names("backends")) or "none"
        raise UsageError(f"{source!r} is not a model that an installed backend recognizes (installed backends: "
                         f"{installed}); give an .onnx file, an import path package.module:function, or install "
                         "a backend plugin, e.g. pip install ./plugins/onnx[cpu]")


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
    own = metadata.version(FIRST_PARTY) if _installed(FIRST_PARTY) else "0"
    pm.register(builtins, name="builtins")
    registry.plugins["builtins"] = PluginInfo("builtins", FIRST_PARTY, own)
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
