"""Entry point ``tsne`` of the group ``atlas_core``: registers the ``tsne`` reducer (imports no framework)."""

from __future__ import annotations

import atlas_core


def _tsne(**params):
    from atlas_core.reducers import build_estimator

    from .reducer import TSNEReducer
    return build_estimator(TSNEReducer, "tsne", params)


@atlas_core.hookimpl
def atlas_register_reducers(register):
    register("tsne", _tsne, description="t-SNE (openTSNE), perplexity 50, cosine (Carter et al.'s alternative)")
