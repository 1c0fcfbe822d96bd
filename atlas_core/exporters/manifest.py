"""The manifest exporter: atlas.json (the contract of docs/atlas-format.md) and the arrays and thumbnails it
names: samples.npy, images.json, predictions.json, levels/<grid>/directions.npy, thumbs/<image>.jpg."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from ..store import atomic_write, atomic_write_text

FORMAT_VERSION = 1
THUMBS_PER_CELL = 8
THUMB_SIZE = 96
INLINE_SAMPLES_MAX = 100_000  # above this many samples, atlas.json lists no cell's samples (members.npy has them)


def cell_entry(cell, prov: np.ndarray, hw: tuple, renderers: list, offset: int = 0, inline: bool = True) -> dict:
    """A cell as atlas.json has it; ``thumbs`` are its first members with their sampled position; its members
    are ``count`` entries of the level's members.npy from ``offset`` (and, with ``inline``, ``samples``)."""
    h, w = hw
    thumbs = []
    for sid in cell.members[:THUMBS_PER_CELL]:
        image_id, y, x = (int(v) for v in prov[sid])
        thumbs.append({"sample": int(sid), "image": image_id, "thumb": f"thumbs/{image_id}.jpg",
                       "y": round((y + 0.5) / h, 4) if y >= 0 else None,
                       "x": round((x + 0.5) / w, 4) if x >= 0 else None})
    first = renderers[0] if renderers else None
    entry = {"i": cell.i, "j": cell.j, "count": cell.count, "offset": int(offset)}
    if inline:
        entry["samples"] = [int(s) for s in cell.members]
    entry.update({"icon": cell.icons.get(first) if first else None, "icons": dict(cell.icons),
             "label": cell.label, "labels": cell.labels,
             "fidelity": cell.fidelity.get(first) if first else None,
             "fidelities": {name: cell.fidelity.get(name) for name in renderers},
             "direction": cell.direction, "thumbs": thumbs})
    if len(cell.label_sets) > 1 or cell.attribution:
        entry["labels_by_source"] = dict(cell.label_sets)
    if cell.attribution:
        entry["attribution"] = cell.attribution
    return entry


def write_members(path: Path, cells) -> list:
    """A level's members.npy: every cell's members (most representative first) one after the other, int32, in
    the order of the level's cells; returns each cell's offset. Written cell by cell, never joined in memory."""
    offsets, total = [], sum(len(cell.members) for cell in cells)

    def write(f):
        np.lib.format.write_array_header_1_0(f, {"descr": "<i4", "fortran_order": False, "shape": (total,)})
        for cell in cells:
            f.write(np.ascontiguousarray(cell.members, dtype="<i4").tobytes())

    pos = 0
    for cell in cells:
        offsets.append(pos)
        pos += len(cell.members)
    atomic_write(path, write)
    return offsets


def read_members(out: Path, level: dict, cell: dict) -> np.ndarray:
    """A cell's members (sample ids, most representative first) from its level's members.npy (memory-mapped),
    or from its inline ``samples`` in an atlas written before members.npy."""
    if level.get("members") and "offset" in cell:
        members = np.load(Path(out) / level["members"], mmap_mode="r")
        return members[cell["offset"]:cell["offset"] + cell["count"]]
    return np.asarray(cell.get("samples") or [], np.int64)


def link_or_copy(source: Path, target: Path) -> None:
    """``target`` as a hard link to ``source`` (no second copy of a large array), or a copy across file systems."""
    import os
    import shutil
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        os.link(source, tmp)
    except OSError:
        shutil.copyfile(source, tmp)
    os.replace(tmp, target)


def write_thumbs(out: Path, source, image_ids, published: Path = None) -> list:
    """A small JPEG of each image (a thumbnail is a convenience: an image that fails is left out). Thumbnails
    already published in ``published/thumbs`` for the same images (by the source's identity) are linked."""
    folder = out / "thumbs"
    folder.mkdir(exist_ok=True)
    identity = source.identity()
    old = Path(published) / "thumbs" if published is not None else None
    same = old is not None and (old / ".key").is_file() and (old / ".key").read_text() == identity
    written = []
    for image_id in image_ids:
        path = folder / f"{image_id}.jpg"
        if same and (old / path.name).is_file() and not path.exists():
            _link(old / path.name, path)
        if not path.is_file():
            try:
                img = source.load(image_id, None)
            except Exception:
                continue
            pil = Image.fromarray((np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8), mode="RGB")
            pil.thumbnail((THUMB_SIZE, THUMB_SIZE))
            atomic_write(path, lambda f: pil.save(f, format="JPEG", quality=85))
        written.append(f"thumbs/{image_id}.jpg")
    atomic_write_text(folder / ".key", identity)
    return written


