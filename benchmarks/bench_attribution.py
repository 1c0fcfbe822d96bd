"""Collection with attribution against collection without, in one run (EfficientNet-Lite0, real photos).

    python benchmarks/bench_attribution.py [--images 640] [--layer add_530] [--samples-per-image 2]

Each configuration collects the same images into a fresh store, twice; the second run is timed (the first pays
JAX's compilation, reported separately). Prints seconds, the ratio, and attribution's own throughput.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time


def collect(model, source, layer, out, attribution, samples_per_image):
    from atlas_core.stages import build_state
    from atlas_core.stages.attribution import AttributionStage
    from atlas_core.stages.collect import CollectStage
    t = time.perf_counter()
    state = build_state(model, source, layer, out, stages=[CollectStage, AttributionStage], quiet=True,
                        attribution=attribution, samples_per_image=samples_per_image)
    seconds = time.perf_counter() - t
    a = state.attribution
    return seconds, (a.seconds if a else 0.0), (a.samples if a else 0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=640)
    ap.add_argument("--layer", default="add_530")
    ap.add_argument("--samples-per-image", type=int, default=2)
    args = ap.parse_args()
    import numpy as np
    import atlas_demo
    from atlas_core.images import ArraySource
    from atlas_core.models import open_model
    demo = atlas_demo.demo_images()
    ids = np.linspace(0, len(demo) - 1, args.images).astype(int)
    images = np.stack([demo.load(int(k), (224, 224)) for k in ids])  # decoded once: the model's work is measured
    source = ArraySource(images)
    model = open_model(str(atlas_demo.efficientnet_lite0_onnx("dynamo")))
    rows = {}
    for attribution in (False, True):
        runs = []
        for _ in range(2):
            with tempfile.TemporaryDirectory() as tmp:
                runs.append(collect(model, source, args.layer, tmp, attribution, args.samples_per_image))
        rows["with" if attribution else "without"] = {"first_s": runs[0][0], "seconds": runs[1][0],
                                                      "attribution_s": runs[1][1], "samples": runs[1][2]}
    ratio = rows["with"]["seconds"] / rows["without"]["seconds"]
    result = {"images": args.images, "layer": args.layer, "samples_per_image": args.samples_per_image, **rows,
              "ratio": ratio, "attribution_samples_per_s": rows["with"]["samples"] / rows["with"]["attribution_s"]}
    print(json.dumps(result, indent=1))
    print(f"collection with attribution / without: {ratio:.2f}x ({rows['with']['seconds']:.1f} s vs "
          f"{rows['without']['seconds']:.1f} s for {args.images} images); attribution alone "
          f"{result['attribution_samples_per_s']:.0f} samples/s")


if __name__ == "__main__":
    main()
