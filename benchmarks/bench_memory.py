"""Peak memory while collecting: 10,000 versus 100,000 samples must cost the same.

Each size runs in a fresh process (EfficientNet-Lite0, ONNX backend, layer add_530,
demo photos, 10 positions per image); the child reports its peak RSS (ru_maxrss)
after the collect stage, and the time it took. The demo's decoded photos (about 100 MB,
cached by the image source) are loaded before the measurement in both runs.

    .venv/bin/python benchmarks/bench_memory.py [--images 1000 10000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile

CHILD = r"""
import json, resource, sys, time
import atlas_demo
from atlas_core.models import open_model
from atlas_core.stages import build_state
from atlas_core.stages.collect import CollectStage

n_images, out = int(sys.argv[1]), sys.argv[2]
model = open_model(str(atlas_demo.efficientnet_lite0_onnx("dynamo")), batch_size=32)
demo = atlas_demo.demo_images()

class Repeated(type(demo)):
    # the demo views, cycled to reach n_images (each repeat is a distinct image id)
    def __init__(self, n):
        super().__init__()
        self.base = len(self.names)
        self.names = [f"{self.names[i % self.base]}#{i // self.base}" for i in range(n)]
    def raw(self, i):
        return super().raw(i % self.base)

source = Repeated(n_images)
for name in atlas_demo.PHOTO_NAMES:  # the demo keeps its decoded photos: load them all before measuring
    atlas_demo.photo(name)
rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t = time.perf_counter()
store = build_state(model, source, "add_530", out, stages=[CollectStage], samples_per_image=10, quiet=True).store
print(json.dumps({"images": n_images, "samples": len(store), "seconds": time.perf_counter() - t,
                  "rss_before_mb": rss0 / 1024, "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, nargs="+", default=[1000, 10000])
    args = parser.parse_args()
    rows = []
    for n in args.images:
        with tempfile.TemporaryDirectory() as tmp:
            out = subprocess.run([sys.executable, "-c", CHILD, str(n), tmp], capture_output=True, text=True,
                                 check=True)
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(json.dumps(rows[-1]), flush=True)
    base = rows[0]
    for row in rows[1:]:
        print(f"{row['samples']} vs {base['samples']} samples: peak RSS ratio "
              f"{row['peak_rss_mb'] / base['peak_rss_mb']:.3f} ({row['peak_rss_mb']:.0f} MB vs "
              f"{base['peak_rss_mb']:.0f} MB)")


if __name__ == "__main__":
    main()
