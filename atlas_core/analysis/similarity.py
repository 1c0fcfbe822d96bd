"""Representation similarity in numpy: minibatch linear CKA, its full-batch forms, and kNN measures.

- Linear CKA (Kornblith et al. 2019) from the unbiased HSIC estimator summed over minibatches (Nguyen et al.
  2021): memory depends on the minibatch, not on the number of images.
- ``knn_indices`` computes Euclidean neighbours in row blocks; ``knn_overlap`` is the Embedding Comparator's
  per-sample neighbourhood overlap; ``two_sample_accuracy`` is a kNN two-sample test (0.5: indistinguishable).
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

BLOCK = 1024  # rows of a distance block


# -- HSIC and CKA ----------------------------------------------------------------------------------------
def _grams(xs: Sequence[np.ndarray]) -> tuple:
    """Linear Gram matrices of the centred features with zeroed diagonals, flattened (L, m*m), their row sums
    (L, m) and totals (L,)."""
    flat, rows = [], []
    for x in xs:
        x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
        x = x - x.mean(axis=0)  # HSIC does not change; large offsets would cancel catastrophically in the sums
        k = x @ x.T
        np.fill_diagonal(k, 0.0)
        flat.append(k.ravel())
        rows.append(k.sum(axis=1))
    flat, rows = np.stack(flat), np.stack(rows)
    return flat, rows, rows.sum(axis=1)


def _hsic(ga: tuple, gb: tuple, m: int) -> np.ndarray:
    """Unbiased HSIC (Song et al. 2012) between every Gram of ``ga`` and every Gram of ``gb``: (La, Lb)."""
    fa, ra, ua = ga
    fb, rb, ub = gb
    return (fa @ fb.T + np.outer(ua, ub) / ((m - 1) * (m - 2)) - (2.0 / (m - 2)) * (ra @ rb.T)) / (m * (m - 3))


def _hsic_self(g: tuple, m: int) -> np.ndarray:
    f, r, u = g
    return ((f * f).sum(axis=1) + u * u / ((m - 1) * (m - 2)) - (2.0 / (m - 2)) * (r * r).sum(axis=1)) / (m * (m - 3))


class MinibatchCKA:
    """Linear CKA between ``n_a`` layers and ``n_b`` layers, accumulated minibatch by minibatch.

    ``update(xs_a, xs_b)`` takes one minibatch: a list of (m, features) arrays per layer, rows being the same m
    samples in both lists (m >= 4). Each minibatch's unbiased HSIC terms are summed, weighted by m; ``cka`` is
    ``HSIC(a, b) / sqrt(HSIC(a, a) HSIC(b, b))`` of the sums (NaN where a layer is constant).
    """

    MIN_BATCH = 4

    def __init__(self, n_a: int, n_b: int):
        self.hab = np.zeros((n_a, n_b))
        self.haa = np.zeros(n_a)
        self.hbb = np.zeros(n_b)
        self.samples = 0
        self.minibatches = 0

    def update(self, xs_a: Sequence[np.ndarray], xs_b: Optional[Sequence[np.ndarray]] = None) -> bool:
        """Add one minibatch (``xs_b`` None: B's layers are A's). False if it is too small to count."""
        m = len(xs_a[0])
        if m < self.MIN_BATCH:
            return False
        ga = _grams(xs_a)
        gb = ga if xs_b is None else _grams(xs_b)
        self.hab += m * _hsic(ga, gb, m)
        self.haa += m * _hsic_self(ga, m)
        self.hbb += m * _hsic_self(gb, m)
        self.samples += m
        self.minibatches += 1
        return True

    @property
    def cka(self) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            den = np.sqrt(np.outer(self.haa, self.hbb))
            out = self.hab / den
        out[~(np.outer(self.haa > 0, self.hbb > 0))] = np.nan
        return out


def hsic_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """The unbiased HSIC estimator with linear kernels on all rows at once."""
    m = len(x)
    return float(_hsic(_grams([x]), _grams([y]), m)[0, 0])


def cka_full(x: np.ndarray, y: np.ndarray, unbiased: bool = True) -> float:
    """Linear CKA of two (samples, features) arrays computed on all samples at once: with the unbiased HSIC
    (the estimator that the minibatch sum approximates), or Kornblith et al.'s plain centred form."""
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    y = np.asarray(y, dtype=np.float64).reshape(len(y), -1)
    if unbiased:
        hxy, hxx, hyy = hsic_unbiased(x, y), hsic_unbiased(x, x), hsic_unbiased(y, y)
        return float(hxy / np.sqrt(hxx * hyy)) if hxx > 0 and hyy > 0 else float("nan")
    x = x - x.mean(axis=0)
    y = y - y.mean(axis=0)
    den = np.linalg.norm(x.T @ x) * np.linalg.norm(y.T @ y)
    return float(np.linalg.norm(y.T @ x) ** 2 / den) if den > 0 else float("nan")


# -- neighbours -------------------------------------------------------------------------------------------
def knn_indices(x: np.ndarray, k: int, block: int = BLOCK) -> np.ndarray:
    """(n, k) indices of each row's k nearest other rows (Euclidean), computed ``block`` rows at a time."""
    x = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
    n = len(x)
    k = min(k, n - 1)
    sq = (x * x).sum(axis=1)
    out = np.empty((n, k), dtype=np.int64)
    for start in range(0, n, block):
        stop = min(n, start + block)
        d = sq[start:stop, None] + sq[None, :] - 2.0 * (x[start:stop] @ x.T)
        d[np.arange(stop - start), np.arange(start, stop)] = np.inf
        part = np.argpartition(d, k - 1, axis=1)[:, :k]
        order = np.argsort(np.take_along_axis(d, part, axis=1), axis=1, kind="stable")
        out[start:stop] = np.take_along_axis(part, order, axis=1)
    return out


def knn_overlap(x: np.ndarray, y: np.ndarray, k: int = 10) -> np.ndarray:
    """Per row, the share of its k nearest neighbours in ``x`` that are also among its k nearest in ``y``."""
    if len(x) != len(y):
        raise ValueError("x and y must hold the same samples")
    a, b = knn_indices(x, k), knn_indices(y, k)
    return (a[:, :, None] == b[:, None, :]).any(axis=2).mean(axis=1)


def two_sample_accuracy(a: np.ndarray, b: np.ndarray, k: int = 10, seed: int = 0) -> float:
    """kNN two-sample test (Schilling 1986): in the pooled, balanced samples, the share of each sample's k nearest
    neighbours (Euclidean, itself left out) that come from its own set, i.e. the accuracy of guessing a sample's
    set from one of its neighbours. 0.5: indistinguishable; 1: separable; below 0.5: closer across than within
    (shared images). Averaging over k neighbours makes it less noisy than a majority vote."""
    rng = np.random.default_rng(seed)
    n = min(len(a), len(b))
    if n < 2:
        return float("nan")
    a = np.asarray(a, dtype=np.float64).reshape(len(a), -1)
    b = np.asarray(b, dtype=np.float64).reshape(len(b), -1)
    a = a[rng.choice(len(a), n, replace=False)] if len(a) > n else a
    b = b[rng.choice(len(b), n, replace=False)] if len(b) > n else b
    x = np.concatenate([a, b])
    labels = np.repeat([0, 1], n)
    order = rng.permutation(2 * n)  # break ties between equal rows at random, not by set
    x, labels = x[order], labels[order]
    same = labels[knn_indices(x, max(1, min(k, 2 * n - 1)))] == labels[:, None]
    return float(same.mean())
