"""Entry point ``cuml`` of the group ``atlas_core``: registers the ``cuml-umap`` reducer.

Registration imports neither cuML nor CUDA (checked by the tests); whether cuML is installed is looked up
without importing it, for the description ``atlas plugins`` shows.
"""

from __future__ import annotations

import importlib.util

import atlas_core


def cuml_installed() -> bool:
    try:
        return importlib.util.find_spec("cuml") is not None
    except (ImportError, ValueError):
        return False


def _cuml_umap(**params):
    from atlas_core.reducers import build_estimator

    from .reducer import CumlUMAPReducer
    return build_estimator(CumlUMAPReducer, "cuml-umap", params)


@atlas_core.hookimpl
def atlas_register_reducers(register):
    state = "installed" if cuml_installed() else "cuML is not installed: pip install 'actatlas-cuml[gpu]'"
    register("cuml-umap", _cuml_umap,
             description=f"UMAP on a CUDA GPU (RAPIDS cuML), cosine, n_neighbors=20, min_dist=0.01 ({state})")
