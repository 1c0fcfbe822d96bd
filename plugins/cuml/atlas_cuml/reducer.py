"""The ``cuml-umap`` reducer: RAPIDS cuML's GPU UMAP in scikit-learn style, with the ``umap`` reducer's
activation-atlas defaults (n_neighbors=20, min_dist=0.01, cosine)."""

from __future__ import annotations

import numpy as np

from atlas_core import UsageError
from atlas_core.reducers import is_int, param_names, validate_samples

INSTALL = "pip install 'actatlas-cuml[gpu]' (RAPIDS cuML for CUDA 12) on a machine with an NVIDIA GPU"
TRANSFORM_CHUNK = 200_000  # samples placed per transform call when fit_samples leaves some out


def import_cuml():
    """cuML's UMAP class, or a one-line UsageError saying what is missing."""
    try:
        from cuml.manifold import UMAP
    except ImportError as exc:
        raise UsageError(f"reducer cuml-umap needs RAPIDS cuML, which does not import here ({exc}); "
                         f"{INSTALL}, or use --reducer umap") from None
    except Exception as exc:  # cuML imports but CUDA does not start (no GPU, no driver)
        raise UsageError(f"reducer cuml-umap: cuML could not start CUDA ({type(exc).__name__}: "
                         f"{str(exc).splitlines()[0] if str(exc) else ''}); use --reducer umap") from None
    return UMAP


class CumlUMAPReducer:
    """UMAP on the GPU (cuML), as the ``umap`` reducer lays out an activation atlas on the CPU.

    ``fit_samples``: ``None`` (the default) fits every sample (a GPU fits a million in well under a minute);
    an integer fits a seeded random subsample of that many and places the others with cuML's ``transform``,
    ``TRANSFORM_CHUNK`` at a time, read from the (memory-mapped) input chunk by chunk. ``build_algo``: cuML's
    neighbour search ("auto", "brute_force_knn", "nn_descent"). The same ``random_state`` gives the same
    layout (cuML then runs a deterministic, slower optimisation).
    """

    def __init__(self, n_components: int = 2, random_state=None, n_neighbors: int = 20, min_dist: float = 0.01,
                 metric: str = "cosine", n_epochs=None, fit_samples=None, build_algo: str = "auto",
                 verbose: bool = False):
        self.n_components = n_components
        self.random_state = random_state
        self.n_neighbors = n_neighbors
        self.min_dist = min_dist
        self.metric = metric
        self.n_epochs = n_epochs
        self.fit_samples = fit_samples
        self.build_algo = build_algo
        self.verbose = verbose

    def get_params(self, deep: bool = True) -> dict:
        return {name: getattr(self, name) for name in param_names(type(self))}

    def _check(self) -> None:
        if not (is_int(self.n_components) and self.n_components >= 1):
            raise UsageError(f"cuml-umap: n_components must be a positive integer, got {self.n_components!r}")
        if not (is_int(self.n_neighbors) and self.n_neighbors >= 2):
            raise UsageError(f"cuml-umap: n_neighbors must be an integer >= 2, got {self.n_neighbors!r}")
        if not (isinstance(self.min_dist, (int, float)) and 0 <= self.min_dist <= 1):
            raise UsageError(f"cuml-umap: min_dist must be a number in [0, 1], got {self.min_dist!r}")
        if self.n_epochs is not None and not (is_int(self.n_epochs) and self.n_epochs >= 1):
            raise UsageError(f"cuml-umap: n_epochs must be a positive integer or None, got {self.n_epochs!r}")
        if self.fit_samples is not None and not (is_int(self.fit_samples) and self.fit_samples >= 2 * self.n_neighbors):
            raise UsageError(f"cuml-umap: fit_samples must be null or an integer >= 2 x n_neighbors, "
                             f"got {self.fit_samples!r}")
        if self.build_algo not in ("auto", "brute_force_knn", "nn_descent"):
            raise UsageError(f"cuml-umap: build_algo must be auto, brute_force_knn or nn_descent, "
                             f"got {self.build_algo!r}")
        if self.random_state is not None and not is_int(self.random_state):
            raise UsageError(f"cuml-umap: random_state must be an integer or None, got {self.random_state!r}")

    def fit(self, X, y=None):
        self._check()
        if not isinstance(X, np.ndarray) or X.ndim != 2:
            X = validate_samples(X, "cuml-umap")
        UMAP = import_cuml()
        n = len(X)
        m = n if self.fit_samples is None else min(n, int(self.fit_samples))
        params = dict(n_components=self.n_components, n_neighbors=min(self.n_neighbors, m - 1),
                      min_dist=self.min_dist, metric=self.metric, random_state=self.random_state,
                      build_algo=self.build_algo, output_type="numpy", verbose=self.verbose)
        if self.n_epochs is not None:
            params["n_epochs"] = self.n_epochs
        model = UMAP(**params)
        if m >= n:
            self.embedding_ = np.asarray(model.fit_transform(validate_samples(X, "cuml-umap")), np.float32)
            self.fit_indices_ = None
        else:
            rng = np.random.default_rng(0 if self.random_state is None else self.random_state)
            fitted = np.sort(rng.choice(n, size=m, replace=False))
            embedding = np.empty((n, self.n_components), np.float32)
            embedding[fitted] = np.asarray(model.fit_transform(validate_samples(np.asarray(X[fitted]), "cuml-umap")),
                                           np.float32)
            rest = np.setdiff1d(np.arange(n), fitted, assume_unique=True)
            for start in range(0, len(rest), TRANSFORM_CHUNK):
                ids = rest[start:start + TRANSFORM_CHUNK]
                chunk = validate_samples(np.asarray(X[ids[0]:ids[-1] + 1])[ids - ids[0]], "cuml-umap", min_samples=1)
                embedding[ids] = np.asarray(model.transform(chunk), np.float32)
            self.embedding_ = embedding
            self.fit_indices_ = fitted
        self.model_ = model
        return self

    def fit_transform(self, X, y=None) -> np.ndarray:
        return self.fit(X).embedding_
