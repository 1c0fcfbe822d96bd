"""Class atlases and two-class comparisons: atlases of the samples that push a model towards a class, made
from a built atlas's samples and their attribution without collecting again (REFERENCE.md section 5)."""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from ..atlas import Atlas
from ..types import UsageError
from .comparison import ComparisonLayoutStage
from .derive import Parent, derive
from .filters import resolve_class, select, strongest_classes

CLASS_ATLAS = dict(reducer="umap", reducer_params={"n_neighbors": 20, "min_dist": 0.01, "metric": "cosine"},
                   levels=(8,), min_count=4)
COMPARISON = dict(reducer="tsne", reducer_params={"metric": "cosine"}, levels=(10,), min_count=4)


def _settings(defaults: dict, options: dict) -> dict:
    """The command's defaults overridden by what was given; another reducer drops the default's parameters."""
    given = {k: v for k, v in options.items() if v is not None}
    settings = {**defaults, **given}
    if given.get("reducer", defaults["reducer"]) != defaults["reducer"] and "reducer_params" not in given:
        settings["reducer_params"] = {}
    return settings


def _samples(parent: Parent, c: int, how: str, top_n: int) -> np.ndarray:
    ids = select(parent.attribution, c, how, top_n)
    if len(ids) < 3:
        best = ", ".join(f"{name} ({n})" for name, n in strongest_classes(parent.attribution, parent.class_names))
        raise UsageError(f"class {parent.class_names[c]!r} has only {len(ids)} samples by filter {how!r} in this "
                         f"atlas; classes that win the most samples: {best}")
    return ids


def class_atlas(atlas, class_name, out, *, filter: str = "both", top_n: int = 2000, model=None, images=None,
                **options) -> Atlas:
    """The class atlas of ``class_name`` (name or index) from the atlas folder ``atlas`` into ``out``: the samples
    whose top attribution is the class (``winner``), the ``top_n`` with the largest positive attribution to it
    (``top``), or both; laid out and drawn as any atlas (UMAP 20 / 0.01 cosine, grid 8, count 4 by default)."""
    parent = Parent(atlas)
    c = resolve_class(class_name, parent.class_names)
    ids = _samples(parent, c, filter, top_n)
    settings = _settings(CLASS_ATLAS, options)
    info = {"class": {"index": c, "name": parent.class_names[c], "filter": filter, "top_n": top_n,
                      "n_samples": int(len(ids))}}
    state = derive(parent, ids, out, model=model, images=images, extra=info, **settings)
    return Atlas(state.out)


def compare_classes(atlas, classes: Sequence, out, *, filter: str = "both", top_n: int = 2000, model=None,
                    images=None, **options) -> Atlas:
    """The two-class comparison of classes A, B (names or indices) from the atlas folder ``atlas`` into ``out``:
    the samples of both classes' filters, x = attribution(B) - attribution(A) scaled by its 99th percentile and
    clipped to [-1, 1] (A on the left, B on the right), y a 1-D t-SNE (cosine); grid 10, count 4 by default."""
    if len(classes) != 2:
        raise UsageError(f"--classes takes two classes, A,B; got {len(classes)}")
    parent = Parent(atlas)
    a, b = (resolve_class(name, parent.class_names) for name in classes)
    if a == b:
        raise UsageError("--classes names the same class twice")
    ids = np.union1d(_samples(parent, a, filter, top_n), _samples(parent, b, filter, top_n))
    settings = _settings(COMPARISON, options)
    names = parent.class_names
    info = {"axis": {"x": {"left": names[a], "right": names[b],
                           "meaning": f"attribution to {names[b]} minus attribution to {names[a]}, scaled by its "
                                      "99th percentile of |x| and clipped to [-1, 1]"}},
            "comparison": {"a": {"index": a, "name": names[a]}, "b": {"index": b, "name": names[b]},
                        "filter": filter, "top_n": top_n, "n_samples": int(len(ids))}}
    state = derive(parent, ids, out, model=model, images=images, layout_stage=ComparisonLayoutStage(a, b),
                   extra=info, **settings)
    return Atlas(state.out)


__all__ = ["class_atlas", "compare_classes", "resolve_class", "select"]
