"""A contract-conforming atlas folder built from real photos, for the viewer's tests and benchmark.

Images are crops of the real photos bundled with scikit-image and scikit-learn (`atlas_demo`). A sample is one
position of an 8x8 grid over a 64 px image; its feature vector describes the colour and texture of the patch there
and its neighbours (a stand-in for a layer's activation, computed without a model). Layout: PCA, normalized as the
reference does; levels binned afresh per grid. Icons: "exemplar" is the context crop of the member nearest to the
cell's direction, "average" the mean of its members' crops. Labels are the source photo's name, with one photo
relabelled `<img src=x onerror=alert(1)>` to prove the viewer escapes data.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image

HOSTILE = "<img src=x onerror=alert(1)>"
SIDE, CELLS = 64, 8  # image side in px, layer grid (positions per side)
STEP = SIDE // CELLS


def _images(n_images: int):
    from atlas_demo import DemoSource
    source = DemoSource()
    ids = np.linspace(0, len(source) - 1, n_images).astype(int)
    out, names, labels = [], [], []
    for k in ids:
        img = Image.fromarray((source.raw(int(k)) * 255).astype(np.uint8)).resize((SIDE, SIDE), Image.BILINEAR)
        out.append(np.asarray(img))
        names.append(source.names[k])
        photo = source.names[k].split("/")[0]
        labels.append(HOSTILE if photo == "coffee" else photo)
    return np.stack(out), names, labels


def _features(images: np.ndarray, pos: np.ndarray) -> np.ndarray:
    """Colour means, colour spread and edge energy of the 3x3 patches around each position."""
    f = images.astype(np.float32) / 255
    patches = f.reshape(len(f), CELLS, STEP, CELLS, STEP, 3)
    mean = patches.mean(axis=(2, 4))                        # n, 8, 8, 3
    std = patches.std(axis=(2, 4))
    gray = f.mean(axis=3)
    edge = np.abs(np.diff(gray, axis=1, append=gray[:, -1:])) + np.abs(np.diff(gray, axis=2, append=gray[:, :, -1:]))
    edge = edge.reshape(len(f), CELLS, STEP, CELLS, STEP).mean(axis=(2, 4))[..., None]
    per_cell = np.concatenate([mean, std, edge], axis=3)    # n, 8, 8, 7
    img, y, x = pos[:, 0], pos[:, 1], pos[:, 2]
    feats = [per_cell[img, y + dy, x + dx] for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
    return np.concatenate(feats, axis=1)


def _normalize(xy: np.ndarray) -> np.ndarray:
    """Reference normalization: clip to the 1st..99th percentile widened by 10%, then min-max to [0, 1]."""
    lo, hi = np.percentile(xy, 1, axis=0), np.percentile(xy, 99, axis=0)
    lo, hi = lo - 0.1 * (hi - lo), hi + 0.1 * (hi - lo)
    return ((np.clip(xy, lo, hi) - lo) / (hi - lo)).astype(np.float32)


def _crop(images, sample) -> np.ndarray:
    img, y, x = sample
    y0, x0 = (y - 1) * STEP, (x - 1) * STEP
    return images[img, y0:y0 + 3 * STEP, x0:x0 + 3 * STEP]


def make_atlas(out, n_images: int = 240, per_image: int = 1, grids=(6, 12), min_count: int = 2,
               icon_px: int = 48, seed: int = 0) -> Path:
    """Write an atlas folder per docs/atlas-format.md (without index.html) and return its path."""
    from atlas_core.reducers import PCA
    out = Path(out)
    rng = np.random.default_rng(seed)
    images, names, image_labels = _images(n_images)
    n = n_images * per_image
    pos = np.stack([np.repeat(np.arange(n_images), per_image),
                    rng.integers(1, CELLS - 1, n), rng.integers(1, CELLS - 1, n)], axis=1).astype(np.int32)
    acts = _features(images, pos)
    layout = _normalize(PCA(2).fit_transform(acts))
    (out / "thumbs").mkdir(parents=True, exist_ok=True)
    np.save(out / "layout.npy", layout)
    np.save(out / "samples.npy", pos)
    (out / "images.json").write_text(json.dumps(names))
    renderers = ["exemplar", "average"]
    levels, members = [], set()
    for g in grids:
        ij = np.clip((layout * g).astype(int), 0, g - 1)
        key = ij[:, 1] * g + ij[:, 0]
        order = np.argsort(key, kind="stable")
        uniq, start, counts = np.unique(key[order], return_index=True, return_counts=True)
        cells, directions = [], []
        for k, s, c in zip(uniq, start, counts):
            if c < min_count:
                continue
            idx = order[s:s + c]
            j, i = divmod(int(k), g)
            d = acts[idx].mean(axis=0)
            near = idx[np.argmin(((acts[idx] - d) ** 2).sum(axis=1))]
            crops = {"exemplar": _crop(images, pos[near]),
                     "average": np.mean([_crop(images, pos[m]) for m in idx[:64]], axis=0).astype(np.uint8)}
            icons = {}
            for r in renderers:
                path = f"icons/{r}/{g}/{i}_{j}.png"
                (out / path).parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(crops[r]).resize((icon_px, icon_px), Image.BILINEAR).save(out / path)
                icons[r] = path
            tally = Counter(image_labels[pos[m, 0]] for m in idx).most_common(3)
            cells.append({"i": i, "j": j, "count": int(c), "samples": [int(m) for m in idx],
                          "icon": icons[renderers[0]], "icons": icons, "label": tally[0][0],
                          "labels": [[name, round(k / c, 4)] for name, k in tally],
                          "direction": len(directions)})
            directions.append(d)
            members.update(int(pos[m, 0]) for m in idx)
        (out / "levels" / str(g)).mkdir(parents=True, exist_ok=True)
        np.save(out / "levels" / str(g) / "directions.npy", np.asarray(directions, dtype=np.float32))
        levels.append({"grid": g, "min_count": min_count, "directions": f"levels/{g}/directions.npy",
                       "cells": cells})
    for m in sorted(members):
        Image.fromarray(images[m]).save(out / "thumbs" / f"{m}.jpg", quality=85)
    manifest = {"version": 1, "model": "patch-statistics (no model)", "layer": "patches 3x3",
                "layer_shape": [CELLS, CELLS, acts.shape[1]],
                "reducer": {"name": "pca", "params": {}}, "n_samples": n, "n_images": n_images,
                "layout": "layout.npy", "samples": "samples.npy", "images": "images.json",
                "label_source": "ground truth", "renderers": renderers, "default_level": 0, "levels": levels}
    (out / "atlas.json").write_text(json.dumps(manifest))
    return out


def test_fixture_follows_the_contract(tmp_path):
    out = make_atlas(tmp_path / "a", n_images=60, grids=(3, 6))
    manifest = json.loads((out / "atlas.json").read_text())
    assert [lv["grid"] for lv in manifest["levels"]] == [3, 6]
    layout = np.load(out / "layout.npy")
    assert layout.shape == (60, 2) and layout.min() >= 0 and layout.max() <= 1
    for level in manifest["levels"]:
        assert sum(c["count"] for c in level["cells"]) <= 60
        for cell in level["cells"]:
            assert (out / cell["icon"]).is_file() and cell["count"] == len(cell["samples"])
    labels = {lab for lv in manifest["levels"] for c in lv["cells"] for lab, _ in c["labels"]}
    assert HOSTILE in labels
