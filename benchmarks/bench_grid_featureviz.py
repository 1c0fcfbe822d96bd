"""Seconds for a three-layer activation grid of one real photo with featureviz icons (EfficientNet-Lite0).

    nice -n 10 python benchmarks/bench_grid_featureviz.py --out grid-fv.json [--steps N] [--repeat 2] \
        [--figure docs/images/grid/chelsea-featureviz-icons.png --atlas-figure docs/images/grid/chelsea-atlas-icons.png]

After the model is open, runs `atlas_grid.grid` with ``icons="featureviz"`` (no class maps, no flows: the icons
alone) on scikit-image's `chelsea` at add_236, add_530 and add_728, ``--repeat`` times in one process (the first
pays JAX's compilation), and prints the total and per-layer seconds. ``--figure`` writes the photo beside the three
grids; with ``--atlas-figure`` (the atlas-icon row of docs/grid.md) that row goes above it, panels matched.

On a GPU machine (JAX for CUDA, no network): prepare the model and the photo here, carry them, run from the tree:

    python benchmarks/bench_grid_featureviz.py --prepare grid-inputs        # here: model.onnx + photo.npy
    PYTHONPATH=.:plugins/jax:plugins/grid python3 benchmarks/bench_grid_featureviz.py --inputs grid-inputs \
        --out $OUT/grid-fv-gpu.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

LAYERS = "add_236,add_530,add_728"


def chelsea() -> np.ndarray:
    """scikit-image's chelsea as ``atlas grid`` reads the file: the whole photo resized to 224 x 224."""
    import atlas_demo
    from atlas_core.images import resize
    return resize(atlas_demo.photo("chelsea"), (224, 224))


def prepare(folder: str) -> int:
    import onnx
    import atlas_demo
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    onnx.save(onnx.load(str(atlas_demo.efficientnet_lite0_onnx("dynamo"))), str(out / "model.onnx"))
    np.save(out / "photo.npy", chelsea().astype(np.float32))
    print(f"wrote {out}/model.onnx and {out}/photo.npy")
    return 0


def figure(out_dir: Path, result: dict, photo: np.ndarray, path: str, atlas_row=None) -> None:
    """The photo and each layer's grid, side by side at one panel height; the atlas-icon row above, if given."""
    from PIL import Image
    panels = [Image.fromarray((photo * 255 + 0.5).astype(np.uint8))]
    for entry in result["layers"]:
        with Image.open(out_dir / entry["picture"]) as im:
            panels.append(im.convert("RGB"))
    height, gap = 300, 10
    panels = [p.resize((round(p.width * height / p.height), height), Image.LANCZOS) for p in panels]
    width = sum(p.width for p in panels) + gap * (len(panels) - 1)
    rows = []
    if atlas_row:
        with Image.open(atlas_row) as im:
            top = im.convert("RGB")
        rows.append(top.resize((width, round(top.height * width / top.width)), Image.LANCZOS))
    row = Image.new("RGB", (width, height), "white")
    x = 0
    for p in panels:
        row.paste(p, (x, 0))
        x += p.width + gap
    rows.append(row)
    canvas = Image.new("RGB", (width, sum(r.height for r in rows) + gap * (len(rows) - 1)), "white")
    y = 0
    for r in rows:
        canvas.paste(r, (0, y))
        y += r.height + gap
    canvas.save(path)
    print(f"wrote {path}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--layers", default=LAYERS)
    ap.add_argument("--steps", type=int, help="default: the grid's featureviz default")
    ap.add_argument("--repeat", type=int, default=1, help="runs in one process (the first compiles)")
    ap.add_argument("--out", default="grid-featureviz.json")
    ap.add_argument("--figure", help="write the photo and the three featureviz grids here (PNG)")
    ap.add_argument("--atlas-figure", help="the atlas-icon row to put above the featureviz row")
    ap.add_argument("--keep", help="keep the last run's output folder here")
    ap.add_argument("--prepare", metavar="DIR", help="write model.onnx and photo.npy here, then stop")
    ap.add_argument("--inputs", metavar="DIR", help="read model.onnx and photo.npy from here (a GPU machine)")
    args = ap.parse_args(argv)
    if args.prepare:
        return prepare(args.prepare)
    import os
    import jax
    from atlas_grid.grid import grid
    device = jax.devices()[0]
    if args.inputs:
        from atlas_core import IMAGENET_MEAN, IMAGENET_STD
        from atlas_jax.model import OnnxJaxBackend
        model = OnnxJaxBackend().open(f"{args.inputs}/model.onnx", mean=IMAGENET_MEAN, std=IMAGENET_STD)
        photo = np.load(f"{args.inputs}/photo.npy")
    else:
        import atlas_demo
        from atlas_core.models import open_model
        model = open_model(str(atlas_demo.efficientnet_lite0_onnx("dynamo")))
        photo = chelsea()
    layers = args.layers.split(",")
    options = {"steps": args.steps} if args.steps is not None else {}
    report = {"device": f"{device.platform} ({device.device_kind})", "jax": jax.__version__, "layers": layers,
              "load_before": list(os.getloadavg()), "runs": []}
    for r in range(args.repeat):
        tmp = tempfile.mkdtemp() if not (args.keep and r == args.repeat - 1) else args.keep
        t = time.perf_counter()
        result = grid(model, photo, layers, tmp, icons="featureviz", icon_options=options, flows=False,
                      attribution=False, quiet=False)
        seconds = time.perf_counter() - t
        run = {"seconds": round(seconds, 1), "timings": result["timings"],
               "layers": {e["name"]: {k: e["featureviz"][k] for k in ("size", "view", "steps", "cosine_mean",
                                                                      "seconds", "seconds_per_step")} | {
                   "positions": e["height"] * e["width"]} for e in result["layers"]}}
        report["runs"].append(run)
        print(json.dumps(run), flush=True)
        if args.figure and r == args.repeat - 1:
            figure(Path(tmp), result, photo, args.figure, args.atlas_figure)
    report["load_after"] = list(os.getloadavg())
    Path(args.out).write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
