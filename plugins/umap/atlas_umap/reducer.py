"""The ``umap`` reducer: umap-learn in scikit-learn style, with activation-atlas defaults."""

from __future__ import annotations

import warnings

import numpy as np

from atlas_core import UsageError
from atlas_core.reducers import is_int, param_names, validate_samples

EXACT_KNN_MAX = 20_000  # up to this many samples, neighbours are searched exactly (see knn.py)
KNN_CHOICES = ("auto", "exact", "approximate")


class UMAPReducer:
    """UMAP on raw activations, as Carter et al. lay out an activation atlas.

    Defaults are the reference notebook's (n_neighbors=20, min_dist=0.01,
    metric="cosine"); the production atlas used 50 and 0.05 on a million
    samples. ``knn`` picks the neighbour search: ``"exact"`` (blocked matrix
    products, no per-process compilation; cosine or euclidean), ``"approximate"``
    (umap's pynndescent) or ``"auto"`` (exact up to ``EXACT_KNN_MAX`` samples).
    ``n_epochs=None`` keeps umap's default (500 up to 10,000 samples, else 200).
    The same ``random_state`` gives the same layout (umap then runs its
    optimisation on one thread).
    """

    def __init__(self, n_components: int = 2, random_state=None, n_neighbors: int = 20,
                 min_dist: float = 0.01, metric: str = "cosine", n_epochs=None, knn: str = "auto",
                 verbose: bool = False):
        self.n_components = n_components
        self.random_state = random_state
        self.n_neighbors = n_neighbors
        self.min_dist = min_dist
        self.metric = metric
        self.n_epochs = n_epochs
        self.knn = knn
        self.verbose = verbose

    def get_params(self, deep: bool = True) -> dict:
        return {name: getattr(self, name) for name in param_names(type(self))}

    def _validate(self, X) -> np.ndarray:
        if not (is_int(self.n_components) and self.n_components >= 1):
            raise UsageError(f"umap: n_components must be a positive integer, got {self.n_components!r}")
        if not (is_int(self.n_neighbors) and self.n_neighbors >= 2):
            raise UsageError(f"umap: n_neighbors must be an integer >= 2, got {self.n_neighbors!r}")
        if not (isinstance(self.min_dist, (int, float)) and 0 <= self.min_dist <= 1):
            raise UsageError(f"umap: min_dist must be a number in [0, 1], got {self.min_dist!r}")
        if self.n_epochs is not None and not (is_int(self.n_epochs) and self.n_epochs >= 1):
            raise UsageError(f"umap: n_epochs must be a positive integer or None, got {self.n_epochs!r}")
        if self.knn not in KNN_CHOICES:
            raise UsageError(f"umap: knn must be one of {', '.join(KNN_CHOICES)}, got {self.knn!r}")
        if self.random_state is not None and not is_int(self.random_state):
            raise UsageError(f"umap: random_state must be an integer or None, got {self.random_state!r}")
        return validate_samples(X, "umap")

    def _knn_method(self, n_samples: int) -> str:
        from .knn import METRICS
        if self.knn == "exact":
            if self.metric not in METRICS:
                raise UsageError(f"umap: knn='exact' supports metric {' or '.join(METRICS)}, not {self.metric!r}")
            return "exact"
        if self.knn == "auto" and self.metric in METRICS and n_samples <= EXACT_KNN_MAX:
            return "exact"
        return "approximate"

    def fit(self, X, y=None):
        X = self._validate(X)
        from .compile import prepare
        umap = prepare()
        from umap.distances import named_distances
        if not isinstance(self.metric, str) or self.metric not in named_distances:
            import difflib
            near = difflib.get_close_matches(str(self.metric), list(named_distances), n=3)
            hint = f" (did you mean {', '.join(near)}?)" if near else ""
            raise UsageError(f"umap: unknown metric {self.metric!r}{hint}")
        n_neighbors = min(self.n_neighbors, X.shape[0] - 1)
        method = self._knn_method(X.shape[0])
        params = dict(n_components=self.n_components, n_neighbors=n_neighbors, min_dist=self.min_dist,
                      metric=self.metric, n_epochs=self.n_epochs, random_state=self.random_state,
                      verbose=self.verbose)
        if method == "exact":
            from .knn import exact_knn
            indices, distances = exact_knn(X, n_neighbors, self.metric)
            params["precomputed_knn"] = (indices, distances, None)
        with warnings.catch_warnings():
            # expected: no search index with precomputed neighbours; one thread with a random_state
            warnings.filterwarnings("ignore", message=".*knn_search_index", category=UserWarning)
            warnings.filterwarnings("ignore", message="n_jobs value", category=UserWarning)
            warnings.filterwarnings("ignore", message=".*n_neighbors is larger", category=UserWarning)
            model = umap.UMAP(**params)
            embedding = model.fit_transform(X)
        self.embedding_ = np.asarray(embedding, dtype=np.float32)
        self.knn_method_ = method
        self.n_neighbors_ = n_neighbors
        return self

    def fit_transform(self, X, y=None) -> np.ndarray:
        return self.fit(X).embedding_

    def fit_transform_aligned(self, Xs) -> list:
        """One layout per set of ``Xs`` (row i is the same sample in every set), aligned by umap-learn's
        ``AlignedUMAP`` with the identity relation between consecutive sets and this reducer's n_neighbors,
        min_dist, metric and random_state (``n_epochs=None``: AlignedUMAP's 200). Neighbours are umap's own
        search (exact below 4,096 samples). A sample that UMAP leaves disconnected comes back as NaN."""
        if not isinstance(Xs, (list, tuple)) or len(Xs) < 2:
            raise UsageError("umap: fit_transform_aligned takes a list of at least two sample sets")
        Xs = [self._validate(X) for X in Xs]
        n = Xs[0].shape[0]
        if any(X.shape[0] != n for X in Xs):
            raise UsageError(f"umap: aligned sets must hold the same samples; got {[X.shape[0] for X in Xs]} rows")
        from .compile import prepare
        prepare()
        from umap.aligned_umap import AlignedUMAP
        identity = {i: i for i in range(n)}
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="n_jobs value", category=UserWarning)
            warnings.filterwarnings("ignore", message=".*n_neighbors is larger", category=UserWarning)
            model = AlignedUMAP(n_components=self.n_components, n_neighbors=min(self.n_neighbors, n - 1),
                                min_dist=self.min_dist, metric=self.metric, n_epochs=self.n_epochs,
                                random_state=self.random_state, verbose=self.verbose)
            model.fit(list(Xs), relations=[identity] * (len(Xs) - 1))
        self.embeddings_ = [np.asarray(e, dtype=np.float32) for e in model.embeddings_]
        return self.embeddings_
