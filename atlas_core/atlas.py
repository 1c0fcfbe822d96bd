"""A built atlas on disk: its manifest, layout and levels, and a notebook view."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .types import UsageError


class Atlas:
    """The atlas folder ``path`` (see docs/atlas-format.md)."""

    def __init__(self, path):
        self.path = Path(path)
        manifest = self.path / "atlas.json"
        if not manifest.is_file():
            raise UsageError(f"{manifest} not found: build an atlas there first (atlas build ... --out {path})")
        self.manifest = json.loads(manifest.read_text())

    @property
    def layout(self) -> np.ndarray:
        return np.load(self.path / self.manifest["layout"])

    @property
    def samples(self) -> np.ndarray:
        return np.load(self.path / self.manifest["samples"])

    @property
    def levels(self) -> list:
        return self.manifest["levels"]

    @property
    def quality(self) -> dict:
        return self.manifest["quality"]

    def level(self, level: int) -> dict:
        """A level by its index in ``levels``, or else by its grid size (``atlas.level(20)``)."""
        levels = self.levels
        grids = [lv["grid"] for lv in levels]
        if isinstance(level, int) and 0 <= level < len(levels):
            return levels[level]
        if level in grids:
            return levels[grids.index(level)]
        raise UsageError(f"no level {level!r}: give an index below {len(levels)} or a grid size among {grids}")

    def members(self, level: int, cell: int) -> np.ndarray:
        """The members (sample ids, most representative first) of cell number ``cell`` of a level (by index
        or grid size), from the level's members.npy, memory-mapped."""
        from .exporters.manifest import read_members
        lv = self.level(level)
        return read_members(self.path, lv, lv["cells"][cell])

    def directions(self, level: int) -> np.ndarray:
        """The cell directions of a level (by index or grid size)."""
        return np.load(self.path / self.level(level)["directions"])

    def store(self):
        """The atlas's samples store, read-only (activations and any per-sample columns)."""
        from .store import SampleStore
        rel = self.manifest.get("store")
        if not rel:
            raise UsageError(f"{self.path} was built by an older version: rebuild it to reuse its samples")
        path = self.path / rel
        return SampleStore.open(path.parent, path.name)

    def show(self, **kwargs):
        """Display the interactive viewer inline in a notebook."""
        from .exporters.viewer import show
        return show(self.path, **kwargs)

    def __repr__(self) -> str:
        m = self.manifest
        return (f"Atlas({str(self.path)!r}: {m['model']} / {m['layer']}, {m['n_samples']} samples, "
                f"grids {[lv['grid'] for lv in m['levels']]})")


REQUIRED = ("version", "model", "layer", "reducer", "n_samples", "layout", "samples", "levels", "quality")
CELL_KEYS = ("i", "j", "count", "icon", "label", "fidelity", "direction")


def validate(path) -> dict:
    """Check an atlas folder against docs/atlas-format.md; raises ValueError naming the first problem."""
    root = Path(path)
    m = json.loads((root / "atlas.json").read_text())
    missing = [k for k in REQUIRED if k not in m]
    if missing:
        raise ValueError(f"atlas.json lacks {missing}")
    layout = np.load(root / m["layout"])
    samples = np.load(root / m["samples"])
    n = m["n_samples"]
    if layout.shape != (n, 2) or layout.dtype != np.float32 or layout.min() < 0 or layout.max() > 1:
        raise ValueError(f"layout.npy must be {n} x 2 float32 in [0, 1], got {layout.shape} {layout.dtype}")
    if samples.shape != (n, 3):
        raise ValueError(f"samples.npy must be {n} x 3, got {samples.shape}")
    for level in m["levels"]:
        g = level["grid"]
        dirs = np.load(root / level["directions"])
        if len(dirs) != len(level["cells"]):
            raise ValueError(f"level {g}: {len(dirs)} directions for {len(level['cells'])} cells")
        members = np.load(root / level["members"], mmap_mode="r") if level.get("members") else None
        if members is not None and (members.ndim != 1 or len(members) != sum(c["count"] for c in level["cells"])):
            raise ValueError(f"level {g}: {level['members']} must hold every cell's members, one after the other")
        for cell in level["cells"]:
            if members is None and "samples" not in cell:
                raise ValueError(f"level {g}: a cell has neither samples nor a members file")
            ids = np.asarray(members[cell.get("offset", 0):cell.get("offset", 0) + cell["count"]]) \
                if members is not None else np.asarray(cell["samples"])
            if "samples" in cell and not np.array_equal(ids, cell["samples"]):
                raise ValueError(f"level {g}: cell ({cell['i']}, {cell['j']}) samples differ from {level['members']}")
            lacking = [k for k in CELL_KEYS if k not in cell]
            if lacking:
                raise ValueError(f"level {g}: a cell lacks {lacking}")
            if not (0 <= cell["i"] < g and 0 <= cell["j"] < g):
                raise ValueError(f"level {g}: cell ({cell['i']}, {cell['j']}) outside the grid")
            if cell["count"] != len(ids) or cell["count"] < level["min_count"]:
                raise ValueError(f"level {g}: cell ({cell['i']}, {cell['j']}) count does not match its samples")
            if ids.max() >= n or ids.min() < 0 or not 0 <= cell["direction"] < len(dirs):
                raise ValueError(f"level {g}: cell ({cell['i']}, {cell['j']}) refers outside the arrays")
            for rel in cell.get("icons", {}).values():
                if not (root / rel).is_file():
                    raise ValueError(f"icon {rel} is missing")
    return m
