"""UMAP compilation tax: cold (empty numba cache) vs second run vs in-process warm fit.

Every measured fit runs in a fresh subprocess (as a user's ``atlas build`` does), on the
same real activations: EfficientNet-Lite0 (real ImageNet weights, ONNX, onnxruntime)
at ``/_blocks.8/_swish_1/Clip_output_0`` (14x14x480, after ReLU6), several interior
spatial positions per image of the demo photo views. Activations are cached under
``~/.cache/actatlas/bench``.

    .venv/bin/python benchmarks/bench_umap.py              # 10,000 samples, 2 rounds
    .venv/bin/python benchmarks/bench_umap.py --n 3000 --rounds 1 --variants plugin

Each variant runs twice in fresh processes sharing one private numba cache folder:
  cold    the cache folder is empty (a user's first ``atlas build``)
  second  the folder the cold run left (every later ``atlas build``); it fits twice, and its
          second fit is ``warm``: nothing left to compile, the floor a later run can reach.
Variants: ``stock`` plain umap.UMAP (the issue's baseline, NUMBA_CACHE_DIR set), ``plugin``
the ``umap`` reducer, ``approx`` the reducer with ``knn="approximate"`` (pynndescent).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LAYER = "/_blocks.8/_swish_1/Clip_output_0"
CACHE = Path(os.environ.get("ATLAS_CACHE") or Path.home() / ".cache" / "actatlas") / "bench"


def real_activations(n: int = 10_000, per_image: int = 25, seed: int = 0):
    """``n`` x 480 float32 real activations (non-negative), computed once and cached."""
    import numpy as np
    path = CACHE / f"effnet-lite0-blocks8-{n}-{per_image}-{seed}.npy"
    if path.is_file():
        return np.load(path)
    import atlas_demo
    import onnx
    import onnxruntime as ort
    model = onnx.load(str(atlas_demo.efficientnet_lite0_onnx("legacy")))
    model.graph.output.append(onnx.helper.make_tensor_value_info(LAYER, onnx.TensorProto.FLOAT, None))
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    source = atlas_demo.demo_images()
    n_images = -(-n // per_image)
    rng = np.random.default_rng(seed)
    ids = np.sort(rng.choice(len(source), size=n_images, replace=False))
    mean = np.array([0.485, 0.456, 0.406], np.float32)
    std = np.array([0.229, 0.224, 0.225], np.float32)
    rows = []
    for start in range(0, n_images, 32):
        batch = np.stack([source.load(int(i), (224, 224)) for i in ids[start:start + 32]])
        x = ((batch - mean) / std).transpose(0, 3, 1, 2).astype(np.float32)
        act = sess.run([LAYER], {"input": x})[0]  # N, 480, 14, 14
        h, w = act.shape[2:]
        for a in act:
            ys = rng.integers(1, h - 1, per_image)  # interior positions: avoid both edges
            xs = rng.integers(1, w - 1, per_image)
            rows.append(a[:, ys, xs].T)
    X = np.ascontiguousarray(np.concatenate(rows)[:n], dtype=np.float32)
    CACHE.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp.npy")
    np.save(tmp, X)
    os.replace(tmp, path)
    return X


CHILD = r"""
import json, os, sys, time
t0 = time.perf_counter()
import numpy as np
X = np.load(sys.argv[1])
variant, fits = sys.argv[2], int(sys.argv[3])
t = time.perf_counter()
if variant == "stock":
    import umap
    make = lambda: umap.UMAP(n_neighbors=20, min_dist=0.01, metric="cosine", random_state=0)
else:
    from atlas_core.plugins import get_registry
    from atlas_umap.compile import prepare
    prepare()
    knn = "approximate" if variant == "approx" else "auto"
    make = lambda: get_registry().reducer("umap", n_components=2, random_state=0, knn=knn)
t_import = time.perf_counter() - t
from numba.core import event
times, compiled = [], []
for i in range(fits):
    with event.install_recorder("numba:compile") as rec:
        t = time.perf_counter()
        Y = make().fit_transform(X)
        times.append(time.perf_counter() - t)
    compiled.append(len({id(e.data["dispatcher"]) for _, e in rec.buffer if e.is_start}))
