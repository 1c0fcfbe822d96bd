"""The two-class comparison's layout: x is how much more a sample pushes towards class B than towards class A,
y a 1-D embedding of the activations, so that each side of the page holds what one class owes its score to."""

from __future__ import annotations

import numpy as np

from ..stages.layout import LayoutStage, normalize, reduce
from ..stages.reuse import key


def comparison_x(attribution: np.ndarray, a: int, b: int) -> np.ndarray:
    """attribution(B) - attribution(A), divided by the 99th percentile of its absolute value, clipped to [-1, 1]."""
    x = np.asarray(attribution[:, b], np.float64) - np.asarray(attribution[:, a], np.float64)
    scale = np.percentile(np.abs(x), 99)
    return np.clip(x / (scale if scale > 0 else 1.0), -1, 1)


class ComparisonLayoutStage(LayoutStage):
    """x from the two classes' attribution (A at the left, B at the right), y from a 1-D reducer (t-SNE, cosine,
    by default): ``layout.raw.npy`` holds (x in [-1, 1], raw y); ``layout.npy`` maps x to [0, 1] as it is and
    normalizes y as any layout."""

    name = "layout"

    def __init__(self, a: int, b: int):
        self.a, self.b = a, b

    def run(self, state) -> None:
        c = state.config
        k = key("comparison", state.keys["samples"], self.a, self.b, c.reducer, c.reducer_params, c.seed)
        state.keys["layout"] = k

        def fit():
            x = comparison_x(state.store.column("attribution"), self.a, self.b)
            y = reduce(state.registry, c.reducer, state.store.activations(), c.seed, c.reducer_params,
                       n_components=1)
            return np.column_stack([x, y[:, 0]]).astype(np.float32)

        raw, _ = state.reuse.array("layout.raw.npy", k, fit)
        state.layout = np.column_stack([(raw[:, 0] + 1) / 2, normalize(raw[:, 1:])[:, 0]]).astype(np.float32)
