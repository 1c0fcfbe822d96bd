"""Entry point ``umap`` of the group ``atlas_core``: registers the ``umap`` reducer.

Registration imports neither umap-learn nor numba (checked by the tests).
"""

from __future__ import annotations

import atlas_core


def _umap(**params):
    from atlas_core.reducers import build_estimator

    from .reducer import UMAPReducer
    return build_estimator(UMAPReducer, "umap", params)


@atlas_core.hookimpl
def atlas_register_reducers(register):
    register("umap", _umap,
             description="UMAP (umap-learn), cosine, n_neighbors=20, min_dist=0.01 (Carter et al.'s notebook)")
