"""The interactive atlas viewer: static files that open from file:// with no server and no network.

`write_viewer(out_dir)` reads ``out_dir/atlas.json`` (docs/atlas-format.md) and writes ``index.html`` and the
folder ``viewer/`` (Leaflet, vendored with its license; the viewer's script and style; ``atlas-data.js``, the data as
a script, because browsers refuse fetch() on file://). Icons and thumbnails stay where the atlas put them and load
by relative path, lazily, as tiles come into view. `show(out_dir)` gives the same viewer inline in a notebook.
"""

from __future__ import annotations

import base64
import html
import json
import re
from pathlib import Path
from typing import Union

import numpy as np

from ..store import atomic_write, atomic_write_text

STATIC = Path(__file__).parents[1] / "static"
ASSETS = ("viewer.js", "viewer.css", "leaflet/leaflet.js", "leaflet/leaflet.css", "leaflet/LICENSE")
MAX_MEMBERS = 12  # member thumbnails shown per cell
TOP_ATTRIBUTION = 24  # classes per cell kept for the class heat map (the rest fade to nothing anyway)


def _members(cell, provenance, has_thumb, samples=None):
    """Up to MAX_MEMBERS of a cell's samples whose image has a thumbnail, as [image id, y, x]: the samples the
    atlas chose to show (a cell's ``thumbs``) first, then others spread evenly over the cell's list
    (``samples``: its members from members.npy, else its inline ``samples``). ``has_thumb[image]`` is True for
    the images with a thumbnail."""
    if provenance is None:
        return []
    n = len(provenance)

    def shown(ids):
        ids = np.asarray(ids, np.int64).reshape(-1)
        ids = ids[(ids >= 0) & (ids < n)]
        image = provenance[ids, 0].astype(np.int64)
        ok = (image >= 0) & (image < len(has_thumb))
        ok[ok] = has_thumb[image[ok]]
        return ids[ok]

    chosen = shown([t["sample"] for t in cell.get("thumbs") or [] if isinstance(t, dict) and "sample" in t])
    rest = shown(cell.get("samples") or [] if samples is None else samples)
    step = max(1, len(rest) / MAX_MEMBERS)
    picks = rest[(np.arange(min(MAX_MEMBERS, len(rest))) * step).astype(np.int64)]
    ids = list(dict.fromkeys(chosen.tolist() + picks.tolist()))[:MAX_MEMBERS]
    return provenance[ids].astype(np.int64).tolist() if ids else []