print(json.dumps({"import": t_import, "fits": times, "compiled": compiled,
                  "total": time.perf_counter() - t0}))
"""

VARIANTS = {
    "stock": "umap.UMAP(20, 0.01, cosine) with NUMBA_CACHE_DIR set (the issue's baseline)",
    "plugin": "the umap reducer: exact kNN (auto at this size) + persistent cache + caching enabled",
    "approx": "the umap reducer with knn='approximate' (pynndescent, as above 20,000 samples)",
}


def run_child(data: Path, variant: str, fits: int, cache_dir: Path) -> dict:
    env = dict(os.environ)
    env["NUMBA_CACHE_DIR"] = str(cache_dir)  # a private cache: cold means empty
    t = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", CHILD, str(data), variant, str(fits)], env=env,
                         capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"{variant} child failed:\n{out.stderr[-3000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["process"] = time.perf_counter() - t
    return result


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=10_000, help="number of samples (default 10,000)")
    ap.add_argument("--rounds", type=int, default=2, help="repeat every measurement (default 2)")
    ap.add_argument("--variants", default="stock,plugin,approx", help="comma-separated: " + ", ".join(VARIANTS))
    ap.add_argument("--json", help="also write the raw results here")
    args = ap.parse_args(argv)
    import numpy as np
    X = real_activations(args.n)
    variants = [v for v in args.variants.split(",") if v]
    print(f"data: {X.shape[0]} x {X.shape[1]} real activations ({LAYER}), {os.cpu_count()} cpus", flush=True)
    tmp = Path(tempfile.mkdtemp(prefix="bench-umap-"))
    data = tmp / "X.npy"
    np.save(data, X)
    rows = []
    try:
        for r in range(args.rounds):
            for variant in variants:  # interleaved, so that load from other work hits all alike
                cache = tmp / f"numba-{variant}-{r}"
                for mode, fits in (("cold", 1), ("second", 2)):
                    res = run_child(data, variant, fits, cache)
                    res.update(variant=variant, mode=mode, round=r)
                    rows.append(res)
                    print(f"round {r} {variant:6s} {mode:6s}: import {res['import']:5.1f}s  fits "
                          f"{', '.join(f'{x:.1f}s' for x in res['fits'])}  compiled {res['compiled']}  "
                          f"process {res['process']:.1f}s", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    med = lambda xs: float(np.median(xs))
    summary = {"n": int(X.shape[0]), "cpus": os.cpu_count()}
    print(f"\nmedians over {args.rounds} round(s); 'warm' is the second fit inside the 'second' process")
    print(f"{'variant':8s} {'cold proc':>10s} {'2nd proc':>10s} {'cold fit':>9s} {'2nd fit':>8s} {'warm fit':>9s} "
          f"{'2nd/warm':>9s} {'cold/warm':>10s}")
    for v in variants:
        pick = lambda mode, f: med([f(x) for x in rows if x["variant"] == v and x["mode"] == mode])
        s = {"cold_process": pick("cold", lambda x: x["process"]),
             "second_process": pick("second", lambda x: x["process"] - x["fits"][1]),
             "cold_fit": pick("cold", lambda x: x["fits"][0]),
             "second_fit": pick("second", lambda x: x["fits"][0]),
             "warm_fit": pick("second", lambda x: x["fits"][1])}
        s["second_over_warm"] = s["second_fit"] / s["warm_fit"]
        s["cold_over_warm"] = s["cold_fit"] / s["warm_fit"]
        summary[v] = s
        print(f"{v:8s} {s['cold_process']:9.1f}s {s['second_process']:9.1f}s {s['cold_fit']:8.1f}s "
              f"{s['second_fit']:7.1f}s {s['warm_fit']:8.1f}s {s['second_over_warm']:8.2f}x "
              f"{s['cold_over_warm']:9.2f}x")
    if "stock" in summary and "plugin" in summary:
        print(f"\nsecond-run fit, stock / plugin: {summary['stock']['second_fit'] / summary['plugin']['second_fit']:.2f}x; "
              f"second-run process, stock / plugin: "
              f"{summary['stock']['second_process'] / summary['plugin']['second_process']:.2f}x")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "summary": summary}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
