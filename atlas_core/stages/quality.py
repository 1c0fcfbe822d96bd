"""Quality: how far the layout and the icons can be trusted (trustworthiness, kNN label agreement, fidelity)."""

from __future__ import annotations

import numpy as np

from ..metrics import knn_agreement, trustworthiness
from .state import BuildState, Stage


class QualityStage(Stage):
    name = "quality"

    def run(self, state: BuildState) -> None:
        c = state.config
        acts = state.store.activations()  # memory-mapped: the measures read their subsamples' rows only
        quality = {"trustworthiness": trustworthiness(acts, state.layout, seed=c.seed),
                   "label_source": state.quality_label_source}
        labels = state.quality_labels
        if labels is not None:
            known = np.array([lab is not None for lab in labels])
            if known.sum() > 10:
                labs = np.array([lab for lab in labels if lab is not None], dtype=object)
                quality["knn_2d"] = knn_agreement(state.layout[known], labs, seed=c.seed)
                quality["knn_full"] = knn_agreement(acts if known.all() else np.asarray(acts)[known], labs,
                                                    metric="cosine", seed=c.seed)
        if state.ground_truth is not None:
            quality["label_agreement"] = label_agreement(state)
        quality["fidelity_median"] = {
            name: float(np.median([cell.fidelity[name] for level in state.levels for cell in level.cells]))
            for name in state.renderers}
        state.quality = quality


def label_agreement(state: BuildState) -> dict:
    """How well each label source's cell labels agree with the ground truth, at the default level: group the
    samples by the label their cell shows, and count the samples whose ground truth is the most common one in
    their group (purity; 1 when every label names one ground-truth class)."""
    from collections import Counter, defaultdict
    level = state.levels[state.default_level]
    truth = [state.ground_truth[i] for i in state.store.provenance()[:, 0]]
    out = {}
    for source in state.label_sources:
        if source == "ground truth":
            continue
        groups: dict = defaultdict(Counter)
        for cell in level.cells:
            labels = cell.label_sets.get(source)
            if labels:
                for m in cell.members:
                    if truth[m] is not None:
                        groups[labels[0][0]][truth[m]] += 1
        total = sum(sum(g.values()) for g in groups.values())
        out[source] = round(sum(max(g.values()) for g in groups.values()) / total, 4) if total else None
    return out
