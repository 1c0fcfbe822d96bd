"""The ``tsne`` reducer: openTSNE in scikit-learn style, with the reference's perplexity 50 and cosine."""

from __future__ import annotations

import numpy as np

from atlas_core import UsageError
from atlas_core.reducers import is_int, param_names, validate_samples

# metrics openTSNE serves with Annoy (>= 1,000 samples) and scikit-learn (fewer): no numba compilation
METRICS = ("cosine", "euclidean", "manhattan")


class TSNEReducer:
    """t-SNE of raw activations (openTSNE: Barnes-Hut below 10,000 samples, FFT above).

    ``perplexity`` is lowered to ``(n_samples - 1) / 3`` for small sets (kept in
    ``perplexity_``). With a ``random_state`` the fit runs on one thread, because
    openTSNE's multi-threaded gradient sums are not reproducible; ``n_jobs``
    applies only when ``random_state`` is None.
    """

    def __init__(self, n_components: int = 2, random_state=None, perplexity: float = 50.0,
                 metric: str = "cosine", n_iter: int = 500, n_jobs: int = 1, verbose: bool = False):
        self.n_components = n_components
        self.random_state = random_state
        self.perplexity = perplexity
        self.metric = metric
        self.n_iter = n_iter
        self.n_jobs = n_jobs
        self.verbose = verbose

    def get_params(self, deep: bool = True) -> dict:
        return {name: getattr(self, name) for name in param_names(type(self))}

    def _validate(self, X) -> np.ndarray:
        if self.n_components not in (1, 2) or isinstance(self.n_components, bool):
            raise UsageError(f"tsne: n_components must be 1 or 2, got {self.n_components!r}")
        if isinstance(self.perplexity, bool) or not isinstance(self.perplexity, (int, float)) \
                or not self.perplexity > 0:
            raise UsageError(f"tsne: perplexity must be a positive number, got {self.perplexity!r}")
        if self.metric not in METRICS:
            raise UsageError(f"tsne: metric must be one of {', '.join(METRICS)}, got {self.metric!r}")
        if not (is_int(self.n_iter) and self.n_iter >= 1):
            raise UsageError(f"tsne: n_iter must be a positive integer, got {self.n_iter!r}")
        if not (is_int(self.n_jobs) and (self.n_jobs >= 1 or self.n_jobs == -1)):
            raise UsageError(f"tsne: n_jobs must be a positive integer or -1, got {self.n_jobs!r}")
        if self.random_state is not None and not is_int(self.random_state):
            raise UsageError(f"tsne: random_state must be an integer or None, got {self.random_state!r}")
        return validate_samples(X, "tsne")

    def fit(self, X, y=None):
        X = self._validate(X)
        import openTSNE
        perplexity = float(min(self.perplexity, (X.shape[0] - 1) / 3))
        n_jobs = 1 if self.random_state is not None else self.n_jobs
        model = openTSNE.TSNE(n_components=self.n_components, perplexity=perplexity, metric=self.metric,
                              n_iter=self.n_iter, n_jobs=n_jobs, random_state=self.random_state,
                              negative_gradient_method="fft" if self.n_components == 1 else "auto",
                              verbose=self.verbose)
        self.embedding_ = np.asarray(model.fit(X), dtype=np.float32)
        self.perplexity_ = perplexity
        return self

    def fit_transform(self, X, y=None) -> np.ndarray:
        return self.fit(X).embedding_
