"""Export: the registered exporters write the atlas's files, in ascending ``order`` (the manifest first)."""

from __future__ import annotations

from ..types import UsageError
from .state import BuildState, Stage


class ExportStage(Stage):
    name = "export"

    def prepare(self, state: BuildState) -> None:
        """Choose the exporters (every registered one, or those of ``--exporters``) before any work."""
        registry, wanted = state.registry, state.config.exporters
        names = list(wanted) if wanted is not None else registry.names("exporters")
        if wanted is not None and "manifest" not in names:
            names.insert(0, "manifest")  # the contract is always written
        made = [registry.exporter(n) for n in names]
        for exporter in made:
            if not isinstance(getattr(exporter, "order", None), int):
                raise UsageError(f"exporter {exporter.name!r} has no integer order")
        self.exporters = sorted(made, key=lambda e: (e.order, e.name))

    def run(self, state: BuildState) -> None:
        for exporter in self.exporters:  # into the staging folder: the build publishes it when all is written
            state.written += list(exporter.export(state, state.staging) or [])
