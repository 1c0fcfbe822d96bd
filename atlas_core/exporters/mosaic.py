"""The mosaic exporter: atlas.png, the default level's icons on white, each at its cell, as the reference
draws the atlas."""

from __future__ import annotations

from pathlib import Path

from PIL import Image

from ..store import atomic_write


def mosaic(out: Path, level, renderer: str, icon_size: int) -> Image.Image:
    canvas = Image.new("RGB", (level.grid * icon_size, level.grid * icon_size), "white")
    for cell in level.cells:
        rel = cell.icons.get(renderer)
        if rel:
            with Image.open(out / rel) as icon:
                canvas.paste(icon.convert("RGB").resize((icon_size, icon_size)),
                             (cell.i * icon_size, cell.j * icon_size))
    return canvas


class MosaicExporter:
    name = "mosaic"
    order = 10

    def export(self, build, out: Path) -> list:
        if not build.renderers or not build.levels[build.default_level].cells:
            return []
        image = mosaic(Path(out), build.levels[build.default_level], next(iter(build.renderers)),
                       build.config.icon_size)
        atomic_write(Path(out) / "atlas.png", lambda f: image.save(f, format="PNG"))
        return ["atlas.png"]
