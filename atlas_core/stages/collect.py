"""Collect: run images through the model and store samples of one layer, with provenance.

Per image, K random spatial positions (never on the border) or one vector pooled over space. Positions depend
only on (seed, image index), so a resumed run, or chunks collected in any order, give exactly what an
uninterrupted run would. A classifier output read in the same pass gives each image's top predicted classes.
"""

from __future__ import annotations

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


class CollectStage(Stage):
    """Fills the samples store (``store/<key>/``), chunk by missing chunk, and consolidates it."""

    name = "collect"

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
        for k in missing:
            self.collect_chunk(state, k, bar.update)
        bar.close()
        store.consolidate()
        store.prune_others()
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
