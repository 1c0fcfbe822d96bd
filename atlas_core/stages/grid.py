"""Grid levels: bin the layout afresh at each grid size; per cell, its members (most representative first),
its direction (the members' mean activation) and its labels."""

from __future__ import annotations

import math
from collections import Counter
from typing import Optional, Sequence

import numpy as np

from ..metrics import cosines
from ..types import UsageError
from .reuse import key
from .state import BuildState, Cell, Level, Stage


def max_grid(n_samples: int, per_cell: float = 2.0) -> int:
    """The finest grid the samples support: on average ``per_cell`` samples per cell."""
    return max(1, int(math.sqrt(n_samples / per_cell)))


def choose_grids(requested: Sequence[int], n_samples: int) -> list[int]:
    """Keep the requested grids the sample count supports; an impossible request is a UsageError."""
    bad = [g for g in requested if g < 1]
    if bad:
        raise UsageError(f"grid sizes must be positive integers, got {bad}")
    cap = max_grid(n_samples)
    grids = sorted({g for g in requested if g <= cap})
    if not grids:
        raise UsageError(f"no requested grid ({', '.join(map(str, requested))}) fits {n_samples} samples: "
                         f"the finest is {cap}; use --levels {cap} or collect more samples")
    return grids


def bin_layout(layout: np.ndarray, grid: int) -> np.ndarray:
    """Cell index (i, j) of every sample."""
    return np.clip(np.floor(np.asarray(layout) * grid).astype(np.int64), 0, grid - 1)


def top_labels(labels: Sequence, members: np.ndarray, k: int = 3) -> list:
    counts = Counter(labels[m] for m in members if labels[m] is not None)
    total = sum(counts.values())
    return [[name, round(c / total, 4)] for name, c in counts.most_common(k)] if total else []


def make_level(layout: np.ndarray, acts: np.ndarray, grid: int, min_count: int,
               labels: Optional[Sequence] = None) -> Level:
    """Level ``grid``: cells with at least ``min_count`` samples, members ordered by cosine to the direction."""
    ij = bin_layout(layout, grid)
    flat = ij[:, 1] * grid + ij[:, 0]
    order = np.argsort(flat, kind="stable")
    bounds = np.searchsorted(flat[order], np.arange(grid * grid + 1))
    cells, directions = [], []
    for cell_key in range(grid * grid):
        members = np.sort(order[bounds[cell_key]:bounds[cell_key + 1]])
        if len(members) < min_count:
            continue
        member_acts = np.asarray(acts[members])
        direction = np.asarray(member_acts, dtype=np.float64).mean(axis=0)
        ranked = members[np.argsort(-cosines(member_acts, direction.astype(np.float32)), kind="stable")]
        cell = Cell(i=cell_key % grid, j=cell_key // grid, members=ranked, direction=len(cells))
        if labels is not None:
            cell.labels = top_labels(labels, members)
        cells.append(cell)
        directions.append(direction)
    channels = acts.shape[1]
    dirs = np.asarray(directions, dtype=np.float32) if directions else np.zeros((0, channels), np.float32)
    return Level(grid=grid, min_count=min_count, cells=cells, directions=dirs)


def sample_labels(state: BuildState) -> tuple[Optional[list], Optional[str]]:
    """Each sample's label and where labels come from: ground truth if given, else each image's top class."""
    prov = state.store.provenance()
    if state.ground_truth is not None:
        image_labels, source = list(state.ground_truth), "ground truth"
    else:
        top = {int(k): v[0] for k, v in state.store.predictions()["classes"].items()}
        if not (top and state.class_names):
            return None, None
        image_labels = [state.class_names[top[i]] if i in top else None for i in range(len(state.source))]
        source = "predicted"
    return [image_labels[i] for i in prov[:, 0]], source


class GridStage(Stage):
    """Bins the layout into every requested level that the sample count supports."""

    name = "grid"

    def run(self, state: BuildState) -> None:
        c = state.config
        acts = state.store.activations()
        grids = choose_grids(c.levels, len(acts))
        state.sample_labels, state.label_source = sample_labels(state)
        state.levels = []
        for g in grids:
            level = make_level(state.layout, acts, g, c.min_count, state.sample_labels)
            level.key = key("level", state.keys["layout"], g, c.min_count)
            state.levels.append(level)
        if not any(level.cells for level in state.levels):
            raise UsageError(f"no cell holds {c.min_count} samples at grids {grids}: lower --min-count or use "
                             "coarser --levels")
        if not 0 <= state.default_level < len(state.levels):
            raise UsageError(f"--default-level must be between 0 and {len(state.levels) - 1}")