def _link(src: Path, dst: Path) -> None:
    import os
    import shutil
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


class ManifestExporter:
    name = "manifest"
    order = 0

    def export(self, build, out: Path) -> list:
        out = Path(out)
        c, store = build.config, build.store
        prov = store.provenance()
        written = ["layout.npy", "samples.npy", "images.json"]
        atomic_write(out / "layout.npy", lambda f: np.save(f, np.asarray(build.layout, np.float32)))
        atomic_write(out / "samples.npy", lambda f: np.save(f, prov.astype(np.int32)))
        atomic_write_text(out / "images.json", json.dumps(list(build.source.names)))
        if build.class_names:
            atomic_write_text(out / "classes.json", json.dumps(list(build.class_names)))
            written.append("classes.json")
            predictions = store.predictions()
            per_image = {}
            for k, classes in predictions["classes"].items():
                probs = predictions["probabilities"][k]
                per_image[k] = [[build.class_names[cl], round(float(p), 4)] for cl, p in zip(classes, probs)
                                if cl >= 0]
            atomic_write_text(out / "predictions.json", json.dumps(per_image))
            written.append("predictions.json")
        if build.ground_truth is not None:
            atomic_write_text(out / "labels.json", json.dumps(list(build.ground_truth)))
            written.append("labels.json")
        shape = build.layer.shape
        hw = (shape[0], shape[1]) if shape is not None and len(shape) == 3 else (1, 1)
        renderers = list(build.renderers)
        levels, thumbs = [], set()
        inline = len(prov) <= INLINE_SAMPLES_MAX
        for level in build.levels:
            rel = f"levels/{level.grid}/directions.npy"
            (out / rel).parent.mkdir(parents=True, exist_ok=True)
            atomic_write(out / rel, lambda f, d=level.directions: np.save(f, d))
            members = f"levels/{level.grid}/members.npy"
            offsets = write_members(out / members, level.cells)
            written += [rel, members]
            cells = [cell_entry(cell, prov, hw, renderers, offset, inline) for cell, offset in zip(level.cells, offsets)]
            thumbs.update(t["image"] for cell in cells for t in cell["thumbs"])
            entry = {"grid": level.grid, "min_count": level.min_count, "directions": rel, "members": members,
                     "cells": cells}
            if level.attribution is not None:
                entry["attribution"] = f"levels/{level.grid}/attribution.npy"
                atomic_write(out / entry["attribution"],
                             lambda f, a=level.attribution: np.save(f, a.astype(np.float16)))
                written.append(entry["attribution"])
            levels.append(entry)
        if build.attribution is not None:
            link_or_copy(store.root / "attribution.npy", out / "attribution.npy")
            written.append("attribution.npy")
        written += write_thumbs(out, build.source, sorted(thumbs), published=build.out)
        manifest = {
            "version": FORMAT_VERSION, "model": Path(str(build.model.name)).name, "layer": c.layer,
            "layer_shape": list(shape) if shape is not None else None,
            "reducer": {"name": c.reducer, "params": c.reducer_params},
            "n_samples": int(len(prov)), "n_images": len(build.source),
            "layout": "layout.npy", "samples": "samples.npy", "images": "images.json",
            "predictions": "predictions.json" if build.class_names else None,
            "label_source": build.label_source, "label_sources": build.label_sources,
            "classes": "classes.json" if build.class_names else None,
            "ground_truth": "labels.json" if build.ground_truth is not None else None,
            "attribution": None if build.attribution is None else
            {"file": "attribution.npy", "target": build.attribution.target, "relax_maxpool": c.relax_maxpool},
            "origin": build.origin,
            "renderers": renderers, "icon_size": c.icon_size,
            "receptive_field": build.receptive_field, "default_level": build.default_level,
            "levels": levels, "quality": build.quality,
            "store": f"store/{store.key}",
        }
        manifest.update(build.extra)
        atomic_write_text(out / "atlas.json", json.dumps(manifest))
        build.manifest = manifest
        return ["atlas.json"] + written
