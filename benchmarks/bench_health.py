"""`atlas health` over every layer of EfficientNet-Lite0 against a plain onnxruntime forward pass of the same images.

EfficientNet-Lite0 (real ImageNet weights, the dynamo export) on views of the real demo photos, all 94 layers
(13.1 million values per image). The plain pass decodes the same images from the same source, normalizes them
and runs the untouched model in one onnxruntime session with the same threads and batch.

The images are split into chunks of ``--chunk`` images; on every chunk, in turn (rotating who goes first), run
the plain pass, the health pass over all layers (``channel_statistics``: the forward calls with every layer
tapped, the statistics), the backend's taps alone (every layer fetched, no statistics: the floor of any health
pass through onnxruntime) and the health pass of the 33 ReLU6 outputs only. The ratio is taken per chunk and
the median over chunks is reported, so a change in the machine's load hits all variants alike. A full
`health(...)` call over all images (the pass, health.json, health.png, index.html) is timed at the end against
one more plain pass.

    .venv/bin/python benchmarks/bench_health.py --images 1000 --chunk 50 --threads 2
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np
import onnxruntime as ort

import atlas_demo
from atlas_core.analysis import stream
from atlas_core.analysis.health import channel_statistics, health
from atlas_core.images import ArraySource
from atlas_core.models import open_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--chunk", type=int, default=50)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()

    path = atlas_demo.efficientnet_lite0_onnx("dynamo")
    model = open_model(path, threads=args.threads, batch_size=args.batch)
    views = atlas_demo.demo_images()
    step = max(1, len(views) // args.images)
    images = np.stack([np.rint(views.load(i * step % len(views), (224, 224)) * 255).astype(np.uint8)
                       for i in range(args.images)])
    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    plain = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    layers = model.layers()
    clips = [x for x in layers if x.bounds is not None]
    per_call = stream.forward_batch(layers, args.batch)

    def run_plain(source):
        for start in range(0, len(source), args.batch):
            batch = np.stack([source.load(i) for i in range(start, min(len(source), start + args.batch))])
            plain.run(None, {model.input_name: model.prepare(batch)})

    def run_pass(source, chosen):
        channel_statistics(model, stream.Decoder(source, (224, 224)), chosen,
                           stream.forward_batch(chosen, args.batch))

    def run_taps(source):
        names = [x.name for x in layers]
        for batch in stream.Decoder(source, (224, 224)).batches(per_call):
            stream.channel_values(model, batch.images, names)

    variants = {"plain": run_plain, "health, all 94 layers": lambda s: run_pass(s, layers),
                "taps alone, all 94 layers": run_taps, f"health, the {len(clips)} ReLU6 outputs":
                lambda s: run_pass(s, clips)}
    chunks = [ArraySource(images[i:i + args.chunk]) for i in range(0, len(images), args.chunk)]
    for run in variants.values():  # warm up: sessions, plans
        run(chunks[0])
    names = list(variants)
    times = {name: [] for name in names}
    loads = []
    for c, chunk in enumerate(chunks):
        turn = names[c % len(names):] + names[:c % len(names)]
        for name in turn:
            t = time.perf_counter()
            variants[name](chunk)
            times[name].append(time.perf_counter() - t)
        loads.append(os.getloadavg()[0])
    print(f"{args.images} images in {len(chunks)} chunks of {args.chunk}; {len(layers)} layers, "
          f"{stream.per_image_bytes(layers) / 4e6:.1f} M values per image, {per_call} images per forward call; "
          f"{args.threads} threads; load average {min(loads):.1f} to {max(loads):.1f}")
    total_plain = sum(times["plain"])
    print(f"{'plain':32s} {total_plain:6.1f} s  ({args.images / total_plain:.0f} images/s)")
    for name in names[1:]:
        ratios = [v / p for v, p in zip(times[name], times["plain"])]
        q1, med, q3 = np.percentile(ratios, [25, 50, 75])
        print(f"{name:32s} {sum(times[name]):6.1f} s  ratio to plain: median {med:.2f}x (quartiles {q1:.2f}-{q3:.2f})")
    source = ArraySource(images)
    t = time.perf_counter()
    run_plain(source)
    p = time.perf_counter() - t
    with tempfile.TemporaryDirectory() as out:
        t = time.perf_counter()
        report = health(model, source, out, layers="all", batch_size=args.batch, quiet=True)
        h = time.perf_counter() - t
    s = report["summary"]
    print(f"end to end: plain {p:.1f} s, health(...) {h:.1f} s ({h / p:.2f}x); {s['dead']} dead, {s['dormant']} "
          f"dormant, {s['saturated']} saturated, {s['constant']} constant of {s['channels']} channels; "
          f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
