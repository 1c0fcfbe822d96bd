"""Aligned atlases of two layers (`atlas compare --align LA,LB`): one layout per layer of the same samples, in
one coordinate system, so that a region means the same images on both sides.

Two methods, both measured on every run (docs/health.md has the numbers):

- ``joint`` (the reference's ``aligned_activation_atlas``): with the uncentred moments S11, S12, S22 of the two
  layers' activations, map A -> A S11^-1 S12 (A's least-squares prediction of B) and B -> B S22^-1 S21, lay out
  the rows [A, A->B] and [B->A, B] together in ONE fit of the reducer, and split the layout in two. Each layer is
  first divided by its mean row norm so that neither half of a row outweighs the other. Identical rows are laid
  out once, so identical inputs land in identical cells.
- ``aligned-umap``: umap-learn's ``AlignedUMAP`` with the identity relation, through the reducer's optional
  ``fit_transform_aligned`` (:class:`atlas_core.contracts.AlignedReducer`).

Both layouts are normalized together (the atlas's 1st..99th percentile clip and min-max scale over both sides),
binned into one grid with :func:`atlas_core.stages.grid.make_level`, and drawn with the exemplar renderer's
:func:`atlas_core.renderers.exemplar.patch`. The reducer comes from the registry (``umap`` by default); the core
imports no framework.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from ..metrics import trustworthiness
from ..renderers.exemplar import patch
from ..stages.grid import make_level
from ..stages.layout import normalize
from ..types import UsageError

METHODS = ("joint", "aligned-umap")
DEFAULT_METHOD = "joint"  # the more trustworthy on both sides in every measurement of docs/health.md
ICON_SIZE = 40
MIN_COUNT = 2
TRUST_K = 10


# -- the two mappings --------------------------------------------------------------------------------------
def cross_maps(a: np.ndarray, b: np.ndarray, ridge: float = 1e-6) -> tuple:
    """(A -> B, B -> A): each side's least-squares prediction of the other from the uncentred moments,
    ``A S11^-1 S12`` and ``B S22^-1 S21``, with ``ridge`` times the mean eigenvalue added to S11 and S22 (a
    dead channel makes them singular). Equal inputs map to themselves exactly (the least-squares prediction of
    A from A is A; the ridge would move it by rounding)."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    if a.shape == b.shape and np.array_equal(a, b):
        return a.astype(np.float32), b.astype(np.float32)
    n = len(a)
    s11, s22, s12 = a.T @ a / n, b.T @ b / n, a.T @ b / n

    def solve(s, rhs):
        lift = ridge * max(float(np.trace(s)) / len(s), 1e-12)
        return np.linalg.solve(s + lift * np.eye(len(s)), rhs)

    return (a @ solve(s11, s12)).astype(np.float32), (b @ solve(s22, s12.T)).astype(np.float32)


def _unit_scale(x: np.ndarray) -> np.ndarray:
    """``x`` divided by its mean row norm (cosines within the layer do not change)."""
    x = np.asarray(x, np.float32)
    norm = float(np.linalg.norm(x, axis=1).mean())
    return x / norm if norm > 0 else x


def _fit_unique(reducer, rows: np.ndarray) -> np.ndarray:
    """The reducer's layout of ``rows``, each distinct row fitted once (in order of first appearance)."""
    _, first, inverse = np.unique(rows, axis=0, return_index=True, return_inverse=True)
    order = np.argsort(first)
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    unique = rows[first[order]]
    if len(unique) < 3:
        raise UsageError(f"only {len(unique)} distinct samples to align: an aligned atlas needs at least 3")
    xy = np.asarray(reducer.fit_transform(unique), dtype=np.float64)
    return xy[rank[inverse.reshape(-1)]]


def _joint_normalized(ys: Sequence[np.ndarray]) -> list:
    """Layouts normalized together (one clip and scale for all), then split."""
    ys = [np.asarray(y, np.float64) for y in ys]
    both = np.concatenate(ys)
    bad = ~np.isfinite(both).all(axis=1)
    if bad.all():
        raise UsageError("the aligned layout has no finite positions")
    both[bad] = np.median(both[~bad], axis=0)  # disconnected samples (AlignedUMAP gives NaN) to the middle
    return np.split(normalize(both), len(ys))


