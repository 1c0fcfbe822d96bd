"""Exemplar icons: the receptive-field patch of the member sample nearest each cell's direction.

Needs no gradients, so it works with every backend. The patch size is the layer's effective receptive field
(:mod:`atlas_core.receptive`), which the icons stage measures once and hands over in the request.
"""

from __future__ import annotations

import numpy as np
from PIL import Image

from ..images import resize
from ..metrics import cosines
from ..types import IconRequest


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
    """Renderer ``exemplar``: the receptive-field patch of the cell's most representative member."""

    name = "exemplar"
    options: dict = {}
    requires = frozenset({"receptive_field"})

    def render(self, request: IconRequest) -> list:
        rf = request.receptive_field
        if rf is None:
            from ..receptive import receptive_field
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
