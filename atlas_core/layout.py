"""Lay out: reduce samples to 2-D and normalize as the reference does."""

from __future__ import annotations

import numpy as np

from .types import UsageError


def normalize(xy: np.ndarray, low: float = 1.0, high: float = 99.0, margin: float = 0.1) -> np.ndarray:
    """Clip each axis to its [low, high] percentiles widened by ``margin`` of that range, then scale to [0, 1]."""
    xy = np.asarray(xy, dtype=np.float64)
    lo, hi = np.percentile(xy, low, axis=0), np.percentile(xy, high, axis=0)
    span = hi - lo
    lo, hi = lo - margin * span, hi + margin * span
    clipped = np.clip(xy, lo, hi)
    cmin, cmax = clipped.min(axis=0), clipped.max(axis=0)
    out = (clipped - cmin) / np.where(cmax > cmin, cmax - cmin, 1.0)
    return out.astype(np.float32)


def reduce(registry, name: str, acts: np.ndarray, seed: int, params: dict) -> np.ndarray:
    """Fit reducer ``name`` on ``acts``; returns the raw (n, 2) layout."""
    if len(acts) < 3:
        raise UsageError(f"only {len(acts)} samples were collected: an atlas needs at least 3")
    try:
        estimator = registry.reducer(name, n_components=2, random_state=seed, **params)
    except TypeError as exc:
        raise UsageError(f"bad parameter for reducer {name!r}: {exc}") from None
    xy = np.asarray(estimator.fit_transform(np.asarray(acts, dtype=np.float32)), dtype=np.float32)
    if xy.shape != (len(acts), 2) or not np.isfinite(xy).all():
        raise UsageError(f"reducer {name!r} returned a layout of shape {xy.shape} with non-finite values"
                         if xy.shape == (len(acts), 2) else
                         f"reducer {name!r} returned shape {xy.shape}, expected {(len(acts), 2)}")
    return xy
