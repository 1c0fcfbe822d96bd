"""Atlases derived from a built atlas's samples, without collecting again: a selection of its samples becomes
the samples store of a new atlas folder, and the later stages run on it as in any build."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from ..atlas import Atlas
from ..stages.attribution import COLUMN
from ..stages.state import BuildState, Stage
from ..store import SampleStore, fingerprint
from ..types import UsageError


class StoredAttribution:
    """Attribution that is already in the store (a derived atlas): what the manifest says about it."""

    name = COLUMN
    samples = 0

    def __init__(self, target: str):
        self.target = target


class Parent:
    """A built atlas opened to derive others from: its manifest, samples store, class names and attribution."""

    def __init__(self, path, need_attribution: bool = True):
        self.atlas = Atlas(path)
        self.manifest = self.atlas.manifest
        self.store = self.atlas.store()
        classes = self.manifest.get("classes")
        self.class_names = json.loads((self.atlas.path / classes).read_text()) if classes else []
        if not self.class_names:
            raise UsageError(f"{path} was built from a model without class scores: this needs a classifier")
        info = self.manifest.get("attribution")
        has = bool(info) and COLUMN in self.store.columns()
        if need_attribution and not has:
            raise UsageError(f"{path} has no attribution: rebuild it with --attribution (needs a classifier and the "
                             "JAX plugin for gradients)")
        self.target = info["target"] if has else self._output()
        self.attribution = self.store.column(COLUMN) if has else None

    def _output(self) -> str:
        """The classifier output the atlas read its predictions from (its model's output)."""
        return self.open_model().output

    def ground_truth(self) -> Optional[list]:
        """The ground-truth label of each image, if the atlas was built with labels."""
        rel = self.manifest.get("ground_truth")
        return json.loads((self.atlas.path / rel).read_text()) if rel else None

    def open_model(self, model=None, backend: Optional[str] = None, **input_options):
        """The atlas's model, opened as it was built (or ``model`` instead)."""
        from ..models import as_model
        origin = self.manifest.get("origin") or {}
        source = model if model is not None else origin.get("model")
        if source is None:
            raise UsageError("the atlas was built from a model object: give the model (--model FILE)")
        options = dict(origin.get("input") or {}) if model is None else {}
        options.update({k: v for k, v in input_options.items() if v is not None})
        return as_model(source, backend=backend or (origin.get("backend") if model is None else None), **options)

    def open_images(self, images=None):
        """The atlas's image source (or ``images`` instead): the same images, in the same order."""
        from ..images import as_source
        spec = images if images is not None else (self.manifest.get("origin") or {}).get("images")
        if spec is None:
            raise UsageError("the atlas was built from images in memory: give them again (--images)")
        source = as_source(spec)
        if list(source.names) != json.loads((self.atlas.path / self.manifest["images"]).read_text()):
            raise UsageError(f"the images of {spec!r} are not the ones the atlas was built from (names differ)")
        return source


class SelectStage(Stage):
    """Fills the new atlas's samples store with the ``ids`` samples of ``parent`` (all their columns)."""

    name = "select"

    def __init__(self, parent: Parent, ids: np.ndarray):
        self.parent, self.ids = parent, np.asarray(ids, np.int64)

    def run(self, state: BuildState) -> None:
        parent, ids = self.parent, self.ids
        if len(ids) < 3:
            raise UsageError(f"only {len(ids)} samples were selected: too few for an atlas")
        n_images = parent.manifest["n_images"]
        config = {"parent": parent.store.key, "samples": fingerprint(ids.tolist()), "n_images": n_images}
        store = SampleStore(state.out / "store", config, n_images=n_images, chunk_images=max(1, n_images))
        if store.missing_chunks():
            predictions = parent.store.predictions()
            top_k = max((len(v) for v in predictions["classes"].values()), default=1)
            pred = -np.ones((n_images, top_k), np.int32)
            prob = np.zeros((n_images, top_k), np.float32)
            for k, classes in predictions["classes"].items():
                pred[int(k), :len(classes)] = classes
                prob[int(k), :len(classes)] = predictions["probabilities"][k]
            columns = {name: np.asarray(parent.store.column(name)[ids]) for name in parent.store.columns()}
            columns.update(pred=pred, prob=prob)
            store.write_chunk(0, columns, [])
        store.consolidate()
        state.store = store
        state.keys["samples"] = store.key
        state.class_names = parent.class_names
        state.output = parent.target
        state.attribution = StoredAttribution(parent.target)
        state.log(f"{len(ids)} samples of {parent.atlas.path} ({parent.manifest['n_samples']} in all)")


def derive(parent: Parent, ids: Sequence[int], out, *, model=None, images=None, layout_stage=None,
           extra: Optional[dict] = None, backend=None, input_options: Optional[dict] = None, **options):
    """Build an atlas into ``out`` from samples ``ids`` of ``parent``: select, lay out (``layout_stage``, default
    the reducer), grid, icons, quality, export. ``extra`` is added to atlas.json. Returns the build's state."""
    from ..stages import STAGES, run_build
    from ..stages.layout import LayoutStage
    from ..stages.state import BuildConfig
    m = parent.open_model(model, backend, **(input_options or {}))
    source = parent.open_images(images)
    layer = parent.manifest["layer"]
    config = BuildConfig(layer=layer, pool=_pooled(parent), **options)
    later = [s for s in STAGES if s.__name__ not in ("CollectStage", "AttributionStage")]
    stages = [SelectStage(parent, np.asarray(ids)), *(layout_stage or LayoutStage(),)] + \
        [s for s in later if s is not LayoutStage]
    origin = dict(parent.manifest.get("origin") or {}, parent=str(parent.atlas.path.resolve()))
    if model is not None:
        origin["model"] = str(Path(model).resolve()) if Path(str(model)).exists() else str(model)
    return run_build(m, source, config, out, labels=parent.ground_truth(), stages=stages, origin=origin,
                     extra=extra)


def _pooled(parent: Parent) -> bool:
    prov = parent.store.provenance()
    return bool(len(prov) and (prov[:, 1] < 0).all())


