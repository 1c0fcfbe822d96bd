"""UMAP reducer plugin for actatlas (registered as ``umap``).

Importing this package imports nothing heavy; umap-learn and numba are imported
by :meth:`atlas_umap.reducer.UMAPReducer.fit_transform` through
:func:`atlas_umap.compile.prepare`, which points numba at a persistent cache.
"""

__version__ = "0.1.0"
