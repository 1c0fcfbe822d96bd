"""Viewer speed on a large atlas: 100,000 samples, levels 20/40/80/160, in headless Chromium.

    .venv/bin/python benchmarks/bench_viewer.py [--out /tmp/bench-viewer-atlas] [--screenshot docs/images/viewer.png]

Builds (once; reused when present) an atlas folder of 2,000 real photo crops x 50 positions = 100,000 samples with
tests/test_viewer_atlas.py's generator (patch statistics and PCA, no model: the point is the viewer), writes the
viewer, then measures in Debian's chromium: first contentful paint, the time until every icon of the first view has
loaded, and the frame times (requestAnimationFrame deltas) while wheel-zooming from the coarsest level to the
160-cell level and back, and while panning at the 160-cell level. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]

RECORD = """() => {
    window.__frames = []; let last = performance.now();
    const tick = t => { window.__frames.push(t - last); last = t; window.__raf = requestAnimationFrame(tick); };
    window.__raf = requestAnimationFrame(tick);
}"""
STOP = "() => { cancelAnimationFrame(window.__raf); return window.__frames.slice(1); }"


def generator():
    spec = importlib.util.spec_from_file_location("viewer_atlas", ROOT / "tests" / "test_viewer_atlas.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def stats(frames) -> dict:
    f = np.asarray(frames)
    return {"frames": len(f), "median_ms": float(np.median(f)), "p95_ms": float(np.percentile(f, 95)),
            "max_ms": float(f.max()), "over_50ms": float((f > 50).mean())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="/tmp/bench-viewer-atlas")
    ap.add_argument("--screenshot", help="save a screenshot of the 160-cell level with a hovered cell here")
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright

    from atlas_core.exporters.viewer import write_viewer

    out = Path(args.out)
    results: dict = {}
    if not (out / "atlas.json").is_file():
        t = time.perf_counter()
        generator().make_atlas(out, n_images=2000, per_image=50, grids=(20, 40, 80, 160), min_count=5, icon_px=64)
        results["generate_s"] = time.perf_counter() - t
    t = time.perf_counter()
    write_viewer(out)
    results["write_viewer_s"] = time.perf_counter() - t
    results["atlas_data_js_mb"] = (out / "viewer" / "atlas-data.js").stat().st_size / 1e6
    manifest = json.loads((out / "atlas.json").read_text())
    results["n_samples"] = manifest["n_samples"]
    results["cells"] = {lv["grid"]: len(lv["cells"]) for lv in manifest["levels"]}

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=args.chromium, args=ARGS)
        page = browser.new_page(viewport={"width": 1280, "height": 800})
        errors = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("console", lambda m: m.type == "error" and errors.append(m.text))
        url = (out / "index.html").resolve().as_uri()
        loads = []
        for _ in range(3):  # first load, then two more: the median is reported
            page.goto(url)
            page.wait_for_selector("html[data-ready]", timeout=60000)
            loads.append(page.evaluate("""() => ({
                fcp: performance.getEntriesByName('first-contentful-paint')[0].startTime,
                dcl: performance.getEntriesByType('navigation')[0].domContentLoadedEventEnd,
                icons: performance.getEntriesByName('atlas-icons-loaded')[0].startTime,
                cells: document.querySelectorAll('.cell').length})"""))
        results["first_contentful_paint_ms"] = float(np.median([x["fcp"] for x in loads]))
        results["dom_content_loaded_ms"] = float(np.median([x["dcl"] for x in loads]))
        results["first_view_icons_loaded_ms"] = float(np.median([x["icons"] for x in loads]))
        results["first_view_cells"] = loads[-1]["cells"]
        results["first_view_grid"] = int(page.evaluate("document.documentElement.dataset.grid"))

        box = page.locator("#map").bounding_box()
        cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
        page.mouse.move(cx, cy)
        page.evaluate(RECORD)
        grids_seen = []
        t = time.perf_counter()
        for _ in range(16):  # zoom in, one wheel notch at a time: coarsest to the 160-cell level
            page.mouse.wheel(0, -100)
            page.wait_for_timeout(300)
            grids_seen.append(int(page.evaluate("document.documentElement.dataset.grid")))
        page.wait_for_timeout(500)
        results["zoom_in"] = stats(page.evaluate(STOP))
        results["zoom_in"]["grids_seen"] = sorted(set(grids_seen))
        results["zoom_in"]["wall_s"] = time.perf_counter() - t

        page.evaluate(RECORD)
        for k in range(20):  # pan at the finest level
            page.mouse.move(cx, cy)
            page.mouse.down()
            page.mouse.move(cx + (150 if k % 2 else -150), cy + 60, steps=8)
            page.mouse.up()
        page.wait_for_timeout(500)
        results["pan_160"] = stats(page.evaluate(STOP))

        if args.screenshot:
            for _ in range(2):
                page.mouse.wheel(0, 100)
                page.wait_for_timeout(400)
            page.wait_for_function("""() => [...document.querySelectorAll('.cell img')]
                .every(i => i.complete)""")
            hit = page.evaluate("""() => {
                const lv = atlasViewer.levels[+document.documentElement.dataset.level];
                const m = document.getElementById('map').getBoundingClientRect();
                let best = null;
                for (const b of document.querySelectorAll('.cell')) {
                    const r = b.getBoundingClientRect(), c = lv.byKey.get(+b.dataset.j * lv.grid + +b.dataset.i);
                    const x = r.left + r.width / 2, y = r.top + r.height / 2;
                    if (c && x > m.left + 100 && x < m.right - 100 && y > m.top + 100 && y < m.bottom - 100 &&
                        (!best || c[2] > best.n)) best = {x, y, n: c[2]};
                }
                return best; }""")
            page.mouse.move(hit["x"], hit["y"])
            page.wait_for_timeout(800)
            Path(args.screenshot).parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=args.screenshot)

        page.evaluate(RECORD)
        for _ in range(16):  # zoom back out
            page.mouse.wheel(0, 100)
            page.wait_for_timeout(300)
        page.wait_for_timeout(500)
        results["zoom_out"] = stats(page.evaluate(STOP))
        results["errors"] = errors
        browser.close()

    results["machine"] = (f"{platform.machine()}, {os.cpu_count()} CPU cores, load average {os.getloadavg()[0]:.1f} "
                          "at the end, headless Chromium with --disable-gpu (software compositing)")
    print(json.dumps(results, indent=1))
    z, o, pan = results["zoom_in"], results["zoom_out"], results["pan_160"]
    print(f"""
{results['machine']}

| measure | value |
|---|---|
| samples; cells per level | {results['n_samples']:,}; {', '.join(f'{g}: {n:,}' for g, n in results['cells'].items())} |
| write_viewer; atlas-data.js | {results['write_viewer_s']:.2f} s; {results['atlas_data_js_mb']:.1f} MB |
| first contentful paint | {results['first_contentful_paint_ms']:.0f} ms |
| every icon of the first view loaded ({results['first_view_cells']} cells, grid {results['first_view_grid']}) | {results['first_view_icons_loaded_ms']:.0f} ms |
| frame time, wheel zoom in to grid 160 (median / p95 / max) | {z['median_ms']:.1f} / {z['p95_ms']:.1f} / {z['max_ms']:.0f} ms |
| frame time, wheel zoom out (median / p95 / max) | {o['median_ms']:.1f} / {o['p95_ms']:.1f} / {o['max_ms']:.0f} ms |
| frame time, panning at grid 160 (median / p95 / max) | {pan['median_ms']:.1f} / {pan['p95_ms']:.1f} / {pan['max_ms']:.0f} ms |
""")


if __name__ == "__main__":
    main()
