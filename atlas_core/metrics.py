"""Quality measures of an atlas: layout trustworthiness, kNN label agreement, icon fidelity."""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from .images import resize


def _unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def cosines(acts: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """Cosine of every row of ``acts`` with ``direction``."""
    return _unit(acts) @ _unit(direction)


def centre_vector(act: np.ndarray) -> np.ndarray:
    """The activation vector at the centre position of NHWC activations (NC passes through)."""
    if act.ndim == 4:
        return act[:, act.shape[1] // 2, act.shape[2] // 2, :]
    return act


def icon_fidelity(model, layer: str, icons: Sequence, directions: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """Cosine between each cell's direction and what its icon produces at the layer's centre.

    Each icon (PIL image or float HWC array in [0, 1]) is resized to the model's
    input size and run through the model; the layer's activation at the centre
    position is compared with the direction.
    """
    size = model.input_spec.size
    arrays = [np.asarray(icon, dtype=np.float32) / (255.0 if not isinstance(icon, np.ndarray) else 1.0)
              for icon in icons]
    if size is None:
        size = arrays[0].shape[:2] if arrays else None
    out = []
    for start in range(0, len(arrays), batch_size):
        batch = np.stack([resize(a[..., :3], size) for a in arrays[start:start + batch_size]])
        act = model.activations(batch, [layer])[layer]
        out.append(centre_vector(act))
    if not out:
        return np.zeros(0, dtype=np.float32)
    produced = np.concatenate(out)
    return np.sum(_unit(produced) * _unit(directions), axis=1).astype(np.float32)


def trustworthiness(X: np.ndarray, Y: np.ndarray, k: int = 10, max_samples: int = 1000, seed: int = 0) -> float:
    """Trustworthiness (Venna & Kaski) of layout Y for data X, on a subsample, cosine in X."""
    rng = np.random.default_rng(seed)
    n = len(X)
    idx = rng.choice(n, size=min(n, max_samples), replace=False) if n > max_samples else np.arange(n)
    X, Y = _unit(X[idx]), np.asarray(Y[idx], dtype=np.float64)
    n = len(X)
    k = min(k, (n - 1) // 2) if n > 3 else 0
    if k < 1:
        return float("nan")
    dx = 1 - X @ X.T
    dy = ((Y[:, None, :] - Y[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(dx, np.inf)
    np.fill_diagonal(dy, np.inf)
    rank_x = np.argsort(np.argsort(dx, axis=1), axis=1)  # 0 = nearest
    nn_y = np.argsort(dy, axis=1)[:, :k]
    r = np.take_along_axis(rank_x, nn_y, axis=1) + 1
    penalty = np.clip(r - k, 0, None).sum()
    return float(1 - 2.0 / (n * k * (2 * n - 3 * k - 1)) * penalty)


def knn_agreement(Z: np.ndarray, labels: Sequence, k: int = 10, metric: str = "euclidean",
                  max_samples: int = 2000, seed: int = 0) -> Optional[float]:
    """Leave-one-out kNN accuracy: how often a sample's k neighbours vote for its own label."""
    labels = np.asarray(labels)
    if len(set(labels.tolist())) < 2:
        return None
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(Z), size=min(len(Z), max_samples), replace=False) if len(Z) > max_samples \
        else np.arange(len(Z))
    Z, labels = np.asarray(Z[idx], dtype=np.float64), labels[idx]
    if metric == "cosine":
        U = _unit(Z)
        d = 1 - U @ U.T
    else:
        d = ((Z[:, None, :] - Z[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    k = min(k, len(Z) - 1)
    nn = np.argsort(d, axis=1)[:, :k]
    _, codes = np.unique(labels, return_inverse=True)
    votes = codes[nn]
    pred = np.array([np.bincount(v, minlength=codes.max() + 1).argmax() for v in votes])
    return float((pred == codes).mean())
