"""Seconds per feature-visualization icon: the batched JAX renderer against the per-icon loop of the
PyTorch port of the reference (torch-lucent style: one icon at a time, torch autograd).

Both sides do the same work per icon and step: EfficientNet-Lite0 (real weights) up to the same
layer, an FFT-parameterized, colour-decorrelated icon of the same size, the reference's random
scale/rotation/jitter (jitters in the model's pixels), the icon resized to the model's 224x224 input,
the renderer's default dot x cossim^p objective at the centre position, Adam at 0.05. Torch runs two ways:

- ``lucent``: as torch-lucent's render_vis does it: the whole model runs forward and a hook reads
  the layer, and the model's parameters keep requires_grad (lucent does not freeze them);
- ``lean``: parameters frozen and the forward pass stopped at the layer (a stronger baseline).

The machine is shared, so the three are interleaved and the report gives medians and ratios.

    python benchmarks/bench_featureviz.py --steps 32 --icons 8 --reps 3
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import time

import numpy as np

LAYER_ONNX = "add_530"  # output of block 10 (14x14x112) in the dynamo export
BLOCK = 10


def directions_and_moment(model, n: int, seed: int = 0):
    import atlas_demo
    src = atlas_demo.demo_images()
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(src), 48, replace=False)
    images = np.stack([src.load(int(i), (224, 224)) for i in idx])
    acts = model.activations(images, [LAYER_ONNX])[LAYER_ONNX]
    samples = acts[:, 1:-1, 1:-1].reshape(-1, acts.shape[-1])
    moment = samples.T @ samples / len(samples)
    dirs = np.stack([samples[rng.choice(len(samples), 8)].mean(0) for _ in range(n)])
    return dirs.astype(np.float32), moment


# -- the torch-lucent-style loop ---------------------------------------------------------------------
def torch_icon(net, block, target, steps: int, size: int, p: float, lean: bool, seed: int):
    """One icon, torch autograd, the same recipe as the JAX renderer."""
    import torch
    import torch.nn.functional as F
    from atlas_jax.featureviz import ANGLES, COLOR_MATRIX, JITTERS, PAD, SCALES, spectrum_scale
    g = torch.Generator().manual_seed(seed)
    spectrum = (0.01 * torch.randn(1, 3, size, size // 2 + 1, 2, generator=g)).requires_grad_(True)
    scale = torch.from_numpy(spectrum_scale(size))
    colour = torch.from_numpy(COLOR_MATRIX.T.copy())
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    target = torch.from_numpy(target)
    opt = torch.optim.Adam([spectrum], lr=0.05)
    store = {}

    class Stop(Exception):
        pass

    def hook(module, inputs, output):
        store["a"] = output
        if lean:
            raise Stop

    handle = block.register_forward_hook(hook)
    try:
        for _ in range(steps):
            opt.zero_grad()
            img = torch.fft.irfft2(torch.view_as_complex(spectrum) * scale, s=(size, size)) / 4.0
            img = torch.sigmoid((img.permute(0, 2, 3, 1) @ colour).permute(0, 3, 1, 2))
            # pad 2 white, then one affine warp for the jitters, scale and rotation (white outside)
            img = F.pad(img, (PAD, PAD, PAD, PAD), value=1.0)
            s = float(SCALES[np.random.randint(len(SCALES))])
            a = math.radians(float(ANGLES[np.random.randint(len(ANGLES))]))
            shift = sum(np.random.randint(0, d + 1, 2) - d / 2 for d in JITTERS) * size / 224
            full = size + 2 * PAD
            theta = torch.tensor([[math.cos(a) / s, -math.sin(a) / s, -2 * shift[1] / full],
                                  [math.sin(a) / s, math.cos(a) / s, -2 * shift[0] / full]],
                                 dtype=torch.float32)[None]
            grid = F.affine_grid(theta, (1, 3, full, full), align_corners=False)
            img = F.grid_sample(img - 1.0, grid, align_corners=False) + 1.0
            img = img[:, :, PAD:PAD + size, PAD:PAD + size]
            img = F.interpolate(img, size=(224, 224), mode="bilinear", align_corners=False)
            try:
                net((img - mean) / std)
            except Stop:
                pass
            acts = store["a"][:, :, 7, 7]
            dot = (acts * target).mean(-1)
            cossim = torch.clamp(dot / (1e-4 + acts.norm(dim=-1)), min=0.1)
            loss = -(dot * cossim ** p).sum()
            loss.backward()
            opt.step()
    finally:
        handle.remove()


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=32)
    ap.add_argument("--icons", type=int, default=8, help="icons per JAX batch (one level's batch)")
    ap.add_argument("--size", type=int, default=80)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", help="write the figures here")
    args = ap.parse_args(argv)

    import torch
    torch.set_num_threads(args.threads)
    import atlas_demo
    from atlas_core import IMAGENET_MEAN, IMAGENET_STD, IconRequest
    from atlas_jax.featureviz import FeatureVizRenderer
    from atlas_jax.model import OnnxJaxBackend

    model = OnnxJaxBackend().open(str(atlas_demo.efficientnet_lite0_onnx("dynamo")), mean=IMAGENET_MEAN,
                                  std=IMAGENET_STD, batch_size=16)
    dirs, moment = directions_and_moment(model, args.icons)
    from atlas_jax.featureviz import DEFAULTS, whitened
    targets = whitened(dirs, moment if DEFAULTS["whiten"] else None)
    net = atlas_demo.efficientnet_lite0()
    block = net._blocks[BLOCK]

    renderer = FeatureVizRenderer()

    def jax_level(seed):
        req = IconRequest(model=model, layer=LAYER_ONNX, directions=dirs, icon_size=args.size, seed=seed,
                          moment=moment, options=dict(steps=args.steps, attempts=1, batch=args.icons))
        return renderer.render(req)

    t = time.perf_counter()
    jax_level(0)  # compiles (the renderer compiles once per level; reported separately)
    first = time.perf_counter() - t
    times = {"jax": [], "torch_lucent": [], "torch_lean": []}
    for rep in range(args.reps):
        for lean in (False, True):
            for p in net.parameters():
                p.requires_grad_(not lean)
            np.random.seed(rep)
            t = time.perf_counter()
            torch_icon(net, block, targets[rep % len(targets)], args.steps, args.size, 4.0, lean, rep)
            times["torch_lean" if lean else "torch_lucent"].append(time.perf_counter() - t)
        t = time.perf_counter()
        jax_level(rep + 1)
        times["jax"].append((time.perf_counter() - t) / args.icons)
    med = {k: statistics.median(v) for k, v in times.items()}
    report = {
        "model": "EfficientNet-Lite0 (real weights)", "layer": f"{LAYER_ONNX} (block {BLOCK}, 14x14x112)",
        "steps": args.steps, "icon_size": args.size, "view": 224, "jax_batch": args.icons,
        "threads": args.threads, "cpu_count": os.cpu_count(), "load_avg": os.getloadavg()[0],
        "seconds_per_icon": med, "all": times,
        "jax_first_call_seconds_per_icon_incl_compile": first / args.icons,
        "speedup_vs_torch_lucent": med["torch_lucent"] / med["jax"],
        "speedup_vs_torch_lean": med["torch_lean"] / med["jax"],
    }
    print(json.dumps(report, indent=1))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(report, fh, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
