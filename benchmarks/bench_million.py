"""The million-sample atlas on one machine: Fashion-MNIST (all 70,000 real images) at 15 positions of ``relu3``
of the ``healthy`` CNN trained here: 1,050,000 samples, end to end, with time per stage and peak memory; the
reducer's quality against a full fit at 10^5; the viewer's first paint in Chromium, with a screenshot.

    nice -n 10 .venv/bin/python benchmarks/bench_million.py quality --out /tmp/million   # 10^5: subsample vs full
    nice -n 10 .venv/bin/python benchmarks/bench_million.py build --out /tmp/million     # 10^6 end to end
    .venv/bin/python benchmarks/bench_million.py paint --out /tmp/million                # first paint, screenshot

Each writes ``<out>/<mode>.json``. ``build`` runs without attribution (``--attribution`` to add it: the JAX
lowering's gradients of a million samples take far longer than everything else together on two cores).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from million_data import LAYER, POSITIONS, fashion_all, healthy_model  # noqa: E402

LEVELS = (10, 20, 40, 80)
CHUNK_IMAGES = 2048
BATCH = 256


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


CPU: dict = {}


def record_cpu_time() -> None:
    """Record each stage's CPU time (all threads of this process) beside its wall time: on a machine shared
    with other work the wall time says more about the neighbours than about the stage."""
    from atlas_core.stages import state

    class Timer(state._Timer):
        def __enter__(self):
            self.cpu = time.process_time()
            return super().__enter__()

        def __exit__(self, *exc):
            CPU[self.name] = CPU.get(self.name, 0.0) + time.process_time() - self.cpu
            return super().__exit__(*exc)

    state._Timer = Timer


def build(out: Path, attribution: bool, reducer: str = "umap") -> dict:
    from atlas_core.stages import build_state
    record_cpu_time()
    source, labels = fashion_all()
    t = time.perf_counter()
    state = build_state(healthy_model(), source, LAYER, out / "atlas", labels=labels, samples_per_image=POSITIONS,
                        attribution=attribution, levels=LEVELS, chunk_images=CHUNK_IMAGES, batch_size=BATCH,
                        seed=0, reducer=reducer)
    total = time.perf_counter() - t
    atlas = out / "atlas"
    sizes = {name: (atlas / name).stat().st_size / 1e6 for name in ("atlas.json", "viewer/atlas-data.js")}
    sizes.update({p.name: p.stat().st_size / 1e6 for p in sorted((atlas / "viewer").glob("level-*.js"))})
    return {"n_samples": int(len(state.store)), "n_images": len(source), "levels": list(LEVELS),
            "cells": [len(lv.cells) for lv in state.levels], "stages_s": {k: round(v, 1) for k, v in state.timings.items()},
            "stages_cpu_s": {k: round(v, 1) for k, v in CPU.items()},
            "total_s": round(total, 1), "peak_rss_mb": round(peak_rss_mb(), 1), "files_mb": sizes,
            "quality": state.quality, "load_after": load(), "cpus": os.cpu_count()}


def quality(out: Path, n: int = 100_000, fits=(10_000, 25_000)) -> dict:
    """UMAP fitted on a subsample + transform against a full fit, on ``n`` random samples of the million."""
    from atlas_core.atlas import Atlas
    from atlas_core.metrics import knn_agreement, trustworthiness
    from atlas_umap.reducer import UMAPReducer
    from atlas_core.stages.layout import normalize
    store = Atlas(out / "atlas").store() if (out / "atlas" / "atlas.json").is_file() else None
    if store is None:
        from atlas_core.stages import build_state
        from atlas_core.stages.collect import CollectStage
        source, _ = fashion_all()
        store = build_state(healthy_model(), source, LAYER, out / "atlas", samples_per_image=POSITIONS,
                            attribution=False, levels=LEVELS, chunk_images=CHUNK_IMAGES, batch_size=BATCH,
                            stages=[CollectStage], quiet=True).store
    _, labels = fashion_all()
    ids = np.sort(np.random.default_rng(0).choice(len(store), n, replace=False))
    acts = np.asarray(store.activations()[ids])
    y = np.asarray(labels, dtype=object)[store.provenance()[ids, 0]]
    rows = {}

    def measure(name, Y, seconds, extra=None):
        Y = normalize(Y)
        rows[name] = {"seconds": round(seconds, 1), "trustworthiness": round(trustworthiness(acts, Y, seed=0), 4),
                      "knn_2d": round(knn_agreement(Y, y, seed=0), 4), **(extra or {})}
        print(name, json.dumps(rows[name]), flush=True)
        return Y

    t, c = time.perf_counter(), time.process_time()
    full = measure("full fit", UMAPReducer(random_state=0, fit_samples=None).fit_transform(acts),
                   time.perf_counter() - t, {"cpu_s": round(time.process_time() - c, 1)})
    rows["full fit"]["knn_full"] = round(knn_agreement(acts, y, metric="cosine", seed=0), 4)
    probe = np.random.default_rng(1).choice(n, 2000, replace=False)
    for m in fits:
        est = UMAPReducer(random_state=0, fit_samples=m)
        t, c = time.perf_counter(), time.process_time()
        Y = est.fit_transform(acts)
        seconds = time.perf_counter() - t
        Y = measure(f"fit {m:,} + transform {n - m:,}", Y, seconds, {"cpu_s": round(time.process_time() - c, 1)})
        rows[f"fit {m:,} + transform {n - m:,}"]["neighbours_shared_with_full"] = round(_shared(full, Y, probe), 4)
    return {"n": n, "samples": "random samples of the 1,050,000", "rows": rows, "load_after": load()}


def _shared(A, B, probe, k=10) -> float:
    """Mean share of each probe sample's k nearest 2-D neighbours (among all) that two layouts agree on."""
    def nn(Y):
        d = ((Y[probe, None, :] - Y[None, :, :]) ** 2).sum(-1)
        d[np.arange(len(probe)), probe] = np.inf
        return np.argpartition(d, k, axis=1)[:, :k]
    a, b = nn(A), nn(B)
    return float(np.mean([len(set(x) & set(z)) / k for x, z in zip(a, b)]))


