"""Seconds for a three-layer activation grid of one real photo (EfficientNet-Lite0), after the model is open.

    python benchmarks/bench_grid.py --atlases DIR_236 DIR_530 DIR_728 [--layers add_236,add_530,add_728] [--repeat 3]

Runs `atlas_grid.grid` in one process with atlas icons: without the gradient parts (no class maps, no flows: what
any backend gives; ``--repeat`` times), then with them twice (the first pays JAX's compilation). Prints the
timings. The atlases: `atlas build MODEL --images demo --layer L --reducer pca --samples-per-image 2
--no-attribution --out DIR_L` (the reducer does not change the grid's cost).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--atlases", nargs=3, required=True)
    ap.add_argument("--layers", default="add_236,add_530,add_728")
    ap.add_argument("--repeat", type=int, default=1, help="runs of the atlas-icons-only grid (the first imports "
                                                         "scikit-learn)")
    args = ap.parse_args()
    import numpy as np
    import atlas_demo
    from atlas_core.models import open_model
    from atlas_grid.grid import grid
    layers = args.layers.split(",")
    model = open_model(str(atlas_demo.efficientnet_lite0_onnx("dynamo")))
    photo = atlas_demo.photo_batch(["chelsea"])[0]
    atlases = dict(zip(layers, args.atlases))
    rows = {}
    only = [(f"atlas icons only, run {r + 1}", False, False) for r in range(args.repeat)]
    for name, flows, maps in only + [("with gradients, first", True, True), ("with gradients, again", True, True)]:
        with tempfile.TemporaryDirectory() as tmp:
            t = time.perf_counter()
            result = grid(model, photo, layers, tmp, atlases=atlases, flows=flows, attribution=maps, quiet=True)
            rows[name] = {"seconds": round(time.perf_counter() - t, 2), "timings": result["timings"]}
        print(name, json.dumps(rows[name]), flush=True)


if __name__ == "__main__":
    main()
