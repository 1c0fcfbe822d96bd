"""Grid levels: bin the layout afresh at each grid size; per cell, count, members, direction, labels."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np

from .types import UsageError


@dataclass
class Cell:
    i: int  # column (x bin)
    j: int  # row (y bin, 0 at the top)
    members: np.ndarray
    label: Optional[str] = None
    labels: list = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.members)


@dataclass
class Level:
    grid: int
    min_count: int
    cells: list
    directions: np.ndarray  # cells x channels


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
    ij = bin_layout(layout, grid)
    flat = ij[:, 1] * grid + ij[:, 0]
    order = np.argsort(flat, kind="stable")
    bounds = np.searchsorted(flat[order], np.arange(grid * grid + 1))
    cells, directions = [], []
    for key in range(grid * grid):
        members = order[bounds[key]:bounds[key + 1]]
        if len(members) < min_count:
            continue
        cell = Cell(i=key % grid, j=key // grid, members=members)
        if labels is not None:
            cell.labels = top_labels(labels, members)
            cell.label = cell.labels[0][0] if cell.labels else None
        cells.append(cell)
        directions.append(np.asarray(acts[np.sort(members)], dtype=np.float64).mean(axis=0))
    channels = acts.shape[1]
    dirs = np.asarray(directions, dtype=np.float32) if directions else np.zeros((0, channels), np.float32)
    return Level(grid=grid, min_count=min_count, cells=cells, directions=dirs)
