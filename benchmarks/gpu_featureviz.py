"""Render one 20x20 level of feature-visualization icons with the renderer's defaults on a GPU.

It collects EfficientNet-Lite0 activations of the demo photos with the onnx-jax backend, bins a 20x20 grid
of them (cells with at least 5 samples; the directions are the cells' means), and renders every cell's icon
with the renderer's defaults (the icon seen at its own scale through the graph's convolutional prefix, the
reference's cropping jitters, 80 px icons, 256 steps, 1 attempt, p = 4, Adam 0.05, spectrum decay 1.25), all
icons in batches of ``--batch`` rows of one compiled step; ``--view input`` renders them the former way
(the icon resized to the model's 224 px input; its figures), ``--view both`` does both. Prints the time,
the seconds per icon and the median fidelity (each icon at the extent it stands for), and writes them as
JSON.

On a machine with the project installed and a CUDA build of JAX:

    python benchmarks/gpu_featureviz.py --out gpu-featureviz.json

On a machine that cannot fetch the demo's weights or photos (the project's device machine has JAX for CUDA
but no network), prepare the model and the samples here, carry them, and run from the source tree:

    python benchmarks/gpu_featureviz.py --prepare gpu-inputs     # here: model.onnx + samples.npy (~20 MB)
    PYTHONPATH=.:plugins/jax python3 benchmarks/gpu_featureviz.py --inputs gpu-inputs --out $OUT/gpu.json
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

LAYER = "add_530"


def collect_samples(model, n_images: int) -> np.ndarray:
    """One activation vector at a random inner position of each of ``n_images`` demo views."""
    import atlas_demo
    src = atlas_demo.demo_images()
    rng = np.random.default_rng(0)
    idx = rng.choice(len(src), min(n_images, len(src)), replace=False)
    samples = []
    for start in range(0, len(idx), 128):
        images = np.stack([src.load(int(i), (224, 224)) for i in idx[start:start + 128]])
        acts = model.activations(images, [LAYER])[LAYER]
        ys = rng.integers(1, acts.shape[1] - 1, len(acts))
        xs = rng.integers(1, acts.shape[2] - 1, len(acts))
        samples.append(acts[np.arange(len(acts)), ys, xs])
    return np.concatenate(samples)


def prepare(args) -> int:
    """Write what a machine without the demo's assets needs: the model and the collected samples."""
    from pathlib import Path
    import onnx
    import atlas_demo
    from atlas_core import IMAGENET_MEAN, IMAGENET_STD
    from atlas_core.models import open_model
    out = Path(args.prepare)
    out.mkdir(parents=True, exist_ok=True)
    path = atlas_demo.efficientnet_lite0_onnx("dynamo")
    onnx.save(onnx.load(str(path)), str(out / "model.onnx"))  # one file: the weights inline
    model = open_model(path, mean=IMAGENET_MEAN, std=IMAGENET_STD, batch_size=64)
    np.save(out / "samples.npy", collect_samples(model, args.images).astype(np.float32))
    print(f"wrote {out}/model.onnx and {out}/samples.npy")
    return 0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--grid", type=int, default=20)
    ap.add_argument("--images", type=int, default=2000, help="demo views to collect from")
    ap.add_argument("--batch", type=int, default=256, help="rows (icons x attempts) per compiled step")
    ap.add_argument("--steps", type=int, help="default: the renderer's")
    ap.add_argument("--attempts", type=int, help="default: the renderer's")
    ap.add_argument("--view", choices=("icon", "input", "both"), default="icon",
                    help="icon: the renderer's default scale; input: the former way (resized to 224 px)")
    ap.add_argument("--out", default="gpu-featureviz.json")
    ap.add_argument("--prepare", metavar="DIR", help="write model.onnx and samples.npy here, then stop")
    ap.add_argument("--inputs", metavar="DIR", help="read model.onnx and samples.npy from here")
    args = ap.parse_args(argv)
    if args.prepare:
        return prepare(args)

    import jax
    from atlas_core import IMAGENET_MEAN, IMAGENET_STD, IconRequest
    from atlas_core.metrics import icon_fidelity
    from atlas_jax.featureviz import FeatureVizRenderer
    from atlas_jax.model import OnnxJaxBackend

    device = jax.devices()[0]
    print(f"JAX {jax.__version__} on {device.platform} ({device.device_kind})")
    if args.inputs:
        model_path, samples, collect = f"{args.inputs}/model.onnx", np.load(f"{args.inputs}/samples.npy"), 0.0
    else:
        import atlas_demo
        model_path = str(atlas_demo.efficientnet_lite0_onnx("dynamo"))
    model = OnnxJaxBackend().open(model_path, mean=IMAGENET_MEAN, std=IMAGENET_STD, batch_size=128)
    if not args.inputs:
        t = time.perf_counter()
        samples = collect_samples(model, args.images)
        collect = time.perf_counter() - t
    moment = samples.T @ samples / len(samples)
    # a 20x20 grid over a PCA layout (UMAP is not needed to time the icons)
    centred = samples - samples.mean(0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    xy = centred @ vt[:2].T
    lo, hi = np.percentile(xy, 1, axis=0), np.percentile(xy, 99, axis=0)
    xy = np.clip((xy - lo) / (hi - lo), 0, 1 - 1e-9)
    cell = (xy * args.grid).astype(int)
    keys = cell[:, 0] * args.grid + cell[:, 1]
    kept = [k for k in np.unique(keys) if (keys == k).sum() >= 5]
    directions = np.stack([samples[keys == k].mean(0) for k in kept]).astype(np.float32)
    print(f"collected {len(samples)} samples in {collect:.1f}s; {len(kept)} cells of {args.grid}x{args.grid}")

    report = {"device": f"{device.platform} ({device.device_kind})", "jax": jax.__version__, "cells": len(kept),
              "grid": args.grid, "batch": args.batch, "icon_size": 80, "runs": {}}
    for view in (("icon", "input") if args.view == "both" else (args.view,)):
        options = dict(batch=args.batch, view=view)
        options.update({k: v for k, v in (("steps", args.steps), ("attempts", args.attempts)) if v is not None})
        renderer = FeatureVizRenderer()
        req = IconRequest(model=model, layer=LAYER, directions=directions, icon_size=80, seed=0, moment=moment,
                          options=options, progress=lambda n: None)
        opts = renderer.settings(req)
        t = time.perf_counter()
        icons = renderer.render(req)
        seconds = time.perf_counter() - t
        fidelity = icon_fidelity(model, LAYER, icons, directions)
        report["runs"][view] = {"steps": opts["steps"], "attempts": opts["attempts"], "seconds": seconds,
                                "seconds_per_icon": seconds / len(kept), "extent": list(icons[0].info["extent"]),
                                "fidelity_median": float(np.median(fidelity))}
        print(json.dumps({view: report["runs"][view]}), flush=True)
    print(json.dumps(report, indent=1))
    with open(args.out, "w") as fh:
        json.dump(report, fh, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
