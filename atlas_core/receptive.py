"""The measured effective receptive field of a layer: how large an input patch one position stands for."""

from __future__ import annotations

import numpy as np


def receptive_field(model, layer: str, coverage: float = 0.9, seed: int = 0) -> dict:
    """Measured effective receptive field of ``layer`` at its centre position, in input pixels.

    Returns ``{"stride": [sy, sx], "size": [h, w], "input": [H, W]}``: the smallest
    window around the centre that holds ``coverage`` of the influence of input
    rows (columns) on the centre activation.
    """
    H, W = model.input_spec.size
    rng = np.random.default_rng(seed)
    base = np.clip(0.5 + 0.1 * rng.standard_normal((H, W, 3)), 0, 1).astype(np.float32)
    a0 = model.activations(base[None], [layer])[layer]
    if a0.ndim != 4:
        return {"stride": [H, W], "size": [H, W], "input": [H, W]}
    h, w = a0.shape[1:3]
    cy, cx = h // 2, w // 2
    stride = (H / h, W / w)
    result = {"stride": [stride[0], stride[1]], "input": [H, W]}
    size = []
    for axis, (extent, s, c) in enumerate(((H, stride[0], cy), (W, stride[1], cx))):
        band = max(1, int(round(s / 2)))
        starts = np.arange(0, extent, band)
        noise = rng.random((H, W, 3)).astype(np.float32)
        influence = []
        for chunk in np.array_split(starts, max(1, len(starts) // 32)):
            batch = np.repeat(base[None], len(chunk), axis=0)
            for k, s0 in enumerate(chunk):
                if axis == 0:
                    batch[k, s0:s0 + band] = noise[s0:s0 + band]
                else:
                    batch[k, :, s0:s0 + band] = noise[:, s0:s0 + band]
            a = model.activations(batch, [layer])[layer][:, cy, cx, :]
            influence.append(np.linalg.norm(a - a0[:, cy, cx, :], axis=1))
        influence = np.concatenate(influence)
        centre = (c + 0.5) * s
        mids = starts + band / 2
        total = influence.sum()
        radius = extent
        if total > 0:
            for r in np.arange(band / 2, extent + band, band / 2):
                if influence[np.abs(mids - centre) <= r].sum() >= coverage * total:
                    radius = r
                    break
        size.append(float(np.clip(2 * radius, 2 * s, extent)))
    result["size"] = size
    return result
