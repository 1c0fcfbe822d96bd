"""The patch test: does a cell's patch, pasted onto images it was not taken from, push the model towards a class?

The article confirms an association it sees in an atlas this way (a baseball-like texture pasted onto grey whale
images turns them into great white sharks). Here a cell's icon is pasted at a given size and at the same random
positions onto every held-out image; the change in the target class's probability is compared with that of the
icons of other cells of the same level pasted the same way (the control).
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Optional

import numpy as np
from PIL import Image, ImageDraw

from ..images import BadImage, as_source, resize
from ..stages.collect import probabilities
from ..store import atomic_write, atomic_write_text
from ..types import UsageError
from .derive import Parent
from .filters import resolve_class


def parse_cell(text: str) -> tuple[int, int, int]:
    """``GRID:I,J`` (the grid size of a level, the cell's column and row) as three integers."""
    try:
        grid, ij = str(text).split(":")
        i, j = ij.split(",")
        return int(grid), int(i), int(j)
    except ValueError:
        raise UsageError(f"--cell must be GRID:I,J (a level's grid size, the cell's column and row), e.g. 20:3,7; "
                         f"got {text!r}") from None


def paste(image: np.ndarray, patch: np.ndarray, y: int, x: int) -> np.ndarray:
    """``image`` with ``patch`` over it, its top-left corner at (y, x)."""
    out = image.copy()
    h, w = patch.shape[:2]
    out[y:y + h, x:x + w] = patch
    return out


def _effect(model, output: str, target: int, images: np.ndarray, base: np.ndarray, patch: np.ndarray,
            corners: np.ndarray, batch_size: int) -> dict:
    """The target's probability with ``patch`` at each corner of each image, against ``base`` (clean)."""
    patched = np.stack([paste(images[n], patch, y, x) for n in range(len(images)) for y, x in corners[n]])
    logits = np.concatenate([model.activations(patched[s:s + batch_size], [output])[output]
                             for s in range(0, len(patched), batch_size)])
    p = probabilities(logits.reshape(len(patched), -1)).reshape(len(images), corners.shape[1], -1)
    delta = p[:, :, target] - base[:, None, target]
    became_top = (p.argmax(-1) == target) & (base.argmax(-1) != target)[:, None]
    return {"mean_delta": float(delta.mean()), "median_delta": float(np.median(delta)),
            "rises": float((delta > 0).mean()), "became_top1": float(became_top.mean()),
            "mean_probability": float(p[:, :, target].mean()), "delta_per_image": delta.mean(1).round(5).tolist()}


def patch_test(atlas, cell: str, onto, target, out, *, renderer: Optional[str] = None, size: float = 0.3,
               positions: int = 4, controls: int = 8, max_images: int = 200, seed: int = 0, model=None,
               batch_size: int = 32, quiet: bool = False) -> dict:
    """Paste the icon of cell ``GRID:I,J`` of atlas folder ``atlas`` onto the images of ``onto`` (up to
    ``max_images``), ``size`` of their shorter side, at ``positions`` random places each; report how often and how
    much the probability of class ``target`` rises, against the icons of ``controls`` random other cells of the
    level. Writes patch-test.json, patch-test.png and index.html into ``out``; returns the JSON."""
    parent = Parent(atlas, need_attribution=False)
    m = parent.manifest
    grid, i, j = parse_cell(cell)
    level = next((lv for lv in m["levels"] if lv["grid"] == grid), None)
    if level is None:
        raise UsageError(f"the atlas has no level of grid {grid}; its grids: {[lv['grid'] for lv in m['levels']]}")
    cells = {(c["i"], c["j"]): c for c in level["cells"]}
    if (i, j) not in cells:
        raise UsageError(f"level {grid} has no cell ({i}, {j}) (it keeps cells with at least "
                         f"{level['min_count']} samples)")
    renderer = renderer or m["renderers"][0]
    if renderer not in m["renderers"]:
        raise UsageError(f"the atlas has no {renderer!r} icons; it has: {', '.join(m['renderers'])}")
    if not 0 < size < 1:
        raise UsageError(f"--size is a fraction of the image's shorter side, between 0 and 1; got {size}")
    c = resolve_class(target, parent.class_names)
    opened = parent.open_model(model, batch_size=batch_size)
    side = opened.input_spec.size
    source = as_source(onto)
    rng = np.random.default_rng(seed)
    ids = np.arange(len(source)) if len(source) <= max_images else np.sort(rng.choice(len(source), max_images,
                                                                                        replace=False))
    images, names, skipped = [], [], []
    for k in ids:
        try:
            images.append(source.load(int(k), side))
            names.append(source.names[int(k)])
        except BadImage as exc:
            skipped.append(str(exc))
    if not images:
        raise UsageError(f"none of the images of {onto!r} could be decoded")
    images = np.stack(images)
    px = max(4, int(round(size * min(side))))

    def icon(entry) -> np.ndarray:
        with Image.open(parent.atlas.path / entry["icons"][renderer]) as im:
            return resize(np.asarray(im.convert("RGB"), np.float32) / 255, (px, px))

    corners = np.stack([rng.integers(0, [side[0] - px + 1, side[1] - px + 1], size=(positions, 2))
                        for _ in range(len(images))])
    output = parent.target
    logits = np.concatenate([opened.activations(images[s:s + batch_size], [output])[output]
                             for s in range(0, len(images), batch_size)])
    base = probabilities(logits.reshape(len(images), -1))
    tested = cells[(i, j)]
    result = _effect(opened, output, c, images, base, icon(tested), corners, batch_size)
    others = [key for key in cells if key != (i, j)]
    chosen = [others[k] for k in rng.choice(len(others), min(controls, len(others)), replace=False)]
    control = [dict(_effect(opened, output, c, images, base, icon(cells[key]), corners, batch_size),
                    cell=list(key), label=cells[key].get("label")) for key in chosen]
    report = {
        "atlas": str(parent.atlas.path.resolve()), "layer": m["layer"], "renderer": renderer,
        "cell": {"grid": grid, "i": i, "j": j, "label": tested.get("label"), "count": tested["count"],
                 "icon": tested["icons"][renderer]},
        "target": {"index": c, "name": parent.class_names[c]}, "onto": str(onto), "n_images": len(images),
        "skipped": skipped, "size": size, "patch_px": px, "positions": positions, "seed": seed,
        "clean": {"mean_probability": float(base[:, c].mean()), "top1": float((base.argmax(1) == c).mean())},
        "test": result,
        "control": {"n_cells": len(control),
                    "mean_delta": float(np.mean([r["mean_delta"] for r in control])) if control else None,
                    "rises": float(np.mean([r["rises"] for r in control])) if control else None,
                    "became_top1": float(np.mean([r["became_top1"] for r in control])) if control else None,
                    "max_mean_delta": float(max(r["mean_delta"] for r in control)) if control else None,
                    "cells": [{k: v for k, v in r.items() if k != "delta_per_image"} for r in control]},
        "images": names,
    }
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "patch-test.json", json.dumps(report, indent=1))
    figure = _figure(images, base, opened, output, c, icon(tested), corners, report)
    atomic_write(out / "patch-test.png", lambda f: figure.save(f, format="PNG"))
    atomic_write_text(out / "index.html", _page(report))
    if not quiet:
        t, k = report["test"], report["control"]
        print(f"patch test of cell {grid}:{i},{j} ({tested.get('label')}) towards {parent.class_names[c]!r} on "
              f"{len(images)} images: p rises on {t['rises']:.0%} of pastes, mean change {t['mean_delta']:+.4f}, "
              f"top-1 on {t['became_top1']:.1%}; control ({k['n_cells']} other cells): rises {k['rises']:.0%}, "
              f"mean change {k['mean_delta']:+.4f}, top-1 {k['became_top1']:.1%}")
        print(f"written to {out.resolve()} (patch-test.json, patch-test.png, index.html)")
    return report


