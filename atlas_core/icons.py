"""Exemplar icons: the receptive-field patch of the member sample nearest each cell's direction.

Needs no gradients, so it works with every backend. The patch size is the
layer's effective receptive field, measured by perturbing bands of input rows
and columns and watching the activation at the centre of the layer.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
from PIL import Image

from .images import resize
from .quality import cosines
from .types import IconRequest


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


def patch(image: np.ndarray, y: int, x: int, rf: dict, icon_size: int) -> Image.Image:
    """The square receptive-field patch centred on layer position (y, x).

    Beyond the image's edge the patch is filled by mirroring the image, so that
    the sample stays at the icon's centre (where fidelity is measured) and the
    icon has no blank margins.
    """
    if y < 0:  # pooled sample: the whole image
        crop = image
    else:
        side = int(round(max(rf["size"])))
        y0 = int(round((y + 0.5) * rf["stride"][0] - side / 2))
        x0 = int(round((x + 0.5) * rf["stride"][1] - side / 2))
        padded = np.pad(image, ((side, side), (side, side), (0, 0)), mode="symmetric")
        crop = padded[y0 + side:y0 + 2 * side, x0 + side:x0 + 2 * side]
    small = resize(crop, (icon_size, icon_size))
    return Image.fromarray((small * 255 + 0.5).astype(np.uint8), mode="RGB")


def nearest_member(acts: np.ndarray, direction: np.ndarray) -> int:
    """Index (into ``acts``) of the row with the highest cosine to ``direction``."""
    return int(np.argmax(cosines(acts, direction)))


class ExemplarRenderer:
    name = "exemplar"

    def render(self, request: IconRequest) -> list:
        rf: Optional[dict] = request.options.get("receptive_field")
        if rf is None:
            rf = receptive_field(request.model, request.layer)
        size = request.model.input_spec.size
        icons, cache = [], {}
        for direction, members in zip(request.directions, request.members):
            ids = np.sort(np.asarray(members))
            if not len(ids):
                icons.append(Image.new("RGB", (request.icon_size,) * 2, "white"))
            else:
                best = ids[nearest_member(request.store.activations(ids), direction)]
                image_id, y, x = (int(v) for v in request.store.provenance(best))
                if image_id not in cache:
                    cache = {image_id: request.images.load(image_id, size)}
                icons.append(patch(cache[image_id], y, x, rf, request.icon_size))
            if request.progress:
                request.progress(1)
        return icons
