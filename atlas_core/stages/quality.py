"""Quality: how far the layout and the icons can be trusted (trustworthiness, kNN label agreement, fidelity)."""

from __future__ import annotations

import numpy as np

from ..metrics import knn_agreement, trustworthiness
from .state import BuildState, Stage


class QualityStage(Stage):
    name = "quality"

    def run(self, state: BuildState) -> None:
        c = state.config
        acts = np.asarray(state.store.activations())
        quality = {"trustworthiness": trustworthiness(acts, state.layout, seed=c.seed),
                   "label_source": state.label_source}
        labels = state.sample_labels
        if labels is not None:
            known = np.array([lab is not None for lab in labels])
            if known.sum() > 10:
                labs = np.array([lab for lab in labels if lab is not None], dtype=object)
                quality["knn_2d"] = knn_agreement(state.layout[known], labs, seed=c.seed)
                quality["knn_full"] = knn_agreement(acts[known], labs, metric="cosine", seed=c.seed)
        quality["fidelity_median"] = {
            name: float(np.median([cell.fidelity[name] for level in state.levels for cell in level.cells]))
            for name in state.renderers}
        state.quality = quality
