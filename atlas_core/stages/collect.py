"""Collect: run images through the model and store samples of one layer, with provenance.

Per image, K random spatial positions (never on the border) or one vector pooled over space. Positions depend
only on (seed, image index), so a resumed run, or chunks collected in any order, give exactly what an
uninterrupted run would. A classifier output read in the same pass gives each image's top predicted classes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from ..images import BadImage
from ..labels import class_names
from ..progress import Progress
from ..store import SampleStore
from ..types import Layer, UsageError
from .state import BuildState, Stage

TOP_K = 5


def classifier_output(model, layer: str) -> Optional[Layer]:
    """The model's output Layer if it looks like class scores (a vector of 2+ entries), else None."""
    out = getattr(model, "output", None)
    if not out or out == layer:
        return None
    for candidate in model.layers():
        if candidate.name == out:
            shape = candidate.shape
            return candidate if shape is not None and len(shape) == 1 and shape[0] > 1 else None
    return None


def positions(seed: int, image: int, h: int, w: int, k: int) -> np.ndarray:
    """K distinct (y, x) positions, off the border where the map allows it."""
    rng = np.random.default_rng([seed, image])
    ys = np.arange(1, h - 1) if h >= 3 else np.array([h // 2])
    xs = np.arange(1, w - 1) if w >= 3 else np.array([w // 2])
    cells = len(ys) * len(xs)
    flat = rng.choice(cells, size=k, replace=k > cells)
    return np.stack([ys[flat // len(xs)], xs[flat % len(xs)]], axis=1)


def probabilities(logits: np.ndarray) -> np.ndarray:
    """Class probabilities: the rows as they are if they already are probabilities, else their softmax."""
    logits = logits.astype(np.float64)
    if np.all(logits >= 0) and np.allclose(logits.sum(1), 1, atol=1e-3):
        return logits
    z = np.exp(logits - logits.max(1, keepdims=True))
    return z / z.sum(1, keepdims=True)


def store_config(state: BuildState) -> dict:
    """What the samples depend on: the store's key."""
    c, m = state.config, state.model
    return {"model": m.identity, "layer": c.layer, "images": state.source.identity(), "n_images": len(state.source),
            "samples_per_image": c.samples_per_image, "pool": bool(c.pool), "seed": c.seed,
            "input": m.input_spec.identity(), "columns": [col.key() for col in state.columns.values()]}


@dataclass
class CollectTask:
    """Everything a worker needs to collect chunks of a store on its own, as plain data (it can be pickled and
    sent to another process or machine): how to open the model and the images, the layer, the build options
    that shape the samples, and which store to write into."""

    model: str
    backend: Optional[str]
    input_options: dict
    images: str
    layer: str
    config: dict
    store_root: str
    store_key: str
    columns: tuple = ()  # the per-sample columns the driver's stages add (``attribution``): the worker adds the same

    @classmethod
    def from_state(cls, state: BuildState) -> "CollectTask":
        origin = state.origin
        if not origin.get("model") or not origin.get("images"):
            raise UsageError("a collection executor other than local needs the model as a file or import path and "
                             "the images as a folder, a .npy file or a source name (not Python objects)")
        config = {k: v for k, v in vars(state.config).items() if k not in ("executor", "executor_options")}
        return cls(model=origin["model"], backend=origin.get("backend"), input_options=dict(origin.get("input") or {}),
                   images=origin["images"], layer=state.config.layer, config=config,
                   store_root=str(state.store.parent), store_key=state.store.key, columns=tuple(state.columns))

    def open(self) -> "Collector":
        return Collector(self)


class Collector:
    """A task opened in a worker: the model and the images opened once, then ``collect(k)`` per chunk."""

    def __init__(self, task: CollectTask):
        from ..images import as_source
        from ..models import open_model
        from ..plugins import get_registry
        from .attribution import AttributionStage
        from .reuse import Reuse
        from .state import BuildConfig, Log
        model = open_model(task.model, backend=task.backend, **task.input_options)
        layer = next(layer for layer in model.layers() if layer.name == task.layer)
        config = BuildConfig(**dict(task.config, quiet=True))
        state = BuildState(config=config, out=Path(task.store_root).parent, registry=get_registry(), model=model,
                           layer=layer, source=as_source(task.images), reuse=Reuse(Path(task.store_root).parent),
                           log=Log(True))
        if "attribution" in task.columns:
            AttributionStage().prepare(state)
        if set(state.columns) != set(task.columns):
            raise UsageError(f"a worker adds the per-sample columns {sorted(state.columns)}, the driver "
                             f"{sorted(task.columns)}: install the same plugins (and versions) on every worker")
        classifier = classifier_output(model, task.layer)
        state.output = classifier.name if classifier else None
        meta = json.loads((Path(task.store_root) / task.store_key / "meta.json").read_text())
        state.store = SampleStore(task.store_root, meta["config"], meta["n_images"], meta["chunk_images"])
        if state.store.key != task.store_key:
            raise UsageError("the worker's samples store key differs from the driver's")
        self.state = state

    def collect(self, k: int) -> int:
        """Collect and write chunk ``k``; returns the number of images it covers."""
        CollectStage().collect_chunk(self.state, k)
        start, end = self.state.store.chunk_range(k)
        return end - start


class LocalExecutor:
    """Executor ``local``: the chunks are collected in this process, one after the other, with the model the
    build already opened."""

    name = "local"
    options: dict = {}

    def collect(self, state: BuildState, chunks, progress) -> None:
        stage = CollectStage()
        for k in chunks:
            stage.collect_chunk(state, k, progress)


class CollectStage(Stage):
    """Fills the samples store (``store/<key>/``), chunk by missing chunk (by the chosen executor), and
    consolidates it."""

    name = "collect"

    def prepare(self, state: BuildState) -> None:
        c = state.config
        self.executor = state.registry.create("executors", c.executor)
        from ..options import route
        state.executor_options = route(c.executor_options, {c.executor: self.executor}, what="executor option")[
            c.executor]

    def run(self, state: BuildState) -> None:
        c, model, source = state.config, state.model, state.source
        if model.input_spec.size is None:
            raise UsageError("the model's input size is open: give --size (e.g. --size 224)")
        classifier = classifier_output(model, c.layer)
        state.output = classifier.name if classifier else None
        state.class_names = class_names(model, classifier.shape[0]) if classifier else []
        store = SampleStore(state.out / "store", store_config(state), len(source), c.chunk_images)
        state.store = store
        state.keys["samples"] = store.key
        missing = store.missing_chunks()
        state.log(f"collecting {c.layer} ({'pooled' if c.pool else f'{c.samples_per_image} per image'}) from "
                  f"{source.describe()} on {model.provider}")
        done = sum(store.chunk_range(k)[1] - store.chunk_range(k)[0] for k in range(store.n_chunks)
                   if k not in set(missing))
        bar = Progress("collect", len(source), quiet=c.quiet, initial=done)
        if missing:
            self.executor.collect(state, missing, bar.update)
        bar.close()
        if store.missing_chunks():
            raise UsageError(f"the {c.executor} executor left chunks {store.missing_chunks()[:5]} uncollected: rerun "
                             "atlas build to collect them")
        store.consolidate()
        if len(store) == 0:
            raise UsageError("no image could be decoded: nothing to atlas (see report.json)")

    def collect_chunk(self, state: BuildState, k: int, progress=None) -> None:
        """Collect and write chunk ``k`` of the store (any chunk, in any order)."""
        c, model, source, store = state.config, state.model, state.source, state.store
        start, end = store.chunk_range(k)
        size = model.input_spec.size
        wanted = [c.layer] + ([state.output] if state.output else [])
        acts, prov, skipped = [], [], []
        extra: dict = {name: [] for name in state.columns}
        preds = -np.ones((end - start, TOP_K), np.int32)
        probs = np.zeros((end - start, TOP_K), np.float32)
        for b0 in range(start, end, c.batch_size):
            ids, batch = [], []
            for i in range(b0, min(end, b0 + c.batch_size)):
                try:
                    batch.append(source.load(i, size))
                    ids.append(i)
                except BadImage as exc:
                    skipped.append([i, source.names[i], str(exc)])
            if batch:
                out = model.activations(np.stack(batch), wanted)
                finite = np.isfinite(out[c.layer].reshape(len(ids), -1)).all(axis=1)
                if not finite.all():  # a sample that is NaN or inf would break every reducer: skip its image
                    for i in np.asarray(ids)[~finite]:
                        skipped.append([int(i), source.names[i], "the model's activations for this image are not "
                                        "finite (NaN or infinite)"])
                    ids = [i for i, ok in zip(ids, finite) if ok]
                    out = {name: v[finite] for name, v in out.items()}
                    if not ids:
                        if progress:
                            progress(min(end, b0 + c.batch_size) - b0)
                        continue
                a = out[c.layer]
                ys = xs = None
                if a.ndim == 2 or c.pool:
                    for row, i in enumerate(ids):
                        acts.append((a[row] if a.ndim == 2 else a[row].mean(axis=(0, 1)))[None])
                        prov.append([[i, -1, -1]])
                else:
                    pos = np.stack([positions(c.seed, i, a.shape[1], a.shape[2], c.samples_per_image) for i in ids])
                    ys, xs = pos[..., 0], pos[..., 1]
                    for row, i in enumerate(ids):
                        acts.append(a[row, ys[row], xs[row], :])
                        prov.append(np.column_stack([np.full(len(pos[row]), i), pos[row]]))
                for name, produce in state.columns.items():
                    extra[name].append(produce(a, ys, xs))
                if state.output:
                    p = probabilities(out[state.output].reshape(len(ids), -1))
                    top = np.argsort(-p, axis=1)[:, :TOP_K]
                    rows = np.asarray(ids) - start
                    preds[rows, :top.shape[1]] = top
                    probs[rows, :top.shape[1]] = np.take_along_axis(p, top, axis=1)
            if progress:
                progress(min(end, b0 + c.batch_size) - b0)
        channels = acts[0].shape[1] if acts else (state.layer.shape or (0,))[-1] or 0
        columns = {"acts": np.concatenate(acts) if acts else np.zeros((0, channels), np.float32),
                   "prov": np.concatenate(prov).astype(np.int32) if prov else np.zeros((0, 3), np.int32),
                   "pred": preds, "prob": probs}
        for name, parts in extra.items():
            if parts:
                columns[name] = np.concatenate(parts)
        store.write_chunk(k, columns, skipped)
