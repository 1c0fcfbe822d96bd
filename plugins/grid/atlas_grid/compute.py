"""The numbers of an activation grid, per layer: magnitudes, the class attribution map, the attribution from one
layer to the next, and neuron groups. Gradients come from the model's gradient capability (numpy in and out)."""

from __future__ import annotations

from typing import Optional

import numpy as np


def magnitude(acts: np.ndarray) -> np.ndarray:
    """‖h‖ at every position of an H x W x C map."""
    return np.linalg.norm(np.asarray(acts, np.float64), axis=-1).astype(np.float32)


def class_map(grads, layer: str, output: str, acts: np.ndarray, c: int, n_classes: int,
              relax_maxpool: bool = True) -> np.ndarray:
    """Σ over channels of a ⊙ ∂logit_c/∂a at every position (H x W): how much each position adds to the class's
    logit, to first order (one VJP)."""
    x = np.asarray(acts, np.float32)[None]
    onehot = np.zeros((1, n_classes), np.float32)
    onehot[0, c] = 1.0
    g = grads.vjp(layer, output, x, onehot, relax_maxpool=relax_maxpool)[0]
    return np.sum(x[0] * g, axis=-1).astype(np.float32)


def flow(grads, earlier: str, later: str, acts_earlier: np.ndarray, acts_later: np.ndarray,
         chunk: int = 64) -> np.ndarray:
    """Layer-to-layer attribution: for every position q of the later layer, Σ over channels of
    a1 ⊙ ∂‖a2[q]‖/∂a1 at every position p of the earlier one. Returns (H2 * W2, H1 * W1) float32."""
    a1 = np.asarray(acts_earlier, np.float32)[None]
    a2 = np.asarray(acts_later, np.float32)
    h2, w2, c2 = a2.shape
    norms = np.linalg.norm(a2, axis=-1)
    rows = []
    for start in range(0, h2 * w2, chunk):
        qs = np.arange(start, min(h2 * w2, start + chunk))
        cot = np.zeros((1, len(qs), h2, w2, c2), np.float32)
        ys, xs = qs // w2, qs % w2
        # ∂‖a2[q]‖/∂a2 is a2[q]/‖a2[q]‖ at q and zero elsewhere
        cot[0, np.arange(len(qs)), ys, xs] = a2[ys, xs] / np.maximum(norms[ys, xs], 1e-12)[:, None]
        g = grads.vjp(earlier, later, a1, cot)[0]  # K x H1 x W1 x C1
        rows.append(np.sum(g * a1[0][None], axis=-1).reshape(len(qs), -1))
    return np.concatenate(rows).astype(np.float32)


def groups(acts: np.ndarray, k: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Neuron groups: NMF (scikit-learn) of the positive part of the H x W x C map into ``k`` groups. Returns
    (maps: k x H x W, directions: k x C)."""
    from sklearn.decomposition import NMF
    h, w, c = acts.shape
    X = np.maximum(np.asarray(acts, np.float64).reshape(h * w, c), 0)
    k = max(1, min(k, c, h * w))
    model = NMF(n_components=k, init="nndsvda", random_state=seed, max_iter=500)
    weights = model.fit_transform(X)
    return weights.T.reshape(k, h, w).astype(np.float32), model.components_.astype(np.float32)


def nearest(vectors: np.ndarray, directions: np.ndarray, block: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """For each row of ``vectors``, the row of ``directions`` with the highest cosine, and that cosine."""
    v = np.asarray(vectors, np.float64)
    v = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
    best = np.full(len(v), -1, np.int64)
    score = np.full(len(v), -np.inf)
    for s in range(0, len(directions), block):
        d = np.asarray(directions[s:s + block], np.float64)
        d = d / np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-12)
        cos = v @ d.T
        k = cos.argmax(1)
        better = cos[np.arange(len(v)), k] > score
        best[better] = s + k[better]
        score[better] = cos[np.arange(len(v)), k][better]
    return best, score.astype(np.float32)


def top_class(probabilities: np.ndarray) -> Optional[int]:
    return int(np.argmax(probabilities)) if probabilities is not None and len(probabilities) else None
