"""Grid levels: bin the layout afresh at each grid size; per cell, its members (most representative first),
its direction (the members' mean activation) and its labels."""

from __future__ import annotations

import math
from collections import Counter
from typing import Optional, Sequence

import numpy as np

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
    """The ``k`` most frequent labels among ``members`` with their shares; a tie goes to the label of the more
    representative member (``members`` come most representative first)."""
    counts = Counter(labels[m] for m in members if labels[m] is not None)
    total = sum(counts.values())
    return [[name, round(c / total, 4)] for name, c in counts.most_common(k)] if total else []


def attribution_labels(mean: np.ndarray, names: Sequence[str], k: int = 5, scale: float = 1.0) -> tuple[list, list]:
    """A cell's labels from its mean attribution: the top ``k`` classes as [name, mean attribution] and as
    [name, share]. Attribution is in logit units and one position holds a small part of a logit, so the share
    is the softmax of the mean attribution times ``scale`` (the layer's positions, H x W): to first order, the
    class probabilities of an image whose every position were like this cell."""
    mean = np.asarray(mean, np.float64)
    top = np.argsort(-mean, kind="stable")[:k]
    z = np.exp(scale * (mean - mean.max()))
    share = z / z.sum()
    return ([[names[c], round(float(share[c]), 4)] for c in top],
            [[names[c], round(float(mean[c]), 4)] for c in top])


BLOCK = 65536  # samples read from the store at a time


def _cell_sums(rows: np.ndarray, n_cells: int, column, block: int = BLOCK) -> np.ndarray:
    """Per kept cell (``rows``: each sample's cell row, -1 if its cell is dropped), the float64 sum of a
    per-sample ``column``, read from the (memory-mapped) store ``block`` samples at a time, in sample order."""
    sums = np.zeros((n_cells,) + tuple(column.shape[1:]), np.float64)
    for start in range(0, len(rows), block):
        r = rows[start:start + block]
        keep = np.flatnonzero(r >= 0)
        if not len(keep):
            continue
        order = keep[np.argsort(r[keep], kind="stable")]  # by cell, then sample
        sorted_rows = r[order]
        heads = np.flatnonzero(np.r_[True, sorted_rows[1:] != sorted_rows[:-1]])
        values = np.asarray(column[start:start + block], dtype=np.float64)[order]
        sums[sorted_rows[heads]] += np.add.reduceat(values, heads, axis=0)
    return sums


def _cosines_to_rows(rows: np.ndarray, directions: np.ndarray, acts, block: int = BLOCK) -> np.ndarray:
    """Cosine of every sample with its cell's direction (0 for samples of dropped cells), streamed."""
    unit = directions.astype(np.float64)
    unit /= np.maximum(np.linalg.norm(unit, axis=1, keepdims=True), 1e-12)
    out = np.zeros(len(rows), np.float64)
    for start in range(0, len(rows), block):
        r = rows[start:start + block]
        keep = np.flatnonzero(r >= 0)
        a = np.asarray(acts[start:start + block], dtype=np.float64)[keep]
        a /= np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
        out[start + keep] = np.einsum("ij,ij->i", a, unit[r[keep]])
    return out


