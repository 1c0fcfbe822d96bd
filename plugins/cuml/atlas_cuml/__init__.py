"""GPU UMAP reducer plugin for actatlas (registered as ``cuml-umap``).

Importing this package imports nothing heavy; RAPIDS cuML (and CUDA with it) is imported by
:meth:`atlas_cuml.reducer.CumlUMAPReducer.fit_transform`. Without cuML the reducer is still listed, and choosing
it is a one-line error.
"""

__version__ = "0.1.0"