def viewer_data(out_dir: Union[str, Path]) -> dict:
    """The atlas as the viewer needs it: levels of compact cells, labels interned, members with provenance."""
    out = Path(out_dir)
    manifest = json.loads((out / "atlas.json").read_text())
    renderers = list(manifest.get("renderers") or [])
    names = json.loads((out / manifest.get("images", "images.json")).read_text()) \
        if (out / manifest.get("images", "images.json")).is_file() else []
    samples_path = out / manifest.get("samples", "samples.npy")
    provenance = np.load(samples_path) if samples_path.is_file() else None  # N x 3 int32: 12 MB at 10^6
    thumbs = [int(p.stem) for p in (out / "thumbs").glob("*.jpg") if p.stem.isdigit()]
    has_thumb = np.zeros(max(thumbs, default=-1) + 1, bool)
    has_thumb[thumbs] = True
    labels: dict = {}
    used_images: set = set()
    levels = []
    for level in manifest["levels"]:
        cells = []
        attribution = np.load(out / level["attribution"]) if level.get("attribution") and \
            (out / level["attribution"]).is_file() else None
        classes = json.loads((out / manifest["classes"]).read_text()) if attribution is not None else []
        member_file = np.load(out / level["members"], mmap_mode="r") \
            if level.get("members") and (out / level["members"]).is_file() else None
        for c in level["cells"]:
            icons = dict(c.get("icons") or {})
            if c.get("icon") and renderers and renderers[0] not in icons:
                icons[renderers[0]] = c["icon"]
            shares = []
            for name, share in c.get("labels") or ([[c["label"], 1.0]] if c.get("label") else []):
                shares += [labels.setdefault(str(name), len(labels)), round(float(share), 4)]
            samples = member_file[c["offset"]:c["offset"] + c["count"]] \
                if member_file is not None and "offset" in c else None
            members = _members(c, provenance, has_thumb, samples)
            used_images.update(m[0] for m in members)
            others = {}
            for source, pairs in (c.get("labels_by_source") or {}).items():
                if source != manifest.get("label_source"):
                    others[source] = [x for name, share in pairs[:3]
                                      for x in (labels.setdefault(str(name), len(labels)), round(float(share), 4))]
            attr = []
            if attribution is not None and 0 <= c.get("direction", -1) < len(attribution):
                row = np.asarray(attribution[c["direction"]], np.float32)
                for k in np.argsort(-row, kind="stable")[:TOP_ATTRIBUTION]:
                    attr += [labels.setdefault(str(classes[k]), len(labels)), round(float(row[k]), 5)]
            cells.append([int(c["i"]), int(c["j"]), int(c["count"]), shares,
                          [icons.get(r) for r in renderers] or [c.get("icon")], members, attr, others])
        levels.append({"grid": int(level["grid"]), "min_count": level.get("min_count"), "cells": cells})
    meta = {k: manifest.get(k) for k in ("model", "layer", "layer_shape", "n_samples", "n_images", "label_source",
                                         "default_level", "quality", "receptive_field", "axis", "class")}
    meta["attribution"] = bool(manifest.get("attribution"))
    meta["reducer"] = (manifest.get("reducer") or {}).get("name")
    meta["renderers"] = renderers or ["icon"]
    if not meta["n_samples"]:
        meta["n_samples"] = sum(c[2] for c in levels[0]["cells"]) if levels else 0
    return {"meta": meta, "labels": list(labels), "levels": levels,
            "images": {str(i): names[i] for i in sorted(used_images) if 0 <= i < len(names)}}


def data_script(data: dict, name: str = "ATLAS_DATA") -> str:
    """`window.NAME = {...};` with every <, > and & escaped, so the text is safe inline in HTML too (data for a
    page that opens from file://, where browsers refuse fetch())."""
    return f"window.{name} = {_safe_json(data)};\n"


def _safe_json(data) -> str:
    text = json.dumps(data, separators=(",", ":"), ensure_ascii=True)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _level_images(level: dict, names: dict) -> dict:
    used = {m[0] for c in level["cells"] for m in c[5]}
    return {str(i): names[str(i)] for i in sorted(used) if str(i) in names}


def split_levels(data: dict) -> tuple[dict, dict]:
    """The viewer's data as the page loads it: ``atlas-data.js`` with the meta, the labels and the cells of the
    coarsest and the default level (what the first view needs), and for every other level only its grid, its
    number of cells and the script that holds its cells and image names (``viewer/level-<k>.js``, loaded when
    a zoom first shows it, as a script: pages from file:// may not fetch()). Returns (data, {k: level data})."""
    levels, names = data["levels"], data["images"]
    default = data["meta"].get("default_level")
    eager = {0} | ({default} if isinstance(default, int) and 0 <= default < len(levels) else set())
    lazy = {}
    head = dict(data, levels=[], images={})
    for k, level in enumerate(levels):
        if k in eager:
            head["levels"].append(level)
            head["images"].update(_level_images(level, names))
            continue
        lazy[k] = {"cells": level["cells"], "images": _level_images(level, names)}
        head["levels"].append({"grid": level["grid"], "min_count": level.get("min_count"),
                               "n_cells": len(level["cells"]), "script": f"viewer/level-{k}.js"})
    return head, lazy


def write_viewer(out_dir: Union[str, Path]) -> Path:
    """Write ``index.html`` and ``viewer/`` into an atlas folder; return the path of ``index.html``."""
    out = Path(out_dir)
    (out / "viewer").mkdir(parents=True, exist_ok=True)
    for name in ASSETS:
        target = out / "viewer" / Path(name).name.replace("LICENSE", "LICENSE-leaflet.txt")
        atomic_write(target, lambda f, src=STATIC / name: f.write(src.read_bytes()))
    head, lazy = split_levels(viewer_data(out))
    for old in (out / "viewer").glob("level-*.js"):
        if not old.stem[6:].isdigit() or int(old.stem[6:]) not in lazy:
            old.unlink()
    for k, level in lazy.items():
        atomic_write_text(out / "viewer" / f"level-{k}.js", f"window.ATLAS_LEVEL({k}, {_safe_json(level)});\n")
    atomic_write_text(out / "viewer" / "atlas-data.js", data_script(head))
    page = out / "index.html"
    atomic_write(page, lambda f: f.write((STATIC / "index.html").read_bytes()))
    return page


