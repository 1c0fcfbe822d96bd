"""Exports: atlas.json (the contract in docs/atlas-format.md), atlas.png, thumbnails, index.html."""

from __future__ import annotations

import html
import json
from pathlib import Path

import numpy as np
from PIL import Image

from .quality import cosines

FORMAT_VERSION = 1
THUMBS_PER_CELL = 8
THUMB_SIZE = 96


def mosaic(out: Path, level, icon_paths: dict, renderer: str, icon_size: int) -> Image.Image:
    """The default level's icons on white, each at its cell, as the reference draws the atlas."""
    canvas = Image.new("RGB", (level.grid * icon_size, level.grid * icon_size), "white")
    for cell in level.cells:
        rel = icon_paths.get((renderer, level.grid, cell.i, cell.j))
        if rel:
            with Image.open(out / rel) as icon:
                canvas.paste(icon.convert("RGB").resize((icon_size, icon_size)), (cell.i * icon_size,
                                                                                   cell.j * icon_size))
    return canvas


def _ordered_members(level, acts) -> list:
    """Each cell's members, most representative first (cosine to the cell's direction)."""
    out = []
    for cell, direction in zip(level.cells, level.directions):
        ids = np.sort(cell.members)
        out.append(ids[np.argsort(-cosines(acts[ids], direction), kind="stable")])
    return out


def write_exports(out: Path, *, model, layer, layer_shape, reducer, reducer_params, source, prov, layout, levels,
                  icons, icon_paths, fidelity, predictions, class_names, label_source, quality, default_level,
                  icon_size, acts, receptive_field=None) -> dict:
    out = Path(out)
    np.save(out / "samples.npy", prov.astype(np.int32))
    (out / "images.json").write_text(json.dumps(list(source.names)))
    if class_names:
        per_image = {}
        for key, classes in predictions["classes"].items():
            probs = predictions["probabilities"][key]
            per_image[key] = [[class_names[c], round(float(p), 4)] for c, p in zip(classes, probs) if c >= 0]
        (out / "predictions.json").write_text(json.dumps(per_image))
    h, w = (layer_shape[0], layer_shape[1]) if layer_shape is not None and len(layer_shape) == 3 else (1, 1)
    thumbs_needed: set = set()
    level_entries = []
    for level in levels:
        folder = out / "levels" / str(level.grid)
        folder.mkdir(parents=True, exist_ok=True)
        np.save(folder / "directions.npy", level.directions)
        cells = []
        for k, (cell, ordered) in enumerate(zip(level.cells, _ordered_members(level, acts))):
            cell_icons = {name: icon_paths[(name, level.grid, cell.i, cell.j)] for name in icons
                          if (name, level.grid, cell.i, cell.j) in icon_paths}
            thumbs = []
            for sid in ordered[:THUMBS_PER_CELL]:
                image_id, y, x = (int(v) for v in prov[sid])
                thumbs_needed.add(image_id)
                thumbs.append({"sample": int(sid), "image": image_id, "thumb": f"thumbs/{image_id}.jpg",
                               "y": round((y + 0.5) / h, 4) if y >= 0 else None,
                               "x": round((x + 0.5) / w, 4) if x >= 0 else None})
            cells.append({
                "i": cell.i, "j": cell.j, "count": cell.count, "samples": [int(s) for s in ordered],
                "icon": cell_icons.get(icons[0]) if icons else None, "icons": cell_icons,
                "label": cell.label, "labels": cell.labels,
                "fidelity": fidelity.get((icons[0], level.grid, cell.i, cell.j)) if icons else None,
                "fidelities": {name: fidelity.get((name, level.grid, cell.i, cell.j)) for name in icons},
                "direction": k, "thumbs": thumbs})
        level_entries.append({"grid": level.grid, "min_count": level.min_count,
                              "directions": f"levels/{level.grid}/directions.npy", "cells": cells})
    write_thumbs(out, source, sorted(thumbs_needed))
    manifest = {
        "version": FORMAT_VERSION, "model": Path(str(model)).name, "layer": layer,
        "layer_shape": list(layer_shape) if layer_shape is not None else None,
        "reducer": {"name": reducer, "params": reducer_params},
        "n_samples": int(len(prov)), "n_images": len(source),
        "layout": "layout.npy", "samples": "samples.npy", "images": "images.json",
        "predictions": "predictions.json" if class_names else None,
        "label_source": label_source, "renderers": list(icons), "icon_size": icon_size,
        "receptive_field": receptive_field, "default_level": default_level,
        "levels": level_entries, "quality": quality,
    }
    (out / "atlas.json").write_text(json.dumps(manifest))
    if icons and levels[default_level].cells:
        mosaic(out, levels[default_level], icon_paths, icons[0], icon_size).save(out / "atlas.png")
    write_page(out, manifest)
    return manifest


def write_thumbs(out: Path, source, image_ids) -> None:
    folder = out / "thumbs"
    folder.mkdir(exist_ok=True)
    for image_id in image_ids:
        path = folder / f"{image_id}.jpg"
        if path.is_file():
            continue
        try:
            img = source.load(image_id, None)
        except Exception:  # a thumbnail is a convenience: never fail the export for it
            continue
        pil = Image.fromarray((np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8), mode="RGB")
        pil.thumbnail((THUMB_SIZE, THUMB_SIZE))
        pil.save(path, quality=85)


def write_page(out: Path, manifest: dict) -> None:
    """index.html: the interactive viewer when available, else a simple static page."""
    try:
        from .viewer import write_viewer
    except ImportError:
        write_viewer = None
    if write_viewer is not None:
        write_viewer(out)
        return
    title = html.escape(f"Activation atlas: {manifest['model']} / {manifest['layer']}")
    (out / "index.html").write_text(
        f"<!doctype html><meta charset='utf-8'><title>{title}</title><h1>{title}</h1>"
        f"<p>{manifest['n_samples']} samples, reducer {html.escape(manifest['reducer']['name'])}</p>"
        "<img src='atlas.png' style='max-width:100%'>")
