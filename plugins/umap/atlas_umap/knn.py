"""Exact k-nearest neighbours by blocked matrix products (numpy, no numba).

UMAP's own neighbour search (pynndescent's ``nn_descent``) takes the distance
function as an argument; numba cannot cache such a function, so every new
process recompiles it (about 20 s). For the sample counts of most atlases the
exact search below is as fast as the warm approximate one and is exact.
"""

from __future__ import annotations

import numpy as np

METRICS = ("cosine", "euclidean")


def exact_knn(X: np.ndarray, k: int, metric: str = "cosine", block_elements: int = 1 << 23):
    """The ``k`` nearest neighbours of every row of ``X`` among all rows, itself first.

    Returns ``(indices int32 (n, k), distances float32 (n, k))`` sorted by distance;
    column 0 is the row itself at distance 0. Ties are broken by index, so the
    result is deterministic. Cosine distance of a zero row to any row is 1.
    Memory: about 12 bytes x ``block_elements`` beyond the inputs and outputs.
    """
    if metric not in METRICS:
        raise ValueError(f"exact_knn supports {METRICS}, not {metric!r}")
    X = np.asarray(X, dtype=np.float32)
    n = X.shape[0]
    if not 1 <= k <= n:
        raise ValueError(f"k must be in 1..{n}, got {k}")
    if metric == "cosine":
        norms = np.linalg.norm(X, axis=1, keepdims=True)
        Z = X / np.where(norms > 0, norms, 1).astype(np.float32)
    else:
        Z = X
        sq = np.einsum("ij,ij->i", X, X)
    block = max(1, min(n, block_elements // max(n, 1)))
    indices = np.empty((n, k), dtype=np.int32)
    distances = np.empty((n, k), dtype=np.float32)
    for start in range(0, n, block):
        stop = min(n, start + block)
        rows = np.arange(stop - start)
        D = Z[start:stop] @ Z.T  # in place from here: one block of n floats at a time
        if metric == "cosine":
            np.subtract(1.0, D, out=D)
        else:
            D *= -2.0
            D += sq[start:stop, None]
            D += sq[None, :]
        D[rows, rows + start] = -1.0  # the row itself comes first
        part = np.argpartition(D, k - 1, axis=1)[:, :k] if k < n else np.tile(np.arange(n), (len(rows), 1))
        d = np.take_along_axis(D, part, axis=1)
        order = np.lexsort((part, d), axis=1)  # by distance, then index
        indices[start:stop] = np.take_along_axis(part, order, axis=1)
        d = np.maximum(np.take_along_axis(d, order, axis=1), 0.0)
        distances[start:stop] = np.sqrt(d) if metric == "euclidean" else d
    return indices, distances


def exact_knn_query(Q: np.ndarray, X: np.ndarray, k: int, metric: str = "cosine", block_elements: int = 1 << 23):
    """The ``k`` nearest rows of ``X`` to every row of ``Q`` (new points: no row is excluded).

    Returns ``(indices int32 (m, k), distances float32 (m, k))`` sorted by distance, ties by index.
    """
    if metric not in METRICS:
        raise ValueError(f"exact_knn_query supports {METRICS}, not {metric!r}")
    Q, X = np.asarray(Q, dtype=np.float32), np.asarray(X, dtype=np.float32)
    n = X.shape[0]
    if not 1 <= k <= n:
        raise ValueError(f"k must be in 1..{n}, got {k}")

    def unit(A):
        norms = np.linalg.norm(A, axis=1, keepdims=True)
        return A / np.where(norms > 0, norms, 1).astype(np.float32)

    Z = unit(X) if metric == "cosine" else X
    P = unit(Q) if metric == "cosine" else Q
    sq = np.einsum("ij,ij->i", X, X) if metric == "euclidean" else None
    block = max(1, min(len(Q), block_elements // max(n, 1)))
    indices = np.empty((len(Q), k), dtype=np.int32)
    distances = np.empty((len(Q), k), dtype=np.float32)
    for start in range(0, len(Q), block):
        stop = min(len(Q), start + block)
        D = P[start:stop] @ Z.T
        if metric == "cosine":
            np.subtract(1.0, D, out=D)
        else:
            D *= -2.0
            D += np.einsum("ij,ij->i", Q[start:stop], Q[start:stop])[:, None]
            D += sq[None, :]
        part = np.argpartition(D, k - 1, axis=1)[:, :k] if k < n else np.tile(np.arange(n), (stop - start, 1))
        d = np.take_along_axis(D, part, axis=1)
        order = np.lexsort((part, d), axis=1)
        indices[start:stop] = np.take_along_axis(part, order, axis=1)
        d = np.maximum(np.take_along_axis(d, order, axis=1), 0.0)
        distances[start:stop] = np.sqrt(d) if metric == "euclidean" else d
    return indices, distances