PAINT = r"""
import json, sys
from playwright.sync_api import sync_playwright
from atlas_core.testing.fixtures import CHROMIUM, CHROMIUM_ARGS
url, shot, runs = sys.argv[1], sys.argv[2], int(sys.argv[3])
rows = []
with sync_playwright() as p:
    b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
    for r in range(runs):
        page = b.new_page(viewport={"width": 1200, "height": 800})
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(url)
        page.wait_for_selector("html[data-ready]", timeout=60000)
        m = page.evaluate('''() => {
            const fcp = performance.getEntriesByName("first-contentful-paint")[0];
            const icons = performance.getEntriesByName("atlas-icons-loaded")[0];
            const nav = performance.getEntriesByType("navigation")[0];
            return {first_contentful_paint_ms: fcp ? fcp.startTime : null,
                    icons_loaded_ms: icons ? icons.startTime : null,
                    dom_content_loaded_ms: nav ? nav.domContentLoadedEventEnd : null,
                    level: +document.documentElement.dataset.level, grid: +document.documentElement.dataset.grid,
                    scripts: [...document.scripts].map(s => s.src.split("/").pop())};
        }''')
        # zoom in until the finest level shows: its script loads on demand
        for _ in range(14):
            page.keyboard.press("+") if False else page.evaluate("atlasViewer.map.zoomIn(0.5, {animate: false})")
            page.wait_for_timeout(150)
        page.wait_for_function("+document.documentElement.dataset.level === atlasViewer.levels.length - 1", timeout=60000)
        m["finest_level_scripts"] = page.evaluate("[...document.scripts].map(s => s.src.split('/').pop())")
        m["errors"] = errors
        if r == 0:
            page.evaluate("atlasViewer.map.setZoom(atlasViewer.map.getMinZoom() + 1, {animate: false})")
            page.wait_for_timeout(1500)
            page.screenshot(path=shot)
        rows.append(m)
        page.close()
    b.close()
print(json.dumps(rows))
"""


def paint(out: Path, shot: Path, runs: int = 3) -> dict:
    url = (out / "atlas" / "index.html").resolve().as_uri()
    result = subprocess.run([sys.executable, "-c", PAINT, url, str(shot), str(runs)], capture_output=True, text=True)
    if result.returncode:
        raise SystemExit(result.stderr[-2000:])
    rows = json.loads(result.stdout.strip().splitlines()[-1])
    return {"runs": rows, "median_first_contentful_paint_ms": statistics.median(r["first_contentful_paint_ms"] for r in rows),
            "median_icons_loaded_ms": statistics.median(r["icons_loaded_ms"] for r in rows),
            "screenshot": str(shot), "load_after": load()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=("quality", "build", "paint"))
    parser.add_argument("--out", type=Path, default=Path("/tmp/million"))
    parser.add_argument("--attribution", action="store_true")
    parser.add_argument("--reducer", default="umap", help="build: the reducer (pca: every other stage at 10^6 fast)")
    parser.add_argument("--screenshot", type=Path, default=Path(__file__).parents[1] / "docs/images/million-atlas.png")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    before = load()
    print(f"load average before: {before}", flush=True)
    if args.mode == "build":
        result = build(args.out, args.attribution, args.reducer)
    elif args.mode == "quality":
        result = quality(args.out)
    else:
        result = paint(args.out, args.screenshot)
    result["load_before"] = before
    (args.out / f"{args.mode}.json").write_text(json.dumps(result, indent=1, default=str))
    print(json.dumps(result, indent=1, default=str))


if __name__ == "__main__":
    main()
