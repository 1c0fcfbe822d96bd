"""Torch backend versus ONNX backend: activation throughput on the same model, images and threads.

EfficientNet-Lite0 (real ImageNet weights): the torch module from ``atlas_demo`` through the
``torch`` backend, and its dynamo ONNX export through the ``onnx`` backend (onnxruntime). Both
get the same real images (demo views of the bundled photos, 224 px), the same batch size and the
same number of CPU threads. Runs alternate between the backends so that load from other processes
hits both alike; the table gives medians over rounds.

torch's CPU build uses GNU OpenMP, whose threads spin while they wait: on a machine with more busy
threads than cores that collapses torch's throughput. Each configuration runs in its own process,
once with OpenMP's default wait policy and once with ``OMP_WAIT_POLICY=PASSIVE`` (it must be set
before torch is imported).

    .venv/bin/python benchmarks/bench_torch.py                   # 128 images, 3 rounds, 2 threads
    .venv/bin/python benchmarks/bench_torch.py --write           # also update docs/benchmarks.md
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
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


def measure(args) -> dict:
    """Throughput of both backends at every layer of LAYERS, in this process."""
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
        rows.append([what, statistics.median(t_rates), statistics.median(o_rates)])
    return {"rows": rows, "torch": torch.__version__, "onnxruntime": onnxruntime.__version__,
            "load": os.getloadavg()[0]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=128, help="images per run")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--write", action="store_true", help=f"replace the section {SECTION!r} of {DOC}")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(measure(args)))
        return

    results = {}
    for policy in ("default", "PASSIVE"):
        env = dict(os.environ)
        env.pop("OMP_WAIT_POLICY", None)
        if policy != "default":
            env["OMP_WAIT_POLICY"] = policy
        argv = [sys.executable, __file__, "--child", "--n", str(args.n), "--rounds", str(args.rounds),
                "--threads", str(args.threads), "--batch-size", str(args.batch_size)]
        out = subprocess.run(argv, env=env, capture_output=True, text=True, check=True)
        results[policy] = json.loads(out.stdout.strip().splitlines()[-1])
        for what, t, o in results[policy]["rows"]:
            print(f"OMP {policy:<8} {what:<40} torch {t:6.1f} img/s   onnx {o:6.1f} img/s   "
                  f"torch/onnx {t / o:.2f}", flush=True)

    first = results["default"]
    table = [
        SECTION, "",
        f"EfficientNet-Lite0 (real ImageNet weights), {args.n} real demo images at 224 px, batch {args.batch_size}, "
        f"{args.threads} CPU threads for both, {args.rounds} alternating rounds (medians), torch {first['torch']} "
        f"vs onnxruntime {first['onnxruntime']} on the same model (the `onnx` backend runs "
        f"`atlas_demo.efficientnet_lite0_onnx('dynamo')`), {platform.machine()}, {os.cpu_count()} cores, "
        f"{time.strftime('%Y-%m-%d')}. Each OpenMP wait policy ran in its own process. "
        "`python benchmarks/bench_torch.py --write` reproduces it.", "",
        "| torch's OpenMP wait policy | layer | torch backend (img/s) | ONNX backend (img/s) | torch / ONNX |",
        "|---|---|---:|---:|---:|",
        *[f"| {policy} (load {res['load']:.1f}) | {what} | {t:.1f} | {o:.1f} | {t / o:.2f} |"
          for policy, res in results.items() for what, t, o in res["rows"]], "",
        "The machine is shared (load is the 1-minute load average when the run ended, on "
        f"{os.cpu_count()} cores): compare ratios within a row, not absolute rates across rows. torch's GNU "
        "OpenMP threads spin while they wait; with more busy threads than cores they take the cores from each "
        "other and torch's rate collapses, which `OMP_WAIT_POLICY=PASSIVE` (set before torch is imported) "
        "avoids. The torch backend stops the forward pass once the asked-for layers are captured.", ""]
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
