"""``atlas build``: images to a finished atlas, as a short loop over stages.

Each stage owns its artifacts in the atlas folder and the reuse key that says when they can be reused
(:mod:`atlas_core.stages.reuse`, the one reuse policy):

======== ================================================ =====================================
stage    writes                                           reused while the same
======== ================================================ =====================================
collect  ``store/<key>/`` (chunks, then one column each)  model identity, layer, images, positions, seed
attrib.  the store's ``attribution`` column, collected too  (part of the store's key: on or off, target)
layout   ``layout.raw.npy``, ``layout.npy``               samples, reducer and its parameters, seed
grid     (levels in memory)                               (cheap: made every run)
icons    ``icons/<renderer>/<grid>/``, ``fidelity.json``  level, renderer options, icon size, seed, model
quality  (numbers in memory)                              (cheap: made every run)
export   atlas.json and its arrays, atlas.png, index.html (written every run, by the exporters)
======== ================================================ =====================================

What the atlas shows is written into a staging folder and published all at once (:mod:`.publish`); one build at
a time holds the folder's lock.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional, Sequence

from ..images import as_source
from ..labels import read_labels
from ..plugins import get_registry
from ..store import atomic_write_text
from ..types import UsageError
from .attribution import AttributionStage
from .collect import CollectStage
from .export import ExportStage
from .grid import GridStage
from .icons import IconsStage
from .layout import LayoutStage
from .publish import Lock, Publication
from .quality import QualityStage
from .reuse import Reuse
from .state import DEFAULT_LEVELS, BuildConfig, BuildState, Log

STAGES = (CollectStage, AttributionStage, LayoutStage, GridStage, IconsStage, QualityStage, ExportStage)


def open_layer(model, name: str):
    """The Layer called ``name``, resolved once; an unknown name is the backend's own error (with suggestions)."""
    for layer in model.layers():
        if layer.name == name:
            return layer
    import numpy as np
    model.activations(np.zeros((1, *(model.input_spec.size or (32, 32)), 3), np.float32), [name])
    raise UsageError(f"unknown layer {name!r}; list them with: atlas layers MODEL")


def check(config: BuildConfig) -> None:
    """One-line errors for impossible options, before the model is opened."""
    if config.samples_per_image < 1:
        raise UsageError("--samples-per-image must be at least 1")
    if config.min_count < 1:
        raise UsageError("--min-count must be at least 1")
    if not config.levels or min(config.levels) < 1:
        raise UsageError(f"grid sizes must be positive integers, got {list(config.levels)}")
    if config.batch_size < 1 or config.chunk_images < 1 or config.icon_size < 8:
        raise UsageError("--batch-size and --chunk-images must be at least 1, --icon-size at least 8")


def run_build(model, images, config: BuildConfig, out, *, labels=None, registry=None,
              stages: Sequence = STAGES, origin: Optional[dict] = None, extra: Optional[dict] = None) -> BuildState:
    """Run ``stages`` (default: all) for ``config`` into folder ``out``; returns the build's state."""
    from ..models import as_model
    registry = registry or get_registry()
    check(config)
    out = Path(out)
    source = as_source(images)
    if not len(source):
        raise UsageError("the image source is empty")
    stages = [stage() if isinstance(stage, type) else stage for stage in stages]  # classes or made stages

    def has(cls) -> bool:
        return any(isinstance(stage, cls) for stage in stages)

    # fail early on unknown names, before the model is opened
    if has(LayoutStage):
        registry.get("reducers", config.reducer)
    for name in config.icons if has(IconsStage) else ():
        registry.get("renderers", name)
    for name in (config.exporters or ()) if has(ExportStage) else ():
        registry.get("exporters", name)
    m = as_model(model, registry=registry)
    layer = open_layer(m, config.layer)
    log = Log(config.quiet)
    if layer.shape is not None and len(layer.shape) == 1 and not config.pool:
        log(f"note: layer {config.layer!r} has no spatial dimensions ({layer.shape[0]} values): "
            "one sample per image (pooled)")
        config.pool = True
    ground_truth = read_labels(labels, source) if isinstance(labels, (str, Path)) else labels
    out.mkdir(parents=True, exist_ok=True)
    with Lock(out):
        publication = Publication(out)
        publication.recover()
        state = BuildState(config=config, out=out, registry=registry, model=m, layer=layer, source=source,
                           reuse=Reuse(out), log=log, ground_truth=ground_truth,
                           origin=dict({"images": _spec(images)}, **(origin or {})), extra=dict(extra or {}),
                           publication=publication)
        for stage in stages:
            stage.prepare(state)
        publication.begin()
        try:
            for stage in stages:
                with state.timed(stage.name):
                    stage.run(state)
            if not has(ExportStage):
                publication.recover()  # nothing to publish: drop the staging folder
                return state
            skipped = state.store.predictions().get("skipped", [])
            report = {"skipped": [{"image": i, "name": n, "error": e} for i, n, e in skipped],
                      "unreadable_folders": [{"folder": f, "error": e} for f, e in getattr(source, "unreadable", [])],
                      "timings": state.timings, "n_images": len(source), "n_samples": int(len(state.store))}
            atomic_write_text(state.staging / "report.json", json.dumps(report, indent=1))
        except BaseException:
            publication.recover()  # a failed build publishes nothing and leaves no staging behind
            raise
        publication.commit()
        state.store.prune_others()  # the samples of earlier configurations go once this atlas is published
    _summary(state, skipped)
    return state