def _figure(images, base, model, output, c, patch, corners, report, n: int = 6, side: int = 150) -> Image.Image:
    """The patch, then the images where the target rose most: clean above, patched below, with p(target)."""
    delta = np.asarray(report["test"]["delta_per_image"])
    order = np.argsort(-delta)[:n]
    canvas = Image.new("RGB", (side * (len(order) + 1), 2 * side + 40), "white")
    draw = ImageDraw.Draw(canvas)
    pil = lambda a: Image.fromarray((np.clip(a, 0, 1) * 255 + 0.5).astype(np.uint8)).resize((side, side))  # noqa
    canvas.paste(pil(patch), (0, 20))
    draw.text((4, 2), "patch", fill="black")
    for col, k in enumerate(order, 1):
        y, x = corners[k][0]
        patched = paste(images[k], patch, y, x)
        p = probabilities(model.activations(patched[None], [output])[output].reshape(1, -1))[0, c]
        canvas.paste(pil(images[k]), (col * side, 20))
        canvas.paste(pil(patched), (col * side, side + 40))
        draw.text((col * side + 4, 2), f"clean p={base[k, c]:.3f}", fill="black")
        draw.text((col * side + 4, side + 22), f"patched p={p:.3f}", fill="black")
    return canvas


def _page(report: dict) -> str:
    e = lambda v: html.escape(str(v))  # noqa: E731
    t, k = report["test"], report["control"]
    rows = "".join(f"<tr><td>{e(r['cell'])}</td><td>{e(r['label'])}</td><td>{r['mean_delta']:+.4f}</td>"
                   f"<td>{r['rises']:.0%}</td><td>{r['became_top1']:.1%}</td></tr>" for r in k["cells"])
    return (f"<!doctype html><meta charset='utf-8'><title>Patch test</title>"
            f"<style>body{{font:14px system-ui;margin:20px}}td,th{{padding:2px 8px;text-align:right}}</style>"
            f"<h1>Patch test: cell {report['cell']['grid']}:{report['cell']['i']},{report['cell']['j']} "
            f"({e(report['cell']['label'])}) towards {e(report['target']['name'])}</h1>"
            f"<p>{report['n_images']} images of {e(report['onto'])}; the {e(report['renderer'])} icon pasted at "
            f"{report['patch_px']} px, {report['positions']} places each.</p>"
            f"<table><tr><th></th><th>mean change of p</th><th>p rises</th><th>becomes top-1</th></tr>"
            f"<tr><td>this cell</td><td>{t['mean_delta']:+.4f}</td><td>{t['rises']:.0%}</td>"
            f"<td>{t['became_top1']:.1%}</td></tr>"
            f"<tr><td>control ({k['n_cells']} cells)</td><td>{k['mean_delta']:+.4f}</td><td>{k['rises']:.0%}</td>"
            f"<td>{k['became_top1']:.1%}</td></tr></table>"
            f"<p><img src='patch-test.png' style='max-width:100%'></p>"
            f"<h2>Control cells</h2><table><tr><th>cell</th><th>label</th><th>mean change</th><th>rises</th>"
            f"<th>top-1</th></tr>{rows}</table>")