def joint_layouts(reducer, a: np.ndarray, b: np.ndarray) -> tuple:
    """The reference's aligned layout: rows [A, A->B] and [B->A, B] in one fit; (layout of A, layout of B)."""
    a, b = _unit_scale(a), _unit_scale(b)
    a2b, b2a = cross_maps(a, b)
    rows = np.concatenate([np.hstack([a, a2b]), np.hstack([b2a, b])]).astype(np.float32)
    xy = _fit_unique(reducer, rows)
    la, lb = _joint_normalized([xy[:len(a)], xy[len(a):]])
    return la, lb


def aligned_umap_layouts(reducer, a: np.ndarray, b: np.ndarray) -> tuple:
    """umap-learn's AlignedUMAP through the reducer's ``fit_transform_aligned``; (layout of A, layout of B)."""
    ys = reducer.fit_transform_aligned([_unit_scale(a), _unit_scale(b)])
    if len(ys) != 2 or any(np.shape(y) != (len(a), 2) for y in ys):
        raise UsageError(f"the reducer's fit_transform_aligned returned shapes {[np.shape(y) for y in ys]}, "
                         f"expected two of {(len(a), 2)}")
    la, lb = _joint_normalized(ys)
    return la, lb


def plain_layout(reducer, x: np.ndarray) -> np.ndarray:
    """One layer's own atlas layout (the baseline the aligned ones are measured against)."""
    return normalize(_fit_unique(reducer, np.asarray(x, np.float32)))


def cells_of(layout: np.ndarray, grid: int) -> np.ndarray:
    """Row-major cell index j * grid + i of every sample (i: column from the left, j: row from the top)."""
    ij = np.clip(np.floor(np.asarray(layout) * grid).astype(np.int64), 0, grid - 1)
    return ij[:, 1] * grid + ij[:, 0]


def auto_grid(n: int) -> int:
    """About 8 samples per cell, between 4 and 20 cells a side."""
    return int(min(20, max(4, math.sqrt(n / 8))))


