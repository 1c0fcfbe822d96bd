"""Fidelity of featureviz icons against exemplar icons on the same cells of a built atlas.

Build the demo atlas first (its store, directions and exemplar icons are reused):

    atlas build $(python -c "import atlas_demo; print(atlas_demo.efficientnet_lite0_onnx())") \\
        --images demo --layer add_530 --out demo-atlas --levels 10,20 --samples-per-image 2 --icons exemplar
    python plugins/jax/scripts/demo_fidelity.py demo-atlas --grid 10 --steps 64 --attempts 1

Renders featureviz icons for every kept cell of the level (the options given, otherwise the
renderer's defaults), measures both renderers' fidelity with atlas_core.metrics.icon_fidelity as the
pipeline does (each icon at the scale it stands for: featureviz icons at their extent, exemplar patches
at the layer's receptive field), and writes side-by-side mosaics (cells at their grid positions) and a
JSON report next to the atlas.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from PIL import Image


def mosaic(icons: dict, grid: int, size: int) -> Image.Image:
    canvas = Image.new("RGB", (grid * size, grid * size), "white")
    for (i, j), icon in icons.items():
        canvas.paste(icon.resize((size, size)), (i * size, j * size))
    return canvas


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("atlas")
    ap.add_argument("--grid", type=int, default=10)
    ap.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                    help="featureviz option, e.g. steps=64 (repeat)")
    ap.add_argument("--tag", default="featureviz")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--every", type=int, default=1, help="every k-th cell only (a quicker estimate)")
    ap.add_argument("--from-atlas", action="store_true",
                    help="take the featureviz icons the atlas already has (atlas build --icons ...,featureviz) and "
                         "their recorded fidelity, instead of rendering them")
    args = ap.parse_args(argv)

    from atlas_core import IMAGENET_MEAN, IMAGENET_STD, IconRequest
    from atlas_core.options import key_values as _key_values
    from atlas_core.metrics import icon_fidelity
    from atlas_jax.featureviz import FeatureVizRenderer
    from atlas_jax.model import OnnxJaxBackend

    root = Path(args.atlas)
    meta = json.loads((root / "atlas.json").read_text())
    level = next(lv for lv in meta["levels"] if lv["grid"] == args.grid)
    directions = np.load(root / level["directions"])
    cells = level["cells"][::args.every]
    import atlas_core
    acts = np.asarray(atlas_core.load(root).store().activations(), dtype=np.float64)
    moment = (acts.T @ acts / len(acts)).astype(np.float32)  # what SampleStore.moment() gives
    model_path = meta["model"] if Path(meta["model"]).is_file() else None
    if model_path is None:
        import atlas_demo
        model_path = str(atlas_demo.efficientnet_lite0_onnx("dynamo"))
    model = OnnxJaxBackend().open(model_path, mean=IMAGENET_MEAN, std=IMAGENET_STD, batch_size=16)
    layer = meta["layer"]
    options = _key_values(args.option, "--option")  # parsed as atlas build's --icon-option
    rows = [c["direction"] for c in cells]
    req = IconRequest(model=model, layer=layer, directions=directions[rows], icon_size=meta.get("icon_size", 80),
                      seed=args.seed, moment=moment, options=options)
    t = time.perf_counter()
    rf = meta.get("receptive_field")
    if args.from_atlas:  # the pipeline's icons, measured by the pipeline at their extent
        fv = [Image.open(root / c["icons"]["featureviz"]).convert("RGB") for c in cells]
        f_fv = np.asarray([c["fidelities"]["featureviz"] for c in cells], np.float32)
    else:
        fv = FeatureVizRenderer().render(req)
        f_fv = icon_fidelity(model, layer, fv, directions[rows], receptive_field=rf)
    seconds = time.perf_counter() - t
    ex = [Image.open(root / c["icons"]["exemplar"]).convert("RGB") for c in cells]
    f_ex = icon_fidelity(model, layer, ex, directions[rows], receptive_field=rf)
    size = fv[0].size[0]
    pos = [(c["i"], c["j"]) for c in cells]
    mosaic(dict(zip(pos, ex)), args.grid, size).save(root / f"mosaic-exemplar-{args.grid}.png")
    mosaic(dict(zip(pos, fv)), args.grid, size).save(root / f"mosaic-{args.tag}-{args.grid}.png")
    report = {"grid": args.grid, "cells": len(cells), "options": options, "seconds": seconds,
              "extent": list(fv[0].info.get("extent", ())) if not args.from_atlas else None,
              "receptive_field": rf,
              "seconds_per_icon": seconds / len(cells),
              "fidelity_median": {args.tag: float(np.median(f_fv)), "exemplar": float(np.median(f_ex))},
              "featureviz_beats_exemplar_share": float(np.mean(f_fv > f_ex)),
              "per_cell": [{"i": c["i"], "j": c["j"], "count": c["count"], args.tag: round(float(a), 4),
                            "exemplar": round(float(b), 4)} for c, a, b in zip(cells, f_fv, f_ex)]}
    print(json.dumps({k: v for k, v in report.items() if k != "per_cell"}, indent=1))
    (root / f"fidelity-{args.tag}-{args.grid}.json").write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
