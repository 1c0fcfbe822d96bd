"""The small types passed between stages (the design's canonical forms)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

import numpy as np

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INPUT = "@input"  # the model's input (canonical images) as the source of a differentiable function


class UsageError(Exception):
    """A user's mistake: the CLI prints it as one line and exits non-zero."""


def fit_channels(values, channels: int, flag: str) -> tuple:
    """Per-channel ``--mean``/``--std`` values for a model of ``channels`` channels: as given when they match, their
    mean for a 1-channel model, one value repeated for every channel; else a UsageError naming ``flag``."""
    values = tuple(float(v) for v in values)
    if len(values) == channels:
        return values
    if channels == 1:
        return (sum(values) / len(values),)
    if len(values) == 1:
        return values * channels
    raise UsageError(f"{flag} has {len(values)} values but the model takes {channels} channels")


@dataclass
class InputSpec:
    """How canonical images (float32 NHWC in [0, 1]) map to a model's input.

    ``height``/``width`` are None where the graph leaves them open.
    The model sees ``(image * scale - mean) / std`` in its own ``layout``.
    """

    layout: str = "NCHW"
    channels: int = 3
    height: Optional[int] = None
    width: Optional[int] = None
    mean: Sequence[float] = (0.0, 0.0, 0.0)
    std: Sequence[float] = (1.0, 1.0, 1.0)
    scale: float = 1.0
    batch: Optional[int] = None  # fixed batch size of the graph, None if dynamic

    @property
    def size(self) -> Optional[tuple[int, int]]:
        if self.height is None or self.width is None:
            return None
        return (self.height, self.width)

    def normalize(self, images: np.ndarray) -> np.ndarray:
        """Canonical NHWC [0, 1] images to the model's input array (its layout)."""
        x = np.asarray(images, dtype=np.float32) * np.float32(self.scale)
        mean = np.asarray(self.mean, dtype=np.float32)
        std = np.asarray(self.std, dtype=np.float32)
        x = (x - mean) / std
        if self.layout == "NCHW":
            x = x.transpose(0, 3, 1, 2)
        return np.ascontiguousarray(x, dtype=np.float32)

    def identity(self) -> list:
        """What of the spec changes the activations (for reuse keys)."""
        return [self.size, list(self.mean), list(self.std), self.scale, self.layout, self.channels]


@dataclass
class Layer:
    """A tappable tensor: ``shape`` is per sample, canonical (H, W, C) or (C,).

    ``bounds`` is (low, high) where the op bounds its output (ReLU: (0, None), Clip/ReLU6: (0, 6),
    Sigmoid: (0, 1), Tanh: (-1, 1)), None where it does not or the backend cannot tell.
    """

    name: str
    op_type: str = ""
    shape: Optional[tuple] = None
    bounds: Optional[tuple] = None

    @property
    def spatial(self) -> bool:
        return self.shape is not None and len(self.shape) == 3

    def to_dict(self) -> dict:
        out = {"name": self.name, "op_type": self.op_type,
               "shape": list(self.shape) if self.shape is not None else None}
        if self.bounds is not None:
            out["bounds"] = list(self.bounds)
        return out


@dataclass
class IconRequest:
    """Everything a renderer gets to draw the icons of one grid level.

    ``directions`` is (cells, channels); ``members[k]`` holds the sample ids of
    cell ``k``, most representative first; ``store`` gives ``activations(ids)``
    and ``provenance(ids)`` (rows of image, y, x); ``images`` gives ``load(i)``
    (float32 HWC in [0, 1] at the model's input size); ``moment`` is the
    uncentred second moment of the samples (channels x channels) for whitening
    objectives; ``options`` holds the renderer's declared options, defaults
    filled in. What a renderer ``requires`` is filled in too:
    ``receptive_field`` ({"stride", "size", "input"} in input pixels) and
    ``gradients`` (the model's :class:`atlas_core.contracts.Differentiable`).
    """

    model: Any
    layer: str
    directions: np.ndarray
    members: list = field(default_factory=list)
    store: Any = None
    images: Any = None
    icon_size: int = 80
    seed: int = 0
    moment: Optional[np.ndarray] = None
    options: dict = field(default_factory=dict)
    progress: Optional[Callable[[int], None]] = None
    receptive_field: Optional[dict] = None
    gradients: Any = None