def make_level(layout: np.ndarray, acts: np.ndarray, grid: int, min_count: int,
               label_sets: Optional[dict] = None, attribution=None, class_names: Sequence[str] = (),
               attribution_scale: float = 1.0) -> Level:
    """Level ``grid``: cells with at least ``min_count`` samples, members ordered by cosine to the direction
    (ties by sample id).

    ``label_sets`` maps a label source ("ground truth", "predicted") to one label per sample; ``attribution``
    (samples x classes) gives each cell its mean attribution and the labels it implies. ``acts`` and
    ``attribution`` may be memory maps: they are read in blocks of ``BLOCK`` samples, twice (sums, cosines),
    never whole; memory is a few arrays of one number per sample."""
    ij = bin_layout(layout, grid)
    flat = ij[:, 1] * grid + ij[:, 0]
    counts = np.bincount(flat, minlength=grid * grid)
    kept = np.flatnonzero(counts >= min_count)  # cell keys, row-major
    row_of = np.full(grid * grid, -1, np.int64)
    row_of[kept] = np.arange(len(kept))
    rows = row_of[flat]
    sizes = counts[kept]
    channels = acts.shape[1]
    directions = (_cell_sums(rows, len(kept), acts) / np.maximum(sizes, 1)[:, None]).astype(np.float32) \
        if len(kept) else np.zeros((0, channels), np.float32)
    cos = _cosines_to_rows(rows, directions, acts)
    members_of = np.flatnonzero(rows >= 0)
    ranked_all = members_of[np.lexsort((members_of, -cos[members_of], rows[members_of]))]
    bounds = np.r_[0, np.cumsum(sizes)]
    means = None
    if attribution is not None:
        means = _cell_sums(rows, len(kept), attribution) / np.maximum(sizes, 1)[:, None]
    cells = []
    for r, cell_key in enumerate(kept):
        ranked = ranked_all[bounds[r]:bounds[r + 1]]
        cell = Cell(i=int(cell_key % grid), j=int(cell_key // grid), members=ranked, direction=r)
        for source, labels in (label_sets or {}).items():
            cell.label_sets[source] = top_labels(labels, ranked)
        if means is not None:
            shares, cell.attribution = attribution_labels(means[r], class_names, scale=attribution_scale)
            cell.label_sets["attribution"] = shares
        cells.append(cell)
    level = Level(grid=grid, min_count=min_count, cells=cells, directions=directions)
    if attribution is not None:
        level.attribution = means.astype(np.float32).reshape(len(cells), attribution.shape[1])
    return level


def label_sets(state: BuildState) -> dict:
    """One label per sample from each label source there is: ground truth (if given), predicted classes."""
    prov = state.store.provenance()
    sets = {}
    if state.ground_truth is not None:
        sets["ground truth"] = [state.ground_truth[i] for i in prov[:, 0]]
    top = {int(k): v[0] for k, v in state.store.predictions()["classes"].items()}
    if top and state.class_names:
        image_labels = [state.class_names[top[i]] if i in top else None for i in range(len(state.source))]
        sets["predicted"] = [image_labels[i] for i in prov[:, 0]]
    return sets


class GridStage(Stage):
    """Bins the layout into every requested level that the sample count supports."""

    name = "grid"

    def prepare(self, state: BuildState) -> None:
        """Refuse grids that even the most samples the images can give would not fill, before any work."""
        c = state.config
        per_image = 1 if c.pool or (state.layer.shape is not None and len(state.layer.shape) == 1) \
            else c.samples_per_image
        choose_grids(c.levels, len(state.source) * per_image)

    def run(self, state: BuildState) -> None:
        c = state.config
        acts = state.store.activations()
        grids = choose_grids(c.levels, len(acts))
        sets = label_sets(state)
        attribution = state.store.column("attribution") if state.attribution is not None else None
        # the labels a cell shows: attribution where there is, else ground truth, else the predictions
        state.label_sources = (["attribution"] if attribution is not None else []) + list(sets)
        state.label_source = state.label_sources[0] if state.label_sources else None
        # kNN agreement is measured on per-sample labels: ground truth, else the predictions
        state.quality_labels = sets.get("ground truth", sets.get("predicted"))
        state.quality_label_source = next(iter(sets), None)
        shape = state.layer.shape
        scale = shape[0] * shape[1] if shape is not None and len(shape) == 3 and not c.pool else 1
        state.levels = []
        for g in grids:
            level = make_level(state.layout, acts, g, c.min_count, sets, attribution, state.class_names, scale)
            for cell in level.cells:
                cell.labels = cell.label_sets.get(state.label_source, [])
            level.key = key("level", state.keys["layout"], g, c.min_count)
            state.levels.append(level)
        if not any(level.cells for level in state.levels):
            raise UsageError(f"no cell holds {c.min_count} samples at grids {grids}: lower --min-count or use "
                             "coarser --levels")
        if not 0 <= state.default_level < len(state.levels):
            raise UsageError(f"--default-level must be between 0 and {len(state.levels) - 1}")