def build(model, images, layer: str, out, **options):
    """Build an atlas of ``layer`` into folder ``out`` and return it as an :class:`atlas_core.atlas.Atlas`.

    ``model``: a model file, an import path, a framework object, or an opened Model.
    ``images``: a folder, a ``.npy`` file, a registered source name (``"demo"``), an array, a list of arrays,
    or an ImageSource. ``labels``: a CSV path (file,label) or a list with one label per image.
    ``options``: the fields of :class:`atlas_core.stages.state.BuildConfig` (``reducer``, ``icons``,
    ``levels``, ...), plus ``backend`` and ``input_options`` (a dict of the model input options).
    """
    from ..atlas import Atlas
    return Atlas(build_state(model, images, layer, out, **options).out)


def build_state(model, images, layer: str, out, *, labels=None, registry=None, stages: Sequence = STAGES,
                **options) -> BuildState:
    """:func:`build`, returning the build's state (the objects the exporters get) instead of the folder;
    ``stages`` runs only those (``stages=[CollectStage]`` fills the samples store and stops)."""
    backend = options.pop("backend", None)
    input_options = options.pop("input_options", None) or {}
    fields = set(BuildConfig.__dataclass_fields__)
    unknown = sorted(set(options) - fields)
    if unknown:
        raise UsageError(f"unknown build option {', '.join(unknown)}; known: {', '.join(sorted(fields - {'layer'}))}")
    for name in ("icons", "levels", "exporters"):
        if options.get(name) is not None:
            options[name] = tuple(options[name])
    options["reducer_params"] = dict(options.get("reducer_params") or {})
    options["icon_options"] = dict(options.get("icon_options") or {})
    config = BuildConfig(layer=layer, **options)
    from ..models import as_model
    origin = {"model": _spec(model), "backend": backend,
              "input": {k: v for k, v in input_options.items() if v is not None and k not in ("threads", "device")}}
    model = as_model(model, backend=backend, registry=registry, **input_options)
    return run_build(model, images, config, out, labels=labels, registry=registry, stages=stages, origin=origin)


def _spec(thing) -> Optional[str]:
    """A model or image source given as text, as it can be opened again later: an existing path made absolute,
    other text (an import path, a registered name) as it is; None for an object."""
    if not isinstance(thing, (str, Path)):
        return None
    path = Path(thing)
    return str(path.resolve()) if path.exists() else str(thing)


def _summary(state: BuildState, skipped) -> None:
    if state.config.quiet:
        return
    q = state.quality
    parts = [f"trustworthiness {q['trustworthiness']:.3f}"]
    if q.get("knn_2d") is not None:
        parts.append(f"kNN label agreement 2-D {q['knn_2d']:.3f} vs full {q['knn_full']:.3f} ({q['label_source']})")
    for name, value in q["fidelity_median"].items():
        parts.append(f"{name} fidelity {value:.3f}")
    print("quality: " + "; ".join(parts))
    if skipped:
        print(f"skipped {len(skipped)} images that could not be used (listed in {state.out / 'report.json'})")
    unread = getattr(state.source, "unreadable", [])
    if unread:
        print(f"skipped {len(unread)} folders that could not be read ({unread[0][0]}: {unread[0][1]}; listed in "
              f"{state.out / 'report.json'})")
    print("times: " + ", ".join(f"{k} {v:.1f}s" for k, v in state.timings.items()) +
          f"; total {sum(state.timings.values()):.1f}s")
    print(f"atlas written to {state.out.resolve()} (atlas.png, index.html, atlas.json)")


__all__ = ["build", "build_state", "run_build", "BuildConfig", "BuildState", "STAGES", "DEFAULT_LEVELS", "open_layer"]
