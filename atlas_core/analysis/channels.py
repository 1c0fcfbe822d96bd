"""Per-channel statistics of one layer, streamed batch by batch (memory flat in the number of images).

Over every position of every image: how often a channel is active (> 0), its mean |h|, max and min, and how
often it sits at a bound of its op. The verdicts (dead, dormant, saturated, constant) follow from them.
"""

from __future__ import annotations

import threading
from typing import Optional

import numpy as np

SATURATION_TOLERANCE = 1e-3  # "at the bound": within this share of the op's range (or of max(1, |bound|))
# ops whose lower bound is a saturation too; for the others (ReLU, ReLU6, Clip) a lower bound of 0 is where
# the channel is inactive, which the dead and dormant verdicts report
SQUASHING_OPS = {"Sigmoid", "HardSigmoid", "Hardsigmoid", "Tanh", "Softsign"}

BLOCK_VALUES = 1 << 18  # values taken together (1 MiB of float32: stays in a core's cache)

_scratch = threading.local()


def _buffer(dtype, shape) -> np.ndarray:
    """A per-thread scratch array (reused, so large temporaries are not allocated for every batch)."""
    size = int(np.prod(shape))
    key = np.dtype(dtype).str
    bufs = getattr(_scratch, "bufs", None)
    if bufs is None:
        bufs = _scratch.bufs = {}
    buf = bufs.get(key)
    if buf is None or buf.size < size:
        buf = bufs[key] = np.empty(size, dtype)
    return buf[:size].reshape(shape)


def saturation_limits(op_type: str, bounds) -> tuple:
    """(low, high) thresholds: a value <= low or >= high counts as saturated; None where a side does not count."""
    if not bounds:
        return (None, None)
    lo, hi = (list(bounds) + [None, None])[:2]
    width = (hi - lo) if lo is not None and hi is not None else None

    def tol(b):
        return SATURATION_TOLERANCE * (width if width else max(1.0, abs(b)))

    high = hi - tol(hi) if hi is not None else None
    low_counts = lo is not None and (lo != 0 or op_type in SQUASHING_OPS)
    low = lo + tol(lo) if low_counts else None
    return (low, high)


class ChannelStats:
    """Streaming statistics of one layer's channels; ``update`` takes (N, C, P) or (N, P, C) values."""

    def __init__(self, channels: int, op_type: str = "", bounds=None):
        self.channels = int(channels)
        self.nonnegative = bool(bounds) and bounds[0] is not None and bounds[0] >= 0
        self.limits = saturation_limits(op_type, bounds)
        self.positions = 0  # positions seen per channel (images x positions per image)
        self.images = 0
        self.active = np.zeros(self.channels, np.int64)
        self.abs_sum = np.zeros(self.channels, np.float64)
        self.max = np.full(self.channels, -np.inf)
        self.min = np.full(self.channels, np.inf)
        self.at_bound = np.zeros(self.channels, np.int64) if self.limits != (None, None) else None

    def update(self, values: np.ndarray, axis: int) -> None:
        """Add one batch: ``values`` is (N, C, P) with ``axis`` 2, or (N, P, C) with ``axis`` 1.

        The values are taken in blocks of about BLOCK_VALUES that stay in cache for all the statistics
        (about twice as fast as one pass over the whole batch per statistic)."""
        n, p, c = values.shape[0], values.shape[axis], values.shape[3 - axis]
        if c != self.channels:
            raise ValueError(f"expected {self.channels} channels, got values of shape {values.shape}")
        self.images += n
        self.positions += n * p
        if axis == 2:  # rows are (image, channel) planes: reduce each row, then the images
            flat = values.reshape(n * c, p)
            parts = [np.empty(n * c, dt) for dt in (np.int64, np.float64, np.float32, np.float32, np.int64)]
            step = max(1, BLOCK_VALUES // max(1, p))
            for r in range(0, n * c, step):
                for part, value in zip(parts, self._block(flat[r:r + step], 1)):
                    if value is not None:
                        part[r:r + step] = value
            active, abs_sum, hi, lo, at = (part.reshape(n, c) for part in parts)
            self._add(active.sum(axis=0), abs_sum.sum(axis=0), hi.max(axis=0), lo.min(axis=0),
                      at.sum(axis=0) if self.at_bound is not None else None)
        else:  # rows are positions: reduce blocks of rows
            flat = values.reshape(n * p, c)
            step = max(1, BLOCK_VALUES // max(1, c))
            for r in range(0, n * p, step):
                self._add(*self._block(flat[r:r + step], 0))

    def _block(self, block: np.ndarray, axis: int) -> tuple:
        """Positive count, sum of |h|, max, min and count at a bound of one block, along ``axis``."""
        mask = _buffer(np.bool_, block.shape)
        active = self._count(np.greater(block, 0, out=mask), axis)
        magnitude = block if self.nonnegative else np.abs(block, out=_buffer(np.float32, block.shape))
        abs_sum = np.add.reduce(magnitude, axis=axis, dtype=np.float32 if axis == 1 else np.float64)
        hi = np.maximum.reduce(block, axis=axis)
        if self.nonnegative:  # the minimum is 0 wherever a value is not positive: reduce only the other lines
            lo = np.zeros(hi.shape, np.float32)
            full = active == block.shape[axis]
            if full.any():
                lo[full] = np.minimum.reduce(block[full] if axis == 1 else block[:, full], axis=axis)
        else:
            lo = np.minimum.reduce(block, axis=axis)
        at = None
        low, high = self.limits
        if high is not None:
            at = self._count(np.greater_equal(block, high, out=mask), axis)
        if low is not None:
            below = self._count(np.less_equal(block, low, out=mask), axis)
            at = below if at is None else at + below
        return active, abs_sum, hi, lo, at

    def _add(self, active, abs_sum, hi, lo, at) -> None:
        self.active += active
        self.abs_sum += abs_sum
        np.maximum(self.max, hi, out=self.max)
        np.minimum(self.min, lo, out=self.min)
        if at is not None:
            self.at_bound += at

    @staticmethod
    def _count(mask: np.ndarray, axis: int) -> np.ndarray:
        return np.add.reduce(mask.view(np.uint8), axis=axis, dtype=np.int64 if axis == 0 else np.int32)

    # -- what the statistics say ---------------------------------------------------------------------
    @property
    def active_fraction(self) -> np.ndarray:
        return self.active / max(1, self.positions)

    @property
    def mean_abs(self) -> np.ndarray:
        return self.abs_sum / max(1, self.positions)

    @property
    def dormant_score(self) -> np.ndarray:
        """ReDo's score ``E|h_i| / mean_k E|h_k|`` (all 0 where the whole layer is 0)."""
        m = self.mean_abs
        scale = m.mean() if m.size else 0.0
        return m / scale if scale > 0 else np.zeros_like(m)

    @property
    def saturation_fraction(self) -> Optional[np.ndarray]:
        return None if self.at_bound is None else self.at_bound / max(1, self.positions)

    def verdicts(self, dormant_threshold: float, saturated_share: float) -> dict:
        """Channel indices that are dead (never > 0), dormant (score <= threshold), saturated (at a bound on at
        least ``saturated_share`` of positions) and constant (max == min)."""
        seen = self.positions > 0
        sat = self.saturation_fraction
        return {
            "dead": _where(seen & (self.active == 0)),
            "dormant": _where(seen & (self.dormant_score <= dormant_threshold)),
            "saturated": _where(seen & (sat >= saturated_share)) if sat is not None else [],
            "constant": _where(seen & (self.max == self.min)),
        }


def _where(mask) -> list:
    return [int(i) for i in np.flatnonzero(mask)]
