"""`atlas health` over every layer of EfficientNet-Lite0 against a plain onnxruntime forward pass of the same images.

EfficientNet-Lite0 (real ImageNet weights, the dynamo export) on views of the real demo photos, all 94 layers
(13.1 million values per image). The plain pass decodes the same images from the same source, normalizes them
and runs the untouched model in one onnxruntime session with the same threads and batch. Each round runs the
plain pass, then `health`, then the backend's taps alone (every layer fetched, no statistics: the floor of any
health pass through onnxruntime), then `health` of the 33 ReLU6 outputs only; the ratio is taken per round and
the median is reported.

    .venv/bin/python benchmarks/bench_health.py --images 1000 --threads 2 --rounds 3
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import numpy as np
import onnxruntime as ort

import atlas_demo
from atlas_core.analysis import stream
from atlas_core.analysis.health import health
from atlas_core.images import ArraySource
from atlas_core.models import open_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    path = atlas_demo.efficientnet_lite0_onnx("dynamo")
    model = open_model(path, threads=args.threads, batch_size=args.batch)
    views = atlas_demo.demo_images()
    step = max(1, len(views) // args.images)
    source = ArraySource(np.stack([np.rint(views.load(i * step % len(views), (224, 224)) * 255).astype(np.uint8)
                                   for i in range(args.images)]))
    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    plain = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    layers = model.layers()
    names = [x.name for x in layers]
    per_call = stream.forward_batch(layers, args.batch)

    def run_plain():
        for start in range(0, len(source), args.batch):
            images = np.stack([source.load(i) for i in range(start, min(len(source), start + args.batch))])
            plain.run(None, {model.input_name: model.prepare(images)})

    def run_health():
        with tempfile.TemporaryDirectory() as out:
            return health(model, source, out, layers="all", batch_size=args.batch, quiet=True)

    clips = [x.name for x in layers if x.bounds is not None]

    def run_clips():
        with tempfile.TemporaryDirectory() as out:
            return health(model, source, out, layers=clips, batch_size=args.batch, quiet=True)

    def run_taps():
        for batch in stream.Decoder(source, (224, 224)).batches(per_call):
            stream.channel_values(model, batch.images, names)

    health(model, ArraySource(source.array[:4]), tempfile.mkdtemp(), quiet=True)  # warm up: sessions, plan
    run_plain()
    rows = []
    for r in range(args.rounds):
        times = {}
        for label, fn in (("plain", run_plain), ("health", run_health), ("taps", run_taps), ("clips", run_clips)):
            t = time.perf_counter()
            result = fn()
            times[label] = time.perf_counter() - t
            if label == "health":
                summary = result["summary"]
        rows.append(times)
        print(f"round {r + 1}: plain {times['plain']:.1f} s, health {times['health']:.1f} s "
              f"({times['health'] / times['plain']:.2f}x), taps alone {times['taps']:.1f} s "
              f"({times['taps'] / times['plain']:.2f}x), health of the {len(clips)} ReLU6 outputs {times['clips']:.1f} s "
              f"({times['clips'] / times['plain']:.2f}x)", flush=True)
    ratio = statistics.median(t["health"] / t["plain"] for t in rows)
    taps = statistics.median(t["taps"] / t["plain"] for t in rows)
    clip_ratio = statistics.median(t["clips"] / t["plain"] for t in rows)
    print(f"{args.images} images, {len(names)} layers ({stream.per_image_bytes(layers) / 4e6:.1f} M values per "
          f"image), {per_call} images per forward call, {args.threads} threads")
    print(f"plain onnxruntime: {statistics.median(t['plain'] for t in rows):.1f} s "
          f"({args.images / statistics.median(t['plain'] for t in rows):.0f} images/s)")
    print(f"atlas health: {statistics.median(t['health'] for t in rows):.1f} s, median ratio {ratio:.2f}x "
          f"(taps alone {taps:.2f}x); {summary['dead']} dead, {summary['dormant']} dormant, "
          f"{summary['saturated']} saturated of {summary['channels']} channels")
    print(f"atlas health of the {len(clips)} ReLU6 outputs only: median ratio {clip_ratio:.2f}x")


if __name__ == "__main__":
    main()
