"""One pass of a model over an image source with many layers tapped at once, in bounded memory.

Shared by ``atlas health`` and ``atlas compare``: choosing layers, decoding images in batches (images that
cannot be decoded are skipped and counted), and handing out each layer's values with its channel axis.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass, field
from typing import Iterator, Optional, Sequence

import numpy as np

from ..images import BadImage
from ..types import UsageError

MAX_BATCH_BYTES = 512 * 2 ** 20  # activations of all tapped layers held at once, at most (one image at least)


def choose_layers(model, layers=None) -> list:
    """The model's :class:`Layer` objects for ``None``/``"all"`` (every layer), a comma-separated string or a
    list of names; an unknown name raises :class:`UsageError` naming the closest ones."""
    known = list(model.layers())
    name = getattr(model, "name", "MODEL")
    if not known:
        raise UsageError(f"{name} has no layers that can be tapped")
    if layers is None or (isinstance(layers, str) and layers.strip() == "all"):
        return known
    names = [s.strip() for s in layers.split(",")] if isinstance(layers, str) else [str(s) for s in layers]
    names = [s for s in names if s]
    if not names:
        raise UsageError("name at least one layer (comma-separated) or 'all'; list them with: atlas layers MODEL")
    by_name = {layer.name: layer for layer in known}
    for n in names:
        if n not in by_name:
            near = difflib.get_close_matches(n, list(by_name), n=3, cutoff=0.5)
            hint = f" (closest: {', '.join(near)})" if near else ""
            raise UsageError(f"unknown layer {n!r} in {name}{hint}; list them with: atlas layers {name}")
    return [by_name[n] for n in dict.fromkeys(names)]


def per_image_bytes(layers: Sequence) -> int:
    """float32 bytes of all ``layers`` for one image (open sizes counted as 1)."""
    return sum(4 * int(np.prod([d or 1 for d in (layer.shape or (1,))])) for layer in layers)


def forward_batch(layers: Sequence, batch_size: int) -> int:
    """Images per forward call: ``batch_size``, fewer where all layers together would pass MAX_BATCH_BYTES."""
    return max(1, min(int(batch_size or 32), MAX_BATCH_BYTES // max(1, per_image_bytes(layers))))


@dataclass
class Batch:
    indices: list  # positions in the source
    names: list
    images: np.ndarray  # float32 NHWC in [0, 1]


@dataclass
class Decoder:
    """Decodes a source's images in batches at one size; ``skipped`` collects (name, reason)."""

    source: object
    size: Optional[tuple] = None
    skipped: list = field(default_factory=list)

    def batches(self, batch_size: int, indices: Optional[Sequence[int]] = None) -> Iterator[Batch]:
        todo = range(len(self.source)) if indices is None else indices
        idx: list = []
        names: list = []
        images: list = []
        for i in todo:
            try:
                image = self.source.load(i, self.size) if self.size else self.source.load(i)
            except BadImage as exc:
                self.skipped.append((self.source.names[i], str(exc)))
                continue
            if self.size is None:  # a model that takes any size: every image at the first one's size
                self.size = tuple(image.shape[:2])
            idx.append(i)
            names.append(self.source.names[i])
            images.append(image)
            if len(images) == batch_size:
                yield Batch(idx, names, np.stack(images))
                idx, names, images = [], [], []
        if images:
            yield Batch(idx, names, np.stack(images))


def check_source(source, what: str = "--images") -> None:
    if source is None or not len(source):
        raise UsageError(f"{what}: no images to run (give a folder of images, a .npy file or 'demo')")


def channel_values(model, images: np.ndarray, names: Sequence[str]) -> dict:
    """Each layer for ``images`` as ``(values, position_axis)``: values are (N, C, P) with position axis 2, or
    (N, P, C) with position axis 1, views of what the backend gave (no transposing copy where the backend
    offers ``native_activations``)."""
    native = getattr(model, "native_activations", None)
    if native is not None:
        raw = native(images, list(names))
    else:
        raw = {k: (a, a.ndim - 1) for k, a in model.activations(images, list(names)).items()}
    out = {}
    for name in names:
        a, axis = raw[name]
        a = np.asarray(a, dtype=np.float32)
        n = a.shape[0]
        if a.ndim == 1:
            out[name] = (a.reshape(n, 1, 1), 1)
        elif axis == a.ndim - 1:
            out[name] = (a.reshape(n, -1, a.shape[-1]), 1)
        elif axis == 1:
            out[name] = (a.reshape(n, a.shape[1], -1), 2)
        else:
            moved = np.moveaxis(a, axis, -1)
            out[name] = (moved.reshape(n, -1, moved.shape[-1]), 1)
    return out


def pooled(values: np.ndarray, axis: int) -> np.ndarray:
    """One vector per image: the mean over positions, float32 (N, C)."""
    return values.mean(axis=axis, dtype=np.float64).astype(np.float32)


def fixed_subset(n: int, cap: int, seed: int) -> np.ndarray:
    """At most ``cap`` of ``range(n)``, drawn once with ``seed`` and sorted (bounded memory, reproducible)."""
    if n <= cap:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=cap, replace=False))


def skipped_report(skipped: list) -> list:
    return [{"image": name, "reason": reason} for name, reason in skipped]


def prefetch(items: Iterator, depth: int = 1) -> Iterator:
    """``items`` computed one step ahead in a background thread (the model runs on the next batch while the
    caller works on this one); an exception in the thread is raised here."""
    import queue
    import threading

    q: queue.Queue = queue.Queue(maxsize=depth)
    done = object()
    stop = threading.Event()

    def work():
        try:
            for item in items:
                if stop.is_set():
                    return
                q.put((item, None))
        except BaseException as exc:  # handed to the consumer
            q.put((None, exc))
            return
        q.put((done, None))

    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    try:
        while True:
            item, exc = q.get()
            if exc is not None:
                raise exc
            if item is done:
                return
            yield item
    finally:
        stop.set()
        while thread.is_alive():  # let a producer blocked on a full queue finish
            try:
                q.get(timeout=0.05)
            except queue.Empty:
                pass
        thread.join()
