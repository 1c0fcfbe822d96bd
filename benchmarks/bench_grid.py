"""Seconds for a three-layer activation grid of one real photo (EfficientNet-Lite0), after the model is open.

    python benchmarks/bench_grid.py --atlases DIR_236 DIR_530 DIR_728 [--layers add_236,add_530,add_728]

Runs `atlas_grid.grid` three times in one process with atlas icons: without the gradient parts (no class maps,
no flows: what any backend gives), then with them twice (the first pays JAX's compilation). Prints the timings.
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
    for name, flows, maps in (("atlas icons only", False, False), ("with gradients, first", True, True),
                              ("with gradients, again", True, True)):
        with tempfile.TemporaryDirectory() as tmp:
            t = time.perf_counter()
            result = grid(model, photo, layers, tmp, atlases=atlases, flows=flows, attribution=maps, quiet=True)
            rows[name] = {"seconds": round(time.perf_counter() - t, 2), "timings": result["timings"]}
        print(name, json.dumps(rows[name]), flush=True)


if __name__ == "__main__":
    main()
