"""UMAP compilation tax: cold (empty numba cache) vs second run vs in-process warm fit.

Every measured fit runs in a fresh subprocess (as a user's ``atlas build`` does), on the
same real activations: EfficientNet-Lite0 (real ImageNet weights, ONNX, onnxruntime)
at ``/_blocks.8/_swish_1/Clip_output_0`` (14x14x480, after ReLU6), several interior
spatial positions per image of the demo photo views. Activations are cached under
``~/.cache/actatlas/bench``.

    .venv/bin/python benchmarks/bench_umap.py              # 10,000 samples, 2 rounds
    .venv/bin/python benchmarks/bench_umap.py --n 3000 --rounds 1

Modes (each in its own fresh process):
  cold    the plugin's numba cache folder is empty (first ``atlas build`` ever)
  second  the cache folder left by the previous run (every later ``atlas build``)
  warm    a second fit in the same process (nothing left to compile): the floor
  stock   plain ``umap.UMAP`` with numba's default (no persistent cache): before the fix
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
mode = sys.argv[2]
t_start = time.perf_counter()
if mode == "stock":
    import umap
    t_import = time.perf_counter() - t_start
    fit = lambda: umap.UMAP(n_neighbors=50, min_dist=0.05, metric="cosine", random_state=0).fit_transform(X)
else:
    from atlas_core.plugins import get_registry
    est = lambda: get_registry().reducer("umap", n_components=2, random_state=0)
    import atlas_umap.compile as c
    c.prepare()
    import umap
    t_import = time.perf_counter() - t_start
    fit = lambda: est().fit_transform(X)
t = time.perf_counter(); Y = fit(); t_fit = time.perf_counter() - t
out = {"import": t_import, "fit": t_fit, "total": time.perf_counter() - t0, "checksum": float(np.abs(Y).sum())}
if mode == "warm":
    t = time.perf_counter(); fit(); out["warm_fit"] = time.perf_counter() - t
print(json.dumps(out))
"""


def run_child(data: Path, mode: str, cache_dir: Path, extra_env=None) -> dict:
    env = dict(os.environ)
    env["ATLAS_NUMBA_CACHE_DIR"] = str(cache_dir)
    env.pop("NUMBA_CACHE_DIR", None)
    if mode == "stock":
        env["NUMBA_CACHE_DIR"] = str(cache_dir)  # stock numba with a (fresh) persistent cache dir
    env.update(extra_env or {})
    t = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", CHILD, str(data), mode], env=env, capture_output=True,
                         text=True)
    if out.returncode:
        raise RuntimeError(f"{mode} child failed:\n{out.stderr[-3000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["process"] = time.perf_counter() - t
    return result


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=10_000, help="number of samples (default 10,000)")
    ap.add_argument("--rounds", type=int, default=2, help="repeat the whole sequence (default 2)")
    ap.add_argument("--no-stock", action="store_true", help="skip the stock umap (before-fix) baseline")
    ap.add_argument("--json", help="also write the raw results here")
    args = ap.parse_args(argv)
    X = real_activations(args.n)
    print(f"data: {X.shape[0]} x {X.shape[1]} real activations ({LAYER}), {os.cpu_count()} cpus", flush=True)
    tmp = Path(tempfile.mkdtemp(prefix="bench-umap-"))
    data = tmp / "X.npy"
    import numpy as np
    np.save(data, X)
    rows = []
    try:
        for r in range(args.rounds):
            cache = tmp / f"numba-{r}"
            seq = []
            if not args.no_stock:
                seq += [("stock", tmp / f"stock-{r}")]
            seq += [("cold", cache), ("second", cache), ("warm", cache)]
            for mode, cdir in seq:
                if mode in ("cold", "stock"):
                    shutil.rmtree(cdir, ignore_errors=True)
                res = run_child(data, mode, cdir)
                res.update(mode=mode, round=r)
                rows.append(res)
                extra = f" warm_fit {res['warm_fit']:.1f}s" if "warm_fit" in res else ""
                print(f"round {r} {mode:6s}: import {res['import']:5.1f}s fit {res['fit']:6.1f}s "
                      f"process {res['process']:6.1f}s{extra}", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    med = lambda xs: float(np.median(xs))
    by = lambda mode, key: med([r[key] for r in rows if r["mode"] == mode])
    warm = by("warm", "warm_fit")
    summary = {"n": int(X.shape[0]), "warm_fit": warm,
               "cold_process": by("cold", "process"), "second_process": by("second", "process")}
    print(f"\nmedians over {args.rounds} round(s); ratios to the in-process warm fit ({warm:.1f}s):")
    for mode in (["stock"] if not args.no_stock else []) + ["cold", "second"]:
        fit, proc = by(mode, "fit"), by(mode, "process")
        summary[f"{mode}_fit"] = fit
        summary[f"{mode}_process"] = proc
        print(f"  {mode:6s}: first fit {fit:6.1f}s ({fit / warm:4.1f}x)   whole process {proc:6.1f}s "
              f"({proc / warm:4.1f}x)")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "summary": summary}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