# -- the whole thing ----------------------------------------------------------------------------------------
def aligned_atlases(registry, a: np.ndarray, b: np.ndarray, names: Sequence[str], load_a, load_b, out: Path,
                    layer_a: str, layer_b: str, model_a: str, model_b: str, method: Optional[str] = None,
                    reducer: str = "umap", reducer_params: Optional[dict] = None, grid: Optional[int] = None,
                    min_count: int = MIN_COUNT, labels: Optional[Sequence] = None, icon_size: int = ICON_SIZE,
                    seed: int = 0, baseline: bool = True, where: Optional[Sequence] = None,
                    fields: Optional[tuple] = None) -> dict:
    """Both aligned layouts of ``a`` (layer ``layer_a``) and ``b`` (``layer_b``), rows being the same images
    ``names``; trustworthiness of each side of each against that layer's own activations (and of each layer's
    own plain layout where ``baseline``); the ``method`` layout (None: :data:`DEFAULT_METHOD`) binned and drawn.
    ``load_a(row)`` / ``load_b(row)`` give the image of a row at each model's input size (for the icons);
    ``where`` (a row's layer position (y, x), None: pooled samples, whole images) with ``fields`` (each layer's
    receptive field) cuts each icon as the exemplar renderer does.
    Writes OUT/aligned.json, aligned-a.png, aligned-b.png, aligned.png and aligned.html; returns the summary that
    compare.json keeps."""
    out = Path(out)
    method = DEFAULT_METHOD if method is None else str(method)
    if method not in METHODS:
        raise UsageError(f"--align-method must be one of {', '.join(METHODS)}; got {method!r}")
    a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
    n = len(a)
    if n < 4:
        raise UsageError(f"--align needs at least 4 images; got {n}")
    grid = auto_grid(n) if grid is None else int(grid)
    if grid < 1:
        raise UsageError(f"--align-grid must be a positive integer; got {grid}")

    def make():
        return registry.reducer(reducer, n_components=2, random_state=seed, **(reducer_params or {}))

    can_align = callable(getattr(make(), "fit_transform_aligned", None))
    if method == "aligned-umap" and not can_align:
        raise UsageError(f"--align-method aligned-umap needs a reducer with fit_transform_aligned (umap); "
                         f"{reducer!r} has none")
    layouts = {"joint": joint_layouts(make(), a, b)}
    if can_align:
        layouts["aligned-umap"] = aligned_umap_layouts(make(), a, b)
    measured = {}
    for name, (la, lb) in layouts.items():
        ca, cb = cells_of(la, grid), cells_of(lb, grid)
        measured[name] = {
            "trustworthiness_a": round(trustworthiness(a, la, k=TRUST_K, seed=seed), 4),
            "trustworthiness_b": round(trustworthiness(b, lb, k=TRUST_K, seed=seed), 4),
            "same_cell": round(float((ca == cb).mean()), 4),
            "mean_shift": round(float(np.linalg.norm(la - lb, axis=1).mean()), 4)}
    if not can_align:
        measured["aligned-umap"] = None
    plain = None
    if baseline:
        plain = {"trustworthiness_a": round(trustworthiness(a, plain_layout(make(), a), k=TRUST_K, seed=seed), 4),
                 "trustworthiness_b": round(trustworthiness(b, plain_layout(make(), b), k=TRUST_K, seed=seed), 4)}

    la, lb = layouts[method]
    icon_size = max(int(icon_size), 480 // grid)  # the mosaics at least 480 pixels a side
    label_sets = {"ground truth": list(labels)} if labels is not None else None
    sides = []
    for tag, acts, layout, load, layer, model, field in (
            ("a", a, la, load_a, layer_a, model_a, (fields or (None, None))[0]),
            ("b", b, lb, load_b, layer_b, model_b, (fields or (None, None))[1])):
        level = make_level(layout, acts, grid, max(1, int(min_count)), label_sets)
        icons = {}
        for cell in level.cells:
            top = int(cell.members[0])  # the member nearest the cell's direction (cosine), as exemplars pick
            y, x = (-1, -1) if where is None else where[top]
            icons[(cell.i, cell.j)] = patch(load(top), y, x, field, icon_size)
        mosaic = _mosaic(level, icons, grid, icon_size)
        mosaic.save(out / f"aligned-{tag}.png")
        sides.append({
            "model": model, "layer": layer, "image": f"aligned-{tag}.png",
            "positions": [[round(float(x), 4), round(float(y), 4)] for x, y in layout],
            "cell_of": cells_of(layout, grid).tolist(),
            "cells": [{"i": int(c.i), "j": int(c.j), "count": int(len(c.members)),
                       "ids": [int(m) for m in c.members], "exemplar": int(c.members[0]),
                       "labels": c.label_sets.get("ground truth", [])} for c in level.cells],
            "_mosaic": mosaic})
    summary = {"layer_a": layer_a, "layer_b": layer_b, "method": method, "reducer": reducer,
               "reducer_params": dict(reducer_params or {}), "images": n, "grid": grid, "min_count": int(min_count),
               "samples": ("one mean-pooled vector per image (as CKA and the kNN overlap)" if where is None else
                           "one random inner position per image, the same in both layers"),
               "trustworthiness_k": TRUST_K, "methods": measured, "plain": plain}
    report = {**summary, "names": list(map(str, names)), "labelled": labels is not None,
              "where": None if where is None else [[int(y), int(x)] for y, x in where],
              "sides": [{k: v for k, v in s.items() if k != "_mosaic"} for s in sides]}
    (out / "aligned.json").write_text(json.dumps(report, indent=None, separators=(",", ":")))
    from .draw import aligned_figure
    aligned_figure(report, [s["_mosaic"] for s in sides], out / "aligned.png")
    from .page import aligned_page
    aligned_page(report, out / "aligned.html")
    return summary


def _mosaic(level, icons: dict, grid: int, icon_size: int):
    from PIL import Image
    canvas = Image.new("RGB", (grid * icon_size, grid * icon_size), "white")
    for (i, j), icon in icons.items():
        canvas.paste(icon, (i * icon_size, j * icon_size))
    return canvas
