"""The built-in reducer: PCA (numpy, eigenvectors of the covariance), with a deterministic sign."""

from __future__ import annotations

import numpy as np


class PCA:
    """Principal components, scikit-learn style.

    Each component's sign is fixed so that its largest-magnitude loading is
    positive, so the same data always gives the same layout.
    """

    def __init__(self, n_components: int = 2, random_state=None):
        self.n_components = n_components
        self.random_state = random_state  # accepted for a common interface; PCA is deterministic

    def fit(self, X, y=None):
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[0] < 2:
            raise ValueError("PCA needs a 2-D array with at least 2 samples")
        self.mean_ = X.mean(axis=0)
        centred = X - self.mean_
        # eigenvectors of the (features x features) covariance: far cheaper than an SVD of the data
        cov = centred.T @ centred / (X.shape[0] - 1)
        var, vecs = np.linalg.eigh(cov)
        order = np.argsort(var)[::-1]
        var, vecs = np.clip(var[order], 0, None), vecs[:, order]
        k = min(self.n_components, vecs.shape[1])
        comps = vecs[:, :k].T
        signs = np.sign(comps[np.arange(k), np.abs(comps).argmax(axis=1)])
        signs[signs == 0] = 1
        self.components_ = comps * signs[:, None]
        self.explained_variance_ratio_ = var[:k] / var.sum() if var.sum() > 0 else np.zeros(k)
        return self

    def transform(self, X):
        out = (np.asarray(X, dtype=np.float64) - self.mean_) @ self.components_.T
        if out.shape[1] < self.n_components:  # fewer features than components: pad with zeros
            out = np.pad(out, ((0, 0), (0, self.n_components - out.shape[1])))
        return out.astype(np.float32)

    def fit_transform(self, X, y=None):
        return self.fit(X).transform(X)


# -- helpers for reducer plugins -------------------------------------------------
def is_int(value) -> bool:
    """An integer, numpy's included, but not a bool."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def param_names(estimator_class) -> list[str]:
    """The hyperparameters of a scikit-learn style estimator: its ``__init__`` arguments."""
    import inspect
    return [p for p in inspect.signature(estimator_class.__init__).parameters if p != "self"]


def build_estimator(estimator_class, name: str, params: dict):
    """``estimator_class(**params)``, or a one-line UsageError naming an unknown parameter and the known ones."""
    from .types import UsageError
    known = param_names(estimator_class)
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise UsageError(f"unknown parameter {', '.join(map(repr, unknown))} for reducer {name}; "
                         f"known: {', '.join(known)}")
    return estimator_class(**params)


def validate_samples(X, name: str, min_samples: int = 4) -> np.ndarray:
    """Samples as a contiguous float32 (samples x channels) array; one-line UsageErrors otherwise."""
    from .types import UsageError
    X = np.asarray(X, dtype=np.float32)
    if X.ndim != 2:
        raise UsageError(f"{name}: samples must be a 2-D array (samples x channels), got shape {X.shape}")
    if X.shape[0] < min_samples:
        raise UsageError(f"{name} needs at least {min_samples} samples, got {X.shape[0]}; "
                         "collect more or use --reducer pca")
    if not np.isfinite(X).all():
        raise UsageError(f"{name}: the samples contain NaN or infinite values")
    return np.ascontiguousarray(X)
