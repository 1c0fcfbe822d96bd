"""A tiny convolutional network in numpy: a real computation, with a numpy gradient capability, so that the
core's own tests can run the whole pipeline, attribution included, with no plugin installed.

Input: canonical images of 32 x 32 (any size divisible by 4 works). ``conv1``: 3x3 convolution, stride 2,
8 channels (colour and edge detectors: the mean of each colour, and horizontal and vertical differences of
brightness), ReLU. ``conv2``: 3x3 convolution, stride 2, 16 channels with fixed pseudo-random weights, ReLU.
``pool``: the mean over space. ``logits``: a dense layer to 4 classes. Everything is deterministic.
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from ..models import array_hash
from ..types import INPUT, InputSpec, Layer, UsageError

ORDER = ("conv1", "conv2", "pool", "logits")


def _conv(x: np.ndarray, w: np.ndarray, stride: int) -> np.ndarray:
    """NHWC 3x3 convolution with zero padding 1 (no bias): linear in ``x``."""
    n, h, wd, c = x.shape
    p = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    oh, ow = (h + 2 - 3) // stride + 1, (wd + 2 - 3) // stride + 1
    cols = np.stack([p[:, dy:dy + stride * oh:stride, dx:dx + stride * ow:stride, :]
                     for dy in range(3) for dx in range(3)], axis=3)  # n, oh, ow, 9, c
    return np.einsum("nhwkc,kcd->nhwd", cols, w.reshape(9, c, -1))


def _weights(seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    w1 = np.zeros((3, 3, 3, 8), np.float32)
    for c in range(3):
        w1[1, 1, c, c] = 1.0                      # colour
    luma = np.array([0.3, 0.6, 0.1], np.float32)
    w1[1, 0, :, 3], w1[1, 2, :, 3] = -luma, luma   # vertical edges, both signs
    w1[1, 0, :, 4], w1[1, 2, :, 4] = luma, -luma
    w1[0, 1, :, 5], w1[2, 1, :, 5] = -luma, luma   # horizontal edges, both signs
    w1[0, 1, :, 6], w1[2, 1, :, 6] = luma, -luma
    w1[:, :, :, 7] = luma / 9                     # brightness
    b1 = np.array([0, 0, 0, -0.02, -0.02, -0.02, -0.02, -0.3], np.float32)
    w2 = (rng.standard_normal((3, 3, 8, 16)) / np.sqrt(72)).astype(np.float32)
    b2 = (0.05 * rng.standard_normal(16)).astype(np.float32)
    w3 = rng.standard_normal((16, 4)).astype(np.float32)
    b3 = np.zeros(4, np.float32)
    return {"w1": w1, "b1": b1, "w2": w2, "b2": b2, "w3": w3, "b3": b3}


class NumpyModel:
    """The tiny network as an atlas Model (see the module's docstring)."""

    name = "tiny-numpy-cnn"
    provider = "numpy"
    output = "logits"

    def __init__(self, size: int = 32, seed: int = 0, batch_size: int = 8):
        if size % 4:
            raise UsageError("the tiny numpy model needs an input size divisible by 4")
        self.params = _weights(seed)
        self.input_spec = InputSpec(layout="NHWC", height=size, width=size)
        self.batch_size = batch_size
        self.identity = array_hash(self.params.values(), extra=["tiny-numpy-cnn", size])
        self._layers = [Layer("conv1", "Relu", (size // 2, size // 2, 8), bounds=(0, None)),
                        Layer("conv2", "Relu", (size // 4, size // 4, 16), bounds=(0, None)),
                        Layer("pool", "ReduceMean", (16,)), Layer("logits", "Gemm", (4,))]

    def layers(self) -> list:
        return list(self._layers)

    def class_names(self) -> list:
        return ["red", "green", "blue", "grey"]

    def _check(self, names: Sequence[str]) -> None:
        for name in names:
            if name not in ORDER:
                raise UsageError(f"unknown layer {name!r} of {self.name}; layers: {', '.join(ORDER)}")

    def forward(self, x: np.ndarray, source: str = INPUT, tangent: Optional[np.ndarray] = None) -> dict:
        """Every tensor from ``source`` on (``x`` is that tensor, canonical), and their derivatives along
        ``tangent`` when it is given (forward mode, by hand)."""
        p = self.params
        start = 0 if source == INPUT else ORDER.index(source) + 1
        values, tangents = {}, {}
        a = np.asarray(x, np.float32)
        t = None if tangent is None else np.asarray(tangent, np.float32)
        for k, name in enumerate(ORDER):
            if k < start:
                continue
            if name == "conv1":
                pre = _conv(a, p["w1"], 2) + p["b1"]
                t = None if t is None else _conv(t, p["w1"], 2) * (pre > 0)
                a = np.maximum(pre, 0)
            elif name == "conv2":
                pre = _conv(a, p["w2"], 2) + p["b2"]
                t = None if t is None else _conv(t, p["w2"], 2) * (pre > 0)
                a = np.maximum(pre, 0)
            elif name == "pool":
                a = a.mean(axis=(1, 2))
                t = None if t is None else t.mean(axis=(1, 2))
            else:
                a = a @ p["w3"] + p["b3"]
                t = None if t is None else t @ p["w3"]
            values[name] = a.astype(np.float32)
            if t is not None:
                tangents[name] = t.astype(np.float32)
        return values if tangent is None else {n: (values[n], tangents[n]) for n in values}

    def activations(self, images: np.ndarray, layers: Sequence[str]) -> dict:
        layers = list(layers)
        self._check(layers)
        images = np.asarray(images, np.float32)
        if images.ndim != 4 or images.shape[-1] != 3:
            raise UsageError(f"images must be N x H x W x 3, got shape {images.shape}")
        parts = {name: [] for name in layers}
        for s in range(0, len(images), self.batch_size):
            out = self.forward(images[s:s + self.batch_size])
            for name in layers:
                parts[name].append(out[name])
        if not len(images):
            return {name: np.zeros((0,) + tuple(lay.shape), np.float32)
                    for lay in self._layers for name in layers if lay.name == name}
        return {name: np.concatenate(parts[name]) for name in layers}

    def gradients(self) -> "NumpyGradients":
        return NumpyGradients(self)

    def __repr__(self) -> str:
        return f"NumpyModel({self.input_spec.height} px)"


class NumpyFunction:
    engine = "numpy"

    def __init__(self, model: NumpyModel, source: str, targets: tuple):
        self.model, self.source, self.targets = model, source, targets
        self.params = model.params
        self.input_size = model.input_spec.size

    def apply(self, params, x) -> dict:
        out = self.model.forward(x, self.source)
        return {t: out[t] for t in self.targets}


class NumpyGradients:
    """The tiny model's gradient capability: any source before any target, forward mode in numpy."""

    engine = "numpy"

    def __init__(self, model: NumpyModel):
        self.model = model

    def supports(self, source: str, targets: Sequence[str]) -> Optional[str]:
        if source != INPUT and source not in ORDER:
            return f"unknown layer {source!r}"
        first = -1 if source == INPUT else ORDER.index(source)
        for t in targets:
            if t not in ORDER or ORDER.index(t) <= first:
                return f"{t!r} does not follow {source!r}"
        return None

    def function(self, source: str, targets: Sequence[str]) -> NumpyFunction:
        reason = self.supports(source, targets)
        if reason:
            raise UsageError(reason)
        return NumpyFunction(self.model, source, tuple(targets))

    def jvp(self, source: str, targets: Sequence[str], x: np.ndarray, tangent: np.ndarray,
            relax_maxpool: bool = False) -> dict:  # no max-pools here
        reason = self.supports(source, targets)
        if reason:
            raise UsageError(reason)
        x, tangent = np.asarray(x, np.float32), np.asarray(tangent, np.float32)
        if tangent.ndim == x.ndim + 1:  # K tangents per row
            parts = [self.jvp(source, targets, x, tangent[:, k]) for k in range(tangent.shape[1])]
            return {t: (parts[0][t][0], np.stack([p[t][1] for p in parts], axis=1)) for t in targets}
        out = self.model.forward(x, source, tangent)
        return {t: out[t] for t in targets}

    def vjp(self, source: str, target: str, x: np.ndarray, cotangent: np.ndarray,
            relax_maxpool: bool = False) -> np.ndarray:
        """Reverse mode as the transpose of the Jacobian, built column by column from JVPs (a tiny model)."""
        x, cotangent = np.asarray(x, np.float32), np.asarray(cotangent, np.float32)
        if cotangent.ndim == len(self.model.forward(x[:1], source)[target].shape) + 1:
            return np.stack([self.vjp(source, target, x, cotangent[:, k]) for k in range(cotangent.shape[1])], 1)
        size = int(np.prod(x.shape[1:]))
        out = np.empty((len(x), size), np.float32)
        for row in range(len(x)):
            basis = np.eye(size, dtype=np.float32).reshape((size,) + x.shape[1:])
            jac = self.jvp(source, [target], np.repeat(x[row:row + 1], size, 0), basis)[target][1]
            out[row] = jac.reshape(size, -1) @ cotangent[row].ravel()
        return out.reshape(x.shape)
