"""Collection throughput: the in-process executor against the ray executor with 1 and 2 workers, in one run.

EfficientNet-Lite0 (real ImageNet weights, the dynamo ONNX export) on views of the real demo photos, decoded once
into a .npy file. Each round fills a fresh samples store (only the collect stage) with every variant in turn,
rotating which goes first, so a change in the machine's load hits all of them alike; medians over the rounds.
The Ray variants run on one local cluster of 2 CPUs started once (its start is timed on its own); each run starts
a fresh actor pool, which opens the model once per worker.

- ``samples/s``: the whole collect stage (the driver opening the model, the pool starting, the chunks, the store
  consolidated), samples over seconds.
- ``steady samples/s``: from the chunk files' write times: the chunks after each worker's first one, over the
  time from the last of those first chunks to the last chunk (start-up left out).

Then the store's own rates on this disk: writing whole chunks (``SampleStore.write_chunk``: savez, fsync, rename)
and consolidating them (``SampleStore.consolidate``), in MB/s, from the real chunks the runs wrote; and the rate
at which one thread decodes 640x480 JPEG files to 224x224 (what a GPU worker would wait for).

    .venv/bin/python benchmarks/bench_ray.py --images 512 --chunk 32 --rounds 3
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

import atlas_demo
from atlas_core.stages import build_state
from atlas_core.stages.collect import CollectStage
from atlas_core.store import SampleStore

LAYER = "add_530"


def variants(threads: int) -> dict:
    """name -> (build options, workers); the in-process executor gets the same total threads as 2 Ray workers."""
    return {
        f"in-process, {threads} threads": (dict(input_options={"threads": threads}), 1),
        "in-process, 1 thread": (dict(input_options={"threads": 1}), 1),
        "ray, 1 worker x 1 thread": (dict(executor="ray", executor_options={"workers": 1, "threads": 1}), 1),
        "ray, 2 workers x 1 thread": (dict(executor="ray", executor_options={"workers": 2, "threads": 1}), 2),
    }


def steady_rate(root: Path, workers: int, chunk: int, samples_per_image: int) -> float:
    times = sorted(p.stat().st_mtime for p in root.glob("chunk-*.npz"))
    after = times[workers - 1:]
    if len(after) < 2:
        return float("nan")
    return (len(after) - 1) * chunk * samples_per_image / (after[-1] - after[0])


def table(result: dict, names: list, args, n_samples: int) -> None:
    base = result["samples_per_s"][names[0]]
    print(f"\n{args.images} images x {args.samples_per_image} = {n_samples} samples of {LAYER} "
          f"({result['channels']} channels), chunks of {args.chunk}, batch {args.batch}, {args.rounds} rounds; local "
          f"Ray cluster start {result['cluster_start_s']:.1f} s; load average {result['load_average'][0]:.2f}")
    print("| executor | samples/s (median) | ratio to in-process 2 threads | steady samples/s |")
    print("|---|---:|---:|---:|")
    for n in names:
        print(f"| {n} | {result['samples_per_s'][n]:.1f} | {result['samples_per_s'][n] / base:.2f} | "
              f"{result['steady_samples_per_s'][n]:.1f} |")
    two, one = result["samples_per_s"][names[3]], result["samples_per_s"][names[2]]
    s2, s1 = result["steady_samples_per_s"][names[3]], result["steady_samples_per_s"][names[2]]
    print(f"2 workers / 1 worker: {two / one:.2f}x (steady {s2 / s1:.2f}x); Ray 2x1 against in-process 2 threads: "
          f"{two / base:.2f} (steady {s2 / result['steady_samples_per_s'][names[0]]:.2f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--chunk", type=int, default=32, help="images per store chunk")
    parser.add_argument("--samples-per-image", type=int, default=2)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--write-chunk", type=int, default=256, help="images per chunk for the store's write rate")
    parser.add_argument("--writes", type=int, default=32, help="chunks written for the store's write rate")
    parser.add_argument("--decode", type=int, default=64, help="640x480 JPEG files decoded for the decode rate")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args()

    import ray
    work = Path(tempfile.mkdtemp(prefix="bench-ray-"))
    source = atlas_demo.demo_images()
    images = work / "images.npy"
    picks = [i * 7 % len(source) for i in range(args.images)]
    np.save(images, np.stack([(source.load(i, (224, 224)) * 255).round().astype(np.uint8) for i in picks]))
    model = str(atlas_demo.efficientnet_lite0_onnx("dynamo"))
    options = dict(stages=[CollectStage], samples_per_image=args.samples_per_image, chunk_images=args.chunk,
                   batch_size=args.batch, attribution=False, quiet=True)

    t = time.perf_counter()
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR,
             object_store_memory=256 * 1024 ** 2)
    cluster_start = time.perf_counter() - t

    warm = build_state(model, str(images), LAYER, work / "warm-up", **options)  # first session, page cache
    chosen = variants(2)
    names = list(chosen)
    totals: dict = {n: [] for n in names}
    steady: dict = {n: [] for n in names}
    n_samples = args.images * args.samples_per_image
    for r in range(args.rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for name in order:
            build, workers = chosen[name]
            out = work / f"r{r}-{names.index(name)}"
            t = time.perf_counter()
            state = build_state(model, str(images), LAYER, out, **options, **build)
            seconds = time.perf_counter() - t
            assert state.store.complete() and len(state.store) == n_samples
            totals[name].append(n_samples / seconds)
            steady[name].append(steady_rate(state.store.root, workers, args.chunk, args.samples_per_image))
            print(f"round {r} {name}: {totals[name][-1]:.1f} samples/s, steady {steady[name][-1]:.1f}", flush=True)
    ray.shutdown()

    # the store's rates on this disk: --writes chunks of --write-chunk images, each joined from the real chunks of
    # the warm-up run, written into one store (savez, fsync, rename), then consolidated
    real = warm.store
    channels = real.activations().shape[1]
    parts: dict = {}
    for k in range(real.n_chunks):
        with np.load(real.root / f"chunk-{k:07d}.npz") as z:
            for c in z.files:
                if c not in ("start", "end", "skipped"):
                    parts.setdefault(c, []).append(z[c])
    joined = {c: np.concatenate(v) for c, v in parts.items()}
    columns = {c: a[:max(1, round(len(a) * args.write_chunk / args.images))] for c, a in joined.items()}
    store = SampleStore(work / "write", {"bench": "write"}, args.writes * args.write_chunk, args.write_chunk)
    writes = []
    for k in range(args.writes):
        t = time.perf_counter()
        store.write_chunk(k, columns, [])
        writes.append(time.perf_counter() - t)
    sizes = [(store.root / f"chunk-{k:07d}.npz").stat().st_size for k in range(args.writes)]
    write_mb_s = sum(sizes) / sum(writes) / 1e6
    t = time.perf_counter()
    store.consolidate()
    consolidate_s = time.perf_counter() - t
    consolidated = sum((store.root / f"{c}.npy").stat().st_size for c in store.columns())

    # what a GPU worker would wait for: decoding and resizing JPEG files on one CPU thread (the worker loads
    # its chunk's images itself, one after the other)
    from PIL import Image

    from atlas_core.images import open_source
    folder = work / "jpeg"
    folder.mkdir()
    for i in range(args.decode):
        view = source.load(picks[i % len(picks)], (480, 640))
        Image.fromarray((view * 255).round().astype(np.uint8)).save(folder / f"{i:04d}.jpg", quality=90)
    jpegs = open_source(str(folder))
    t = time.perf_counter()
    for i in range(len(jpegs)):
        jpegs.load(i, (224, 224))
    decode_per_s = len(jpegs) / (time.perf_counter() - t)
    shutil.rmtree(work, ignore_errors=True)

    result = {"images": args.images, "chunk_images": args.chunk, "samples_per_image": args.samples_per_image,
              "batch": args.batch, "rounds": args.rounds, "channels": channels, "cluster_start_s": cluster_start,
              "load_average": os.getloadavg(),
              "samples_per_s": {n: statistics.median(v) if v else None for n, v in totals.items()},
              "steady_samples_per_s": {n: statistics.median(v) if v else None for n, v in steady.items()},
              "runs": {n: [round(x, 1) for x in totals[n]] for n in names},
              "write_chunk_images": args.write_chunk, "chunk_bytes": statistics.median(sizes),
              "chunk_write_ms": 1000 * statistics.median(writes),
              "write_mb_s": write_mb_s, "consolidate_mb_s": consolidated / consolidate_s / 1e6,
              "decode_images_per_s": decode_per_s}
    if args.rounds:
        table(result, names, args, n_samples)
    print(f"store: chunk of {args.write_chunk} images, {result['chunk_bytes'] / 1e3:.0f} kB, written in "
          f"{result['chunk_write_ms']:.1f} ms ({write_mb_s:.0f} MB/s); "
          f"consolidate {result['consolidate_mb_s']:.0f} MB/s")
    print(f"decoding 640x480 JPEG files to 224x224, one thread: {decode_per_s:.0f} images/s")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
