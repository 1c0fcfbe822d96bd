"""Icons for every position of an activation grid: the nearest atlas cell's icon, or the nearest exemplar patch."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import numpy as np
from PIL import Image

from atlas_core import UsageError

from .compute import nearest


class AtlasIcons:
    """Icons from a built atlas of the layer: each position gets the icon of the cell (of one level) whose
    direction is nearest by cosine. Instant, any backend, and it ties the grid to the atlas."""

    def __init__(self, folder, layer: str, level: Optional[int] = None, renderer: Optional[str] = None):
        self.folder = Path(folder)
        manifest_path = self.folder / "atlas.json"
        if not manifest_path.is_file():
            raise UsageError(f"--atlas {layer}={folder}: no atlas.json there (build it with atlas build)")
        self.manifest = json.loads(manifest_path.read_text())
        if self.manifest["layer"] != layer:
            raise UsageError(f"--atlas {layer}={folder} is an atlas of layer {self.manifest['layer']!r}, not {layer!r}")
        grids = [lv["grid"] for lv in self.manifest["levels"]]
        index = self.manifest.get("default_level", 0) if level is None else \
            (grids.index(level) if level in grids else None)
        if index is None:
            raise UsageError(f"the atlas of {layer} has no level of grid {level}; its grids: {grids}")
        self.level = self.manifest["levels"][index]
        self.renderer = renderer or self.manifest["renderers"][0]
        self.directions = np.load(self.folder / self.level["directions"])

    def choose(self, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(cell index into the level's cells, cosine) per vector."""
        rows, score = nearest(vectors, self.directions)
        by_row = {c["direction"]: k for k, c in enumerate(self.level["cells"])}
        return np.array([by_row[r] for r in rows]), score

    def icon(self, cell: int) -> Image.Image:
        with Image.open(self.folder / self.level["cells"][cell]["icons"][self.renderer]) as im:
            return im.convert("RGB")

    def describe(self, cell: int) -> dict:
        c = self.level["cells"][cell]
        return {"i": c["i"], "j": c["j"], "label": c.get("label"), "count": c["count"]}


class ExemplarIcons:
    """Exemplar patches: each position gets the receptive-field patch of the candidate sample nearest by cosine.
    Candidates are an atlas's samples (with its images) or every position of up to ``limit`` images of a set."""

    def __init__(self, model, layer: str, folder=None, images=None, limit: int = 64, icon_size: int = 48):
        from atlas_core.receptive import receptive_field
        from atlas_core.renderers.exemplar import patch
        self.patch, self.icon_size = patch, icon_size
        self.size = model.input_spec.size
        if folder is not None:
            from atlas_core.classes.derive import Parent
            parent = Parent(folder, need_attribution=False)
            if parent.manifest["layer"] != layer:
                raise UsageError(f"--atlas {layer}={folder} is an atlas of layer {parent.manifest['layer']!r}")
            self.acts = parent.store.activations()
            self.prov = parent.store.provenance()
            self.source = parent.open_images()
            self.rf = parent.manifest.get("receptive_field") or receptive_field(model, layer)
        elif images is not None:
            from atlas_core.images import as_source
            self.source = as_source(images)
            ids = np.linspace(0, len(self.source) - 1, min(limit, len(self.source))).astype(int)
            batch = np.stack([self.source.load(int(i), self.size) for i in ids])
            a = model.activations(batch, [layer])[layer]
            n, h, w, c = a.shape
            self.acts = a.reshape(-1, c)
            ys, xs = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
            self.prov = np.column_stack([np.repeat(ids, h * w), np.tile(ys.ravel(), n), np.tile(xs.ravel(), n)])
            self.rf = receptive_field(model, layer)
        else:
            raise UsageError("exemplar icons need samples: give --atlas LAYER=DIR or --images DIR")
        self._cache: dict = {}

    def choose(self, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return nearest(vectors, self.acts)

    def icon(self, sample: int) -> Image.Image:
        image_id, y, x = (int(v) for v in self.prov[sample])
        if image_id not in self._cache:
            self._cache = {image_id: self.source.load(image_id, self.size)}
        return self.patch(self._cache[image_id], y, x, self.rf, self.icon_size)

    def describe(self, sample: int) -> dict:
        image_id, y, x = (int(v) for v in self.prov[sample])
        return {"sample": int(sample), "image": self.source.names[image_id], "y": y, "x": x}
