"""Seconds per feature-visualization icon and fidelity: the batched JAX renderer at its defaults against the
per-icon loop of the PyTorch port of the reference (torch-lucent style: one icon at a time, torch
autograd), at the same steps, icon size, recipe and model, in one run.

Both sides do the same work per icon and step: EfficientNet-Lite0 (real weights) up to block 10
(``add_530``, the demo's layer), an FFT-parameterized (spectrum decay as the renderer's), colour-
decorrelated, sigmoid icon of the same size, the reference's transforms (pad 2 white, the jitters as a
crop of a window of the icon, random scale and rotation from its lists), the model on that window at the
icon's own scale, dot x cossim^p at the centre position, Adam. Torch runs two ways:

- ``lucent``: as torch-lucent's render_vis does it: the whole model runs forward and a hook reads the
  layer, and the model's parameters keep requires_grad (lucent does not freeze them);
- ``lean``: parameters frozen and the forward pass stopped at the layer (a stronger baseline).

The directions are the cells of the demo atlas's 10x10 level (its samples, built with ``atlas demo``, or
the demo photos' activations binned the same way when there is no atlas), so JAX renders a level as
``atlas build`` does; torch renders the first ``--torch-icons`` of them. Fidelity is the pipeline's
(``atlas_core.metrics.icon_fidelity``: each icon at the extent it stands for). With ``--old``, the renderer's
former way (``view=input``: the icon resized to 224 px) is timed too, at a few steps.

    python benchmarks/bench_featureviz.py --atlas demo-atlas --json featureviz.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import time
from pathlib import Path

import numpy as np

LAYER_ONNX = "add_530"  # output of block 10 (14x14x112 at 224 px) in the dynamo export
BLOCK = 10


def level_directions(atlas, grid: int):
    """The level's cell directions and the samples' moment, from a built atlas."""
    import atlas_core
    root = Path(atlas)
    meta = json.loads((root / "atlas.json").read_text())
    level = next(lv for lv in meta["levels"] if lv["grid"] == grid)
    acts = np.asarray(atlas_core.load(root).store().activations(), dtype=np.float64)
    directions = np.load(root / level["directions"])[[c["direction"] for c in level["cells"]]]
    return directions.astype(np.float32), (acts.T @ acts / len(acts)).astype(np.float32)


def photo_directions(model, n: int, seed: int = 0):
    """Without an atlas: means of 8 random inner positions of the demo photos' activations."""
    import atlas_demo
    src = atlas_demo.demo_images()
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(src), 96, replace=False)
    images = np.stack([src.load(int(i), (224, 224)) for i in idx])
    acts = model.activations(images, [LAYER_ONNX])[LAYER_ONNX]
    samples = acts[:, 1:-1, 1:-1].reshape(-1, acts.shape[-1])
    moment = samples.T @ samples / len(samples)
    dirs = np.stack([samples[rng.choice(len(samples), 8)].mean(0) for _ in range(n)])
    return dirs.astype(np.float32), moment


