"""The ``umap`` reducer: umap-learn in scikit-learn style, with activation-atlas defaults."""

from __future__ import annotations

import warnings

import numpy as np

from atlas_core import UsageError
from atlas_core.reducers import is_int, param_names, validate_samples

EXACT_KNN_MAX = 20_000  # up to this many samples, neighbours are searched exactly (see knn.py)
KNN_CHOICES = ("auto", "exact", "approximate")
FIT_SAMPLES_AUTO = 100_000  # fit_samples="auto": a full fit up to this many samples, above it a subsample this big
TRANSFORM_CHUNK = 50_000    # samples placed per transform call (read from the memory map chunk by chunk)


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

    ``fit_samples`` is the strategy for large sets: UMAP is fitted on a seeded
    random subsample of that many samples and every other sample is placed by
    ``transform`` (its neighbours among the fitted ones, then umap's transform
    optimisation with the fitted layout held fixed), ``TRANSFORM_CHUNK``
    samples at a time, read from the (memory-mapped) input chunk by chunk.
    ``"auto"`` fits everything up to ``FIT_SAMPLES_AUTO`` (100,000) samples and
    a subsample of 100,000 above; ``None`` always fits everything; an integer
    fits a subsample of that size whenever there are more samples.
    """

    def __init__(self, n_components: int = 2, random_state=None, n_neighbors: int = 20,
                 min_dist: float = 0.01, metric: str = "cosine", n_epochs=None, knn: str = "auto",
                 verbose: bool = False, fit_samples="auto"):
        self.n_components = n_components
        self.random_state = random_state
        self.n_neighbors = n_neighbors
        self.min_dist = min_dist
        self.metric = metric
        self.n_epochs = n_epochs
        self.knn = knn
        self.verbose = verbose
        self.fit_samples = fit_samples

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
        if not (self.fit_samples is None or self.fit_samples == "auto" or
                (is_int(self.fit_samples) and self.fit_samples >= 2 * self.n_neighbors)):
            raise UsageError(f"umap: fit_samples must be 'auto', null or an integer >= 2 x n_neighbors "
                             f"({2 * self.n_neighbors}), got {self.fit_samples!r}")
        if not isinstance(X, np.ndarray) or X.ndim != 2 or self.fit_count(len(X)) >= len(X):
            return validate_samples(X, "umap")
        return X  # checked chunk by chunk as it is read

    def fit_count(self, n_samples: int) -> int:
        """How many of ``n_samples`` the model is fitted on (the rest are transformed)."""
        if self.fit_samples is None:
            return n_samples
        limit = FIT_SAMPLES_AUTO if self.fit_samples == "auto" else int(self.fit_samples)
        return min(n_samples, limit)

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
        n = len(X)
        m = self.fit_count(n)
        if m >= n:
            self.model_, self.embedding_ = self._fit_umap(X)
            self.fit_indices_ = None
            return self
        # a seeded subsample is fitted; the others are transformed, chunk by chunk from X (a memory map, say)
        rng = np.random.default_rng(0 if self.random_state is None else self.random_state)
        fitted = np.sort(rng.choice(n, size=m, replace=False))
        X_fit = validate_samples(np.asarray(X[fitted]), "umap")
        self.model_, fit_embedding = self._fit_umap(X_fit)
        embedding = np.empty((n, self.n_components), np.float32)
        embedding[fitted] = fit_embedding
        rest = np.setdiff1d(np.arange(n), fitted, assume_unique=True)
        for start in range(0, len(rest), TRANSFORM_CHUNK):
            ids = rest[start:start + TRANSFORM_CHUNK]
            chunk = validate_samples(np.asarray(X[ids[0]:ids[-1] + 1])[ids - ids[0]], "umap", min_samples=1)
            embedding[ids] = self._transform(X_fit, chunk, n_transformed=len(rest))
        self.embedding_ = embedding
        self.fit_indices_ = fitted
        return self

    def _fit_umap(self, X):
        """umap-learn fitted on ``X`` (float32, validated): (model, embedding)."""
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
        self.knn_method_ = method
        self.n_neighbors_ = n_neighbors
        return model, np.asarray(embedding, dtype=np.float32)

    def _transform(self, X_fit, Q, n_transformed: int) -> np.ndarray:
        """New samples ``Q`` placed into the fitted layout, as umap-learn's ``UMAP.transform`` does (0.5), with
        the neighbours from the model's search index or, where the fit used exact neighbours, found exactly
        among ``X_fit``; the epochs follow the whole transformed set's size, not the chunk's."""
        import scipy.sparse
        from umap.layouts import optimize_layout_euclidean
        from umap.umap_ import (compute_membership_strengths, init_graph_transform, make_epochs_per_sample,
                                smooth_knn_dist)
        model, k = self.model_, self.n_neighbors_
        index = getattr(model, "_knn_search_index", None)
        if index is not None:
            epsilon = 0.24 if index._angular_trees else 0.12
            indices, dists = index.query(Q, k, epsilon=epsilon)
        else:
            from .knn import exact_knn_query
            indices, dists = exact_knn_query(Q, X_fit, k, self.metric)
        dists = dists.astype(np.float32, order="C")
        indices = indices.copy()
        indices[dists >= model._disconnection_distance] = -1
        sigmas, rhos = smooth_knn_dist(dists, float(k), local_connectivity=float(max(0.0, model.local_connectivity - 1.0)))
        rows, cols, vals, _ = compute_membership_strengths(indices, dists, sigmas, rhos, bipartite=True)
        graph = scipy.sparse.coo_matrix((vals, (rows, cols)), shape=(len(Q), len(X_fit)))
        csr = graph.tocsr()
        csr.eliminate_zeros()
        embedding = init_graph_transform(csr, model.embedding_)
        n_epochs = (100 if n_transformed <= 10000 else 30) if self.n_epochs is None else int(self.n_epochs // 3.0)
        if n_epochs < 1 or graph.nnz == 0:
            return np.asarray(embedding, np.float32)
        graph.data[graph.data < (graph.data.max() / float(n_epochs))] = 0.0
        graph.eliminate_zeros()
        rng_state = np.random.RandomState(model.transform_seed).randint(np.iinfo(np.int32).min,
                                                                        np.iinfo(np.int32).max, 3).astype(np.int64)
        embedding = optimize_layout_euclidean(
            embedding, model.embedding_.astype(np.float32, copy=True), graph.row, graph.col, n_epochs,
            graph.shape[1], make_epochs_per_sample(graph.data, n_epochs), model._a, model._b, rng_state,
            model.repulsion_strength, model._initial_alpha / 4.0, model.negative_sample_rate,
            self.random_state is None, verbose=False)
        return np.asarray(embedding, np.float32)

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