class ViewerExporter:
    """The viewer exporter: index.html and viewer/ (reads the atlas.json the manifest exporter wrote)."""

    name = "viewer"
    order = 20

    def export(self, build, out: Path) -> list:
        write_viewer(out)
        return ["index.html", "viewer/"]


def _data_uri(path: Path) -> str:
    mime = {".png": "image/png", ".jpg": "image/jpeg", ".jpeg": "image/jpeg", ".webp": "image/webp"}
    return f"data:{mime.get(path.suffix.lower(), 'application/octet-stream')};base64," + \
        base64.b64encode(path.read_bytes()).decode("ascii")


def standalone_html(out_dir: Union[str, Path], max_mb: float = 16) -> str:
    """The viewer as one HTML document: scripts, styles, data and images inlined (as data: URIs).

    Levels are embedded coarse to fine while their icons fit in ``max_mb``; member thumbnails follow within the
    same budget. What does not fit is left out (finer levels) or left as a relative path (thumbnails)."""
    out = Path(out_dir)
    data = viewer_data(out)
    files, budget = {}, max_mb * 1e6
    kept = []
    for level in data["levels"]:
        paths = {p for c in level["cells"] for p in c[4] if p and p not in files and (out / p).is_file()}
        size = sum((out / p).stat().st_size * 4 / 3 for p in paths)
        if kept and size > budget:
            break
        budget -= size
        files.update({p: _data_uri(out / p) for p in paths})
        kept.append(level)
    data["meta"]["levels_left_out"] = len(data["levels"]) - len(kept)
    data["levels"] = kept
    for level in kept:
        for c in level["cells"]:
            for m in c[5]:
                p = f"thumbs/{m[0]}.jpg"
                if p not in files and (out / p).is_file() and budget > 0:
                    budget -= (out / p).stat().st_size * 4 / 3
                    files[p] = _data_uri(out / p)
    data["files"] = files

    def asset(name: str) -> str:
        if name == "atlas-data.js":
            return data_script(data)
        return (STATIC / ("leaflet/" + name if name.startswith("leaflet") else name)).read_text(encoding="utf-8")

    page = (STATIC / "index.html").read_text(encoding="utf-8")
    page = re.sub(r'<script src="viewer/([\w.-]+)"></script>',
                  lambda m: "<script>" + asset(m.group(1)).replace("</script", "<\\/script") + "</script>", page)
    return re.sub(r'<link rel="stylesheet" href="viewer/([\w.-]+)">',
                  lambda m: "<style>" + asset(m.group(1)).replace("</style", "<\\/style") + "</style>", page)


class AtlasView:
    """The viewer for a notebook: displays itself inline (an iframe whose document is the whole viewer)."""

    def __init__(self, out_dir: Union[str, Path], height: int = 640, max_mb: float = 16):
        self.out_dir = Path(out_dir)
        self.height = height
        self.html = standalone_html(self.out_dir, max_mb=max_mb)

    def _repr_html_(self) -> str:
        return (f'<iframe srcdoc="{html.escape(self.html, quote=True)}" style="width:100%;height:{int(self.height)}px;'
                f'border:1px solid #ddd" sandbox="allow-scripts" title="activation atlas"></iframe>')

    def save(self, path: Union[str, Path]) -> Path:
        """Write the self-contained viewer to one HTML file (to share an atlas as a single file)."""
        Path(path).write_text(self.html, encoding="utf-8")
        return Path(path)


def show(out_dir: Union[str, Path], height: int = 640, max_mb: float = 16) -> AtlasView:
    """The viewer inline in a notebook (Jupyter, VS Code, Colab): as a cell's last expression it displays itself;
    elsewhere pass it to ``IPython.display.display``."""
    return AtlasView(out_dir, height=height, max_mb=max_mb)
