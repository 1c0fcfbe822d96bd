"""The million-sample Fashion-MNIST atlas on a GPU machine: collection with onnxruntime-gpu (CUDA), the layout
with RAPIDS cuML's UMAP (the ``cuml-umap`` reducer of plugins/cuml), then the grid, icons, quality and exports as
on the CPU; time per stage, peak memory and the quality figures to a JSON file.

The data and model are those of ``benchmarks/bench_million.py``: all 70,000 Fashion-MNIST images, 15 positions
each of ``relu3`` of the ``healthy`` CNN trained here (1,050,000 samples). A GPU machine without Debian's
dataset-fashion-mnist or the cached model (the project's device machine has no network) runs from a prepared
folder:

    python benchmarks/gpu_million.py --prepare gpu-million             # here: healthy.onnx(+sidecar), images.npy, labels.json
    # there (onnxruntime-gpu and cuml-cu12 installed instead of onnxruntime):
    PYTHONPATH=.:plugins/onnx:plugins/cuml:plugins/umap python benchmarks/gpu_million.py --inputs gpu-million \
        --out $OUT/million --json $OUT/gpu-million.json

``--reducer umap`` runs the CPU reducer instead (its fit_samples strategy), for the comparison on the same
machine. ``--fit-samples N`` fits cuML on N samples and transforms the rest (default: all of them).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))

LEVELS = (10, 20, 40, 80)


def prepare(folder: Path) -> None:
    import shutil
    from million_data import fashion_all, healthy_model
    folder.mkdir(parents=True, exist_ok=True)
    model = Path(healthy_model())
    shutil.copyfile(model, folder / "healthy.onnx")
    shutil.copyfile(model.with_name(model.name + ".input.json"), folder / "healthy.onnx.input.json")
    source, labels = fashion_all()
    np.save(folder / "images.npy", np.asarray(source.array))
    (folder / "names.json").write_text(json.dumps(source.names))
    (folder / "labels.json").write_text(json.dumps(labels))
    print(f"prepared {folder}: {len(labels)} images", flush=True)


def inputs(folder):
    from atlas_core.images import ArraySource
    if folder is None:
        from million_data import fashion_all, healthy_model
        source, labels = fashion_all()
        return healthy_model(), source, labels
    folder = Path(folder)
    source = ArraySource(np.load(folder / "images.npy", mmap_mode="r"),
                         names=json.loads((folder / "names.json").read_text()))
    return str(folder / "healthy.onnx"), source, json.loads((folder / "labels.json").read_text())


def gpu_facts() -> dict:
    facts = {}
    try:
        import onnxruntime
        facts["onnxruntime"] = onnxruntime.__version__
        facts["onnxruntime_providers"] = onnxruntime.get_available_providers()
    except ImportError:
        pass
    try:
        import cuml
        facts["cuml"] = cuml.__version__
    except ImportError:
        facts["cuml"] = None
    try:
        import subprocess
        facts["gpu"] = subprocess.run(["nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader"],
                                      capture_output=True, text=True, timeout=20).stdout.strip()
    except (OSError, Exception):
        facts["gpu"] = None
    return facts


def registry():
    """Installed plugins, plus the ones this script needs imported from the source tree (PYTHONPATH) where
    they are not installed (their entry points are missing)."""
    import importlib
    from atlas_core.plugins import load
    installed = load()
    extra = []
    for name, module in (("onnx", "atlas_onnx.plugin"), ("cuml", "atlas_cuml.plugin"), ("umap", "atlas_umap.plugin")):
        if name not in installed.plugins:
            try:
                extra.append((name, importlib.import_module(module)))
            except ImportError:
                pass
    return load(extra=tuple(extra)) if extra else installed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prepare", type=Path, help="write the model and images for a machine without them")
    parser.add_argument("--inputs", type=Path, help="a folder made by --prepare")
    parser.add_argument("--out", type=Path, default=Path("gpu-million-atlas"))
    parser.add_argument("--json", type=Path, default=Path("gpu-million.json"))
    parser.add_argument("--reducer", default="cuml-umap")
    parser.add_argument("--fit-samples", type=int, default=None)
    parser.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    parser.add_argument("--batch-size", type=int, default=1024)
    args = parser.parse_args()
    if args.prepare:
        prepare(args.prepare)
        return 0
    from atlas_core import UsageError
    from atlas_core.stages import build_state
    model, source, labels = inputs(args.inputs)
    params = {"fit_samples": args.fit_samples} if args.fit_samples is not None else {}
    t = time.perf_counter()
    try:
        state = build_state(model, source, "relu3", args.out, labels=labels, samples_per_image=15, attribution=False,
                            levels=LEVELS, reducer=args.reducer, reducer_params=params, chunk_images=2048,
                            batch_size=args.batch_size, seed=0, input_options={"device": args.device},
                            registry=registry())
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    result = {"n_samples": int(len(state.store)), "reducer": args.reducer, "reducer_params": params,
              "device": args.device, "stages_s": {k: round(v, 2) for k, v in state.timings.items()},
              "total_s": round(time.perf_counter() - t, 1),
              "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
              "quality": state.quality, "levels": list(LEVELS), "cells": [len(lv.cells) for lv in state.levels],
              **gpu_facts()}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1, default=str))
    print(json.dumps(result, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