# -- the torch-lucent-style loop ---------------------------------------------------------------------
def torch_icon(net, block, target, steps: int, size: int, p: float, lr: float, decay: float, lean: bool,
               seed: int):
    """One icon, torch autograd, the renderer's recipe at its default view (the icon at its own scale, the
    jitters cropping a window of it). Returns the icon as float HWC in [0, 1]."""
    import torch
    import torch.nn.functional as F
    from atlas_jax.featureviz import ANGLES, COLOR_MATRIX, JITTERS, PAD, SCALES, spectrum_scale, window_size
    g = torch.Generator().manual_seed(seed)
    spectrum = (0.01 * torch.randn(1, 3, size, size // 2 + 1, 2, generator=g)).requires_grad_(True)
    scale = torch.from_numpy(spectrum_scale(size, decay))
    colour = torch.from_numpy(COLOR_MATRIX.T.copy())
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    target = torch.from_numpy(target)
    opt = torch.optim.Adam([spectrum], lr=lr)
    window = window_size(size)
    full = size + 2 * PAD
    rng = np.random.default_rng(seed)
    store = {}

    class Stop(Exception):
        pass

    def hook(module, inputs, output):
        store["a"] = output
        if lean:
            raise Stop

    def image():
        img = torch.fft.irfft2(torch.view_as_complex(spectrum) * scale, s=(size, size)) / 4.0
        return torch.sigmoid((img.permute(0, 2, 3, 1) @ colour).permute(0, 3, 1, 2))

    handle = block.register_forward_hook(hook)
    try:
        for _ in range(steps):
            opt.zero_grad()
            img = F.pad(image(), (PAD, PAD, PAD, PAD), value=1.0)  # pad 2, white
            s = float(SCALES[rng.integers(len(SCALES))])
            a = math.radians(float(ANGLES[rng.integers(len(ANGLES))]))
            dy, dx = sum(rng.integers(0, d + 1, 2) - d / 2 for d in JITTERS)
            c, si = math.cos(a), math.sin(a)
            k = window / full / s  # a window of the padded icon at pitch 1, scaled, rotated and shifted
            theta = torch.tensor([[k * c, k * si, -(c * dx + si * dy) / s * 2 / full],
                                  [-k * si, k * c, -(-si * dx + c * dy) / s * 2 / full]],
                                 dtype=torch.float32)[None]
            grid = F.affine_grid(theta, (1, 3, window, window), align_corners=False)
            view = F.grid_sample(img - 1.0, grid, align_corners=False) + 1.0  # white outside
            try:
                net((view - mean) / std)
            except Stop:
                pass
            h, w = store["a"].shape[2:]
            acts = store["a"][:, :, h // 2, w // 2]
            dot = (acts * target).mean(-1)
            cossim = torch.clamp(dot / (1e-4 + acts.norm(dim=-1)), min=0.1)
            loss = -(dot * cossim ** p).sum()
            loss.backward()
            opt.step()
        with torch.no_grad():
            return image()[0].permute(1, 2, 0).numpy()
    finally:
        handle.remove()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--atlas", help="a built demo atlas (atlas demo); without it the photos' directions")
    ap.add_argument("--grid", type=int, default=10)
    ap.add_argument("--steps", type=int, help="default: the renderer's")
    ap.add_argument("--icons", type=int, default=64, help="icons JAX renders without an atlas")
    ap.add_argument("--torch-icons", type=int, default=6, help="icons each torch loop renders")
    ap.add_argument("--size", type=int, default=80)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--old", action="store_true", help="also time view=input (the former way), 16 steps")
    ap.add_argument("--json", help="write the figures here")
    args = ap.parse_args(argv)

    import torch
    torch.set_num_threads(args.threads)
    import atlas_demo
    from PIL import Image
    from atlas_core import IMAGENET_MEAN, IMAGENET_STD, IconRequest
    from atlas_core.metrics import icon_fidelity
    from atlas_jax.featureviz import DEFAULTS, FeatureVizRenderer, whitened
    from atlas_jax.model import OnnxJaxBackend

    model = OnnxJaxBackend().open(str(atlas_demo.efficientnet_lite0_onnx("dynamo")), mean=IMAGENET_MEAN,
                                  std=IMAGENET_STD, batch_size=16)
    if args.atlas:
        dirs, moment = level_directions(args.atlas, args.grid)
    else:
        dirs, moment = photo_directions(model, args.icons)
    steps = args.steps or DEFAULTS["steps"]
    targets = whitened(dirs, moment if DEFAULTS["whiten"] else None)
    net = atlas_demo.efficientnet_lite0()
    block = net._blocks[BLOCK]
    load = [os.getloadavg()[0]]

    def jax_level(directions, seed, **options):
        req = IconRequest(model=model, layer=LAYER_ONNX, directions=directions, icon_size=args.size, seed=seed,
                          moment=moment, options=dict(options, steps=steps) if "steps" not in options else options)
        return FeatureVizRenderer().render(req)

    t = time.perf_counter()
    jax_level(dirs, 0, steps=4)  # compiles the step (once per level configuration; reported separately)
    compile_s = time.perf_counter() - t
    torch_icon(net, block, targets[0], 2, args.size, DEFAULTS["p"], DEFAULTS["lr"], DEFAULTS["decay"], False, 0)
    times: dict = {"torch_lucent": [], "torch_lean": []}
    icons: dict = {"torch_lucent": [], "torch_lean": []}
    n_torch = min(args.torch_icons, len(dirs))
    for i in range(n_torch):  # the two torch loops interleaved, icon by icon
        for lean in (False, True):
            name = "torch_lean" if lean else "torch_lucent"
            for p in net.parameters():
                p.requires_grad_(not lean)
            t = time.perf_counter()
            img = torch_icon(net, block, targets[i], steps, args.size, DEFAULTS["p"], DEFAULTS["lr"],
                             DEFAULTS["decay"], lean, i)
            times[name].append(time.perf_counter() - t)
            icons[name].append(Image.fromarray((np.clip(img, 0, 1) * 255).round().astype(np.uint8), "RGB"))
            icons[name][-1].info["extent"] = (args.size, args.size)
        load.append(os.getloadavg()[0])
        if i == n_torch // 2:  # the JAX level in the middle of the torch icons
            t = time.perf_counter()
            jax_icons = jax_level(dirs, 1)
            jax_seconds = time.perf_counter() - t
            load.append(os.getloadavg()[0])
    old = None
    if args.old:
        t = time.perf_counter()
        jax_level(dirs[:8], 2, steps=2, view="input")
        t_compile = time.perf_counter() - t
        t = time.perf_counter()
        jax_level(dirs[:8], 2, steps=16, view="input")
        old = {"steps": 16, "icons": 8, "seconds_per_icon": (time.perf_counter() - t) / 8,
               "compile_seconds": t_compile}
        old["seconds_per_icon_step"] = old["seconds_per_icon"] / 16

    fid = {"jax": icon_fidelity(model, LAYER_ONNX, jax_icons, dirs)}
    fid["jax_same_cells"] = fid["jax"][:n_torch]
    for name in ("torch_lucent", "torch_lean"):
        fid[name] = icon_fidelity(model, LAYER_ONNX, icons[name], dirs[:n_torch])
    per_icon = {"jax": jax_seconds / len(dirs), "torch_lucent": statistics.median(times["torch_lucent"]),
                "torch_lean": statistics.median(times["torch_lean"])}
    report = {
        "model": "EfficientNet-Lite0 (real weights)", "layer": f"{LAYER_ONNX} (block {BLOCK})",
        "recipe": {k: DEFAULTS[k] for k in ("steps", "attempts", "p", "lr", "decay", "view", "crop", "batch")},
        "steps": steps, "icon_size": args.size, "jax_icons": len(dirs), "torch_icons": n_torch,
        "threads": args.threads, "cpu_count": os.cpu_count(), "load_avg": load,
        "seconds_per_icon": per_icon, "torch_all": times, "jax_level_seconds": jax_seconds,
        "jax_compile_seconds": compile_s,
        "speedup_vs_torch_lucent": per_icon["torch_lucent"] / per_icon["jax"],
        "speedup_vs_torch_lean": per_icon["torch_lean"] / per_icon["jax"],
        "fidelity_median": {k: float(np.median(v)) for k, v in fid.items()},
        "old_view_input": old,
    }
    print(json.dumps(report, indent=1))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(report, fh, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
