"""The worked example of docs/attribution.md: attribution labels, a class atlas, a two-class comparison and a patch
test, on EfficientNet-Lite0 (real ImageNet weights) and real images. Offline; about 10 minutes on two cores.

    python docs/examples/attribution_example.py --work /tmp/attribution-example [--demo-atlas demo-atlas]

Needs Debian's dataset-fashion-mnist (Fashion-MNIST's test set: 2,000 images for the atlas, the next 300 held out
for the patch test). Writes the pictures to docs/images/attribution/ and the numbers to
docs/images/attribution/example.json.
"""

from __future__ import annotations

import argparse
import gzip
import json
from collections import Counter
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[2]
PICTURES = ROOT / "docs" / "images" / "attribution"
FASHION = Path("/usr/share/datasets/fashion-mnist")
NAMES = ["T-shirt-top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


def fashion(start: int, n: int):
    with gzip.open(FASHION / "t10k-images-idx3-ubyte.gz") as f:
        x = np.frombuffer(f.read(), np.uint8, offset=16).reshape(-1, 28, 28)
    with gzip.open(FASHION / "t10k-labels-idx1-ubyte.gz") as f:
        y = np.frombuffer(f.read(), np.uint8, offset=8)
    return x[start:start + n], y[start:start + n]


def labelled_mosaic(atlas: Path, grid: int, source: str, out: Path, icon: int = 72) -> None:
    """The level's icons at their cells, each with its label from ``source`` and that label's share."""
    m = json.loads((atlas / "atlas.json").read_text())
    level = next(lv for lv in m["levels"] if lv["grid"] == grid)
    canvas = Image.new("RGB", (grid * icon, grid * (icon + 22)), "white")
    draw = ImageDraw.Draw(canvas)
    for c in level["cells"]:
        x, y = c["i"] * icon, c["j"] * (icon + 22)
        with Image.open(atlas / c["icon"]) as im:
            canvas.paste(im.convert("RGB").resize((icon, icon)), (x, y))
        pairs = (c.get("labels_by_source") or {}).get(source) or (c["labels"] if m["label_source"] == source else [])
        if pairs:
            name, share = pairs[0]
            shade = int(200 * (1 - min(1.0, share / 0.5)))  # faded as the viewer fades weak labels
            draw.text((x + 2, y + icon + 1), name[:13], fill=(shade, shade, shade))
            draw.text((x + 2, y + icon + 11), f"{share:.0%}", fill=(shade, shade, shade))
    canvas.save(out)


def composition(atlas: Path, ids, truth) -> list:
    prov = np.load(atlas / "samples.npy")
    return Counter(truth[prov[s, 0]] for s in ids).most_common(4)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", default="/tmp/attribution-example")
    ap.add_argument("--demo-atlas", help="an atlas built by `atlas demo` (default: build one in --work)")
    args = ap.parse_args()
    import atlas_core
    import atlas_demo
    from atlas_core.classes import class_atlas, compare_classes
    from atlas_core.classes.filters import select
    from atlas_core.classes.patch import patch_test
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    PICTURES.mkdir(parents=True, exist_ok=True)
    model = str(atlas_demo.efficientnet_lite0_onnx("dynamo"))
    numbers: dict = {}

    # 1. the demo atlas: attribution labels against prediction labels
    demo = Path(args.demo_atlas) if args.demo_atlas else work / "demo-atlas"
    if not (demo / "atlas.json").is_file():
        atlas_core.build(model, "demo", "add_530", demo, samples_per_image=2, levels=(10, 20, 40), quiet=True)
    for source in ("attribution", "predicted"):
        labelled_mosaic(demo, 10, source, PICTURES / f"demo-10-{source}.png")
    numbers["demo"] = json.loads((demo / "atlas.json").read_text())["quality"]

    # 2. Fashion-MNIST with ground truth from sub-folders
    images, labels = fashion(0, 2000)
    folder = work / "fashion"
    for k, (img, lab) in enumerate(zip(images, labels)):
        path = folder / NAMES[lab] / f"{k:05d}.png"
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(img).save(path)
    atlas = work / "fashion-atlas"
    a = atlas_core.build(model, str(folder), "add_530", atlas, labels="folders", samples_per_image=2, quiet=True)
    numbers["fashion"] = a.quality
    for source in ("attribution", "predicted", "ground truth"):
        labelled_mosaic(atlas, 10, source, PICTURES / f"fashion-10-{source.replace(' ', '-')}.png")
    truth = json.loads((atlas / "labels.json").read_text())
    classes = json.loads((atlas / "classes.json").read_text())
    attribution = np.load(atlas / "attribution.npy", mmap_mode="r")
    winners = Counter(np.asarray(attribution, np.float32).argmax(1).tolist())
    numbers["fashion_winners"] = [(classes[c], n, composition(atlas, np.flatnonzero(
        np.asarray(attribution, np.float32).argmax(1) == c), truth)) for c, n in winners.most_common(8)]

    # 3. a class atlas of the class that wins most shoe samples, and a two-class comparison
    target = "microwave oven"
    ca = class_atlas(atlas, target, work / "class-atlas", quiet=True)
    ids = select(attribution, classes.index(target), "both", 2000)
    numbers["class_atlas"] = {"class": target, "n_samples": ca.manifest["n_samples"],
                              "winners_truth": composition(atlas, select(attribution, classes.index(target),
                                                                         "winner"), truth),
                              "all_truth": composition(atlas, ids, truth), "quality": ca.quality}
    Image.open(work / "class-atlas" / "atlas.png").save(PICTURES / "class-atlas-microwave-oven.png")
    cmp = compare_classes(atlas, ["sweatshirt", "T-shirt"], work / "compare", quiet=True)
    layout = np.load(work / "compare" / "layout.npy")
    prov = np.load(work / "compare" / "samples.npy")
    thirds = [layout[:, 0] < 1 / 3, (layout[:, 0] >= 1 / 3) & (layout[:, 0] < 2 / 3), layout[:, 0] >= 2 / 3]
    numbers["comparison"] = {"classes": ["sweatshirt", "T-shirt"], "n_samples": cmp.manifest["n_samples"],
                             "truth_by_third": [Counter(truth[prov[s, 0]] for s in np.flatnonzero(t)).most_common(3)
                                                for t in thirds]}
    Image.open(work / "compare" / "atlas.png").save(PICTURES / "compare-sweatshirt-t-shirt.png")

    # 4. the patch test of the class atlas's most microwave-oven cell, onto 300 held-out Fashion-MNIST images
    m = json.loads((work / "class-atlas" / "atlas.json").read_text())
    level = m["levels"][0]
    best = max(level["cells"], key=lambda c: dict(c["attribution"]).get(target, -1e9))
    held, _ = fashion(2000, 300)
    np.save(work / "held-out.npy", held)
    report = patch_test(work / "class-atlas", f"{level['grid']}:{best['i']},{best['j']}", str(work / "held-out.npy"),
                        target, work / "patch", max_images=300, quiet=True)
    numbers["patch_test"] = {k: report[k] for k in ("cell", "target", "n_images", "size", "clean")}
    numbers["patch_test"]["test"] = {k: v for k, v in report["test"].items() if k != "delta_per_image"}
    numbers["patch_test"]["control"] = {k: v for k, v in report["control"].items() if k != "cells"}
    Image.open(work / "patch" / "patch-test.png").save(PICTURES / "patch-test-microwave-oven.png")
    (PICTURES / "example.json").write_text(json.dumps(numbers, indent=1))
    print(json.dumps(numbers, indent=1))


if __name__ == "__main__":
    main()
