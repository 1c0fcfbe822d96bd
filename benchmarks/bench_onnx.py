"""Images per second: collecting layers through the onnx backend versus a plain onnxruntime session.

EfficientNet-Lite0 (real ImageNet weights, the dynamo export with external data) on views of the real
demo photos. The plain session runs the untouched model on inputs normalized beforehand (its best
case); the backend takes canonical [0, 1] images and normalizes them itself. Same model file, batch
and threads. Variants run in turn on each batch, round after round; a ratio is taken per round (the
plain session's time over the variant's on the same batch, in the same round) and the median over
all of them is reported, so a change in machine load hits all variants alike.

    .venv/bin/python benchmarks/bench_onnx.py --batch 32 --threads 2 --rounds 7
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import onnxruntime as ort

import atlas_demo
from atlas_core.models import open_model

MID = "hardtanh_20"  # block 11's depthwise output, 14x14x672: tapped as it is
FUSED = "getitem_69"  # block 8's projection, fused into the residual Add: tapped by a copy of its Conv


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batches", type=int, default=3, help="batches per round")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()

    path = atlas_demo.efficientnet_lite0_onnx("dynamo")
    model = open_model(path, threads=args.threads, batch_size=args.batch)
    source = atlas_demo.demo_images()
    n = args.batch * args.batches
    images = np.stack([source.load(i * 7 % len(source), (224, 224)) for i in range(n)])
    batches = [images[i:i + args.batch] for i in range(0, n, args.batch)]
    prepared = [model.prepare(b) for b in batches]

    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    plain = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    variants = {
        "plain onnxruntime session (model output)": lambda i: plain.run(None, {"input": prepared[i]}),
        f"backend: {MID} only": lambda i: model.activations(batches[i], [MID]),
        f"backend: {MID} + logits": lambda i: model.activations(batches[i], [MID, "logits"]),
        f"backend: {FUSED} + logits": lambda i: model.activations(batches[i], [FUSED, "logits"]),
    }
    names = list(variants)
    for run in variants.values():  # warm up: sessions, plans
        run(0)
    # batch by batch, every variant in turn (rotating who goes first): load changes hit all alike
    times = {name: np.zeros((args.rounds, len(batches))) for name in names}
    for r in range(args.rounds):
        for i in range(len(batches)):
            for k in range(len(names)):
                name = names[(k + r + i) % len(names)]
                start = time.perf_counter()
                variants[name](i)
                times[name][r, i] = time.perf_counter() - start

    plain_times = times[names[0]]
    print(f"EfficientNet-Lite0, {n} images of 224x224 per round, batch {args.batch}, {args.threads} threads, "
          f"{args.rounds} rounds, onnxruntime {ort.__version__}, provider {model.provider}")
    print("| variant | images/s (median of rounds) | min..max | ratio to plain (median of batches) |")
    print("|---|---:|---:|---:|")
    for name in names:
        rates = n / times[name].sum(axis=1)
        ratio = float(np.median(plain_times / times[name]))
        print(f"| {name} | {statistics.median(rates):.1f} | {rates.min():.1f}..{rates.max():.1f} | {ratio:.3f} |")


if __name__ == "__main__":
    main()
