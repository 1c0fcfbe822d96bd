"""The picture of one layer's activation grid: an icon at every position, its area (or opacity) following ‖h‖."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

MAX_SIDE = 1400  # pixels: finer layers get smaller icons


def layer_picture(out: Path, entry: dict, size_mode: str = "area", icon_size: int = 48) -> Image.Image:
    """Icons on the layer's own H x W grid, on white. With ``area`` an icon's area is ‖h‖ / max ‖h‖ of its cell;
    with ``opacity`` it fills its cell and fades into white as ‖h‖ falls. Without icons, the magnitude map."""
    h, w = entry["height"], entry["width"]
    mag = np.asarray(entry["magnitude"], np.float64)
    rel = mag / max(mag.max(), 1e-12)
    cell = max(4, min(icon_size, MAX_SIDE // max(h, w)))
    canvas = Image.new("RGB", (w * cell, h * cell), "white")
    if "icon_files" not in entry:
        gray = (255 * (1 - rel)).astype(np.uint8)
        return Image.fromarray(gray).resize((w * cell, h * cell), Image.NEAREST).convert("RGB")
    icons = []
    for path in entry["icon_files"]:
        with Image.open(out / path) as im:
            icons.append(im.convert("RGB").resize((cell, cell)))
    index = np.asarray(entry["icon_index"])
    white = Image.new("RGB", (cell, cell), "white")
    for y in range(h):
        for x in range(w):
            icon = icons[index[y, x]]
            if size_mode == "area":
                side = int(round(cell * np.sqrt(rel[y, x])))
                if side >= 1:
                    off = (cell - side) // 2
                    canvas.paste(icon.resize((side, side)), (x * cell + off, y * cell + off))
            else:
                canvas.paste(Image.blend(white, icon, float(rel[y, x])), (x * cell, y * cell))
    return canvas
