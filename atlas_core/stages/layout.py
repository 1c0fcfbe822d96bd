"""Lay out: reduce samples to 2-D and normalize as the reference does."""

from __future__ import annotations

import numpy as np

from ..progress import Progress
from ..types import UsageError
from .reuse import key
from .state import Stage


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


def reduce(registry, name: str, acts: np.ndarray, seed: int, params: dict, n_components: int = 2) -> np.ndarray:
    """Fit reducer ``name`` on ``acts``; returns the raw (n, n_components) layout."""
    if len(acts) < 3:
        raise UsageError(f"only {len(acts)} samples were collected: an atlas needs at least 3")
    estimator = registry.reducer(name, n_components=n_components, random_state=seed, **params)
    xy = np.asarray(estimator.fit_transform(np.asarray(acts, dtype=np.float32)), dtype=np.float32)
    want = (len(acts), n_components)
    if xy.shape != want or not np.isfinite(xy).all():
        raise UsageError(f"reducer {name!r} returned a layout of shape {xy.shape} with non-finite values"
                         if xy.shape == want else f"reducer {name!r} returned shape {xy.shape}, expected {want}")
    return xy


class LayoutStage(Stage):
    """Fits the reducer on the samples (``layout.raw.npy``, reused while the samples, the reducer and its
    parameters and the seed are the same) and normalizes the result (``state.layout``; the manifest writes it as
    ``layout.npy``)."""

    name = "layout"

    def run(self, state) -> None:
        c = state.config
        k = key("layout", state.keys["samples"], c.reducer, c.reducer_params, c.seed)
        state.keys["layout"] = k
        acts = state.store.activations()

        marker = state.out / ".layout-fitting"

        def fit():
            if marker.exists():
                state.log(f"note: the last {c.reducer} fit was interrupted; a fit cannot resume, so it starts over")
            marker.touch()
            bar = Progress("reduce", 1, quiet=c.quiet)
            xy = reduce(state.registry, c.reducer, acts, c.seed, c.reducer_params)
            bar.update(1)
            bar.close()
            marker.unlink(missing_ok=True)
            return xy

        raw, reused = state.reuse.array("layout.raw.npy", k, fit)
        if reused:
            state.log(f"layout: reusing {c.reducer} layout of {len(raw)} samples")
        state.layout = normalize(raw)
