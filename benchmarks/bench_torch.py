"""Torch backend versus ONNX backend: activation throughput on the same model, images and threads.

EfficientNet-Lite0 (real ImageNet weights): the torch module from ``atlas_demo`` through the
``torch`` backend, and its dynamo ONNX export through the ``onnx`` backend (onnxruntime). Both
get the same real images (demo views of the bundled photos, 224 px), the same batch size and the
same number of CPU threads. Runs alternate between the backends so that load from other processes
hits both alike; the table gives medians over rounds.

    .venv/bin/python benchmarks/bench_torch.py                   # 128 images, 3 rounds, 2 threads
    .venv/bin/python benchmarks/bench_torch.py --write           # also update docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import platform
import re
import statistics
import time
from pathlib import Path

import numpy as np

DOC = Path(__file__).resolve().parent.parent / "docs" / "benchmarks.md"
SECTION = "## PyTorch backend"
# (what, torch layer, ONNX tensor of the same value; see plugins/torch/tests/test_torch_backend.py)
LAYERS = [("logits (whole model)", "output", "logits"),
          ("residual stream of stage 5, 14x14x112", "_blocks.10", "add_530")]


def images(n: int) -> np.ndarray:
    import atlas_demo
    source = atlas_demo.demo_images()
    step = max(1, len(source) // n)
    return np.stack([source.load(i * step, (224, 224)) for i in range(n)])


def rate(model, x, layer: str) -> float:
    t = time.perf_counter()
    model.activations(x, [layer])
    return len(x) / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=128, help="images per run")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--write", action="store_true", help=f"replace the section {SECTION!r} of {DOC}")
    args = ap.parse_args()

    import atlas_demo
    import onnxruntime
    import torch
    from atlas_core.models import open_model
    opts = dict(preset="imagenet", threads=args.threads, batch_size=args.batch_size, device="cpu")
    tm = open_model(atlas_demo.efficientnet_lite0(), backend="torch", **opts)
    om = open_model(str(atlas_demo.efficientnet_lite0_onnx("dynamo")), backend="onnx", **opts)
    x = images(args.n)
    rows = []
    for what, t_layer, o_layer in LAYERS:
        np.testing.assert_allclose(tm.activations(x[:4], [t_layer])[t_layer],
                                   om.activations(x[:4], [o_layer])[o_layer], rtol=1e-3, atol=1e-3)  # + warm-up
        t_rates, o_rates = [], []
        for _ in range(args.rounds):
            t_rates.append(rate(tm, x, t_layer))
            o_rates.append(rate(om, x, o_layer))
        t, o = statistics.median(t_rates), statistics.median(o_rates)
        rows.append((what, t, o, t / o))
        print(f"{what:<40} torch {t:6.1f} img/s   onnx {o:6.1f} img/s   torch/onnx {t / o:.2f}", flush=True)

    table = [
        SECTION, "",
        f"EfficientNet-Lite0 (real ImageNet weights), {args.n} real demo images at 224 px, batch {args.batch_size}, "
        f"{args.threads} CPU threads for both, {args.rounds} alternating rounds (medians), "
        f"torch {torch.__version__} vs onnxruntime {onnxruntime.__version__} on the same model "
        f"(the `onnx` backend runs `atlas_demo.efficientnet_lite0_onnx('dynamo')`), {platform.machine()}, "
        f"{time.strftime('%Y-%m-%d')}. `python benchmarks/bench_torch.py --write` reproduces it.", "",
        "| layer | torch backend (img/s) | ONNX backend (img/s) | torch / ONNX |",
        "|---|---:|---:|---:|",
        *[f"| {what} | {t:.1f} | {o:.1f} | {r:.2f} |" for what, t, o, r in rows], "",
        "The torch backend stops the forward pass once the asked-for layers are captured, so a mid layer costs "
        "less than the whole model; the ONNX backend prunes its graph the same way. The machine is shared: "
        "compare the ratio, not the absolute rates.", ""]
    if args.write:
        write_section("\n".join(table))
        print(f"wrote {SECTION!r} in {DOC}")


def write_section(text: str) -> None:
    """Replace (or append) this script's section of docs/benchmarks.md, leaving the others alone."""
    doc = DOC.read_text() if DOC.is_file() else "# Benchmarks\n"
    pattern = re.compile(rf"^{re.escape(SECTION)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(doc):
        doc = pattern.sub(lambda _: text + "\n", doc, count=1)
    else:
        doc = doc.rstrip("\n") + "\n\n" + text
    DOC.write_text(doc.rstrip("\n") + "\n")


if __name__ == "__main__":
    main()
