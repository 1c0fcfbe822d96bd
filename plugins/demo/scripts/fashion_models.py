"""The worked example of docs/health.md: three small CNNs trained on Fashion-MNIST, their health and comparison.

Trains (once; cached) and exports the three models of ``atlas_demo.fashion``, prints their accuracy, runs
`health` on each (its training images against 1,000 held-out test images) and `compare` between the healthy
model and each of the others on the 1,000 test images (with the aligned atlases of ``ALIGN``), prints the
numbers, and with ``--docs`` copies the
pictures into docs/images/. Offline; the training takes about half a minute on two idle cores the first time
(cached afterwards), the reports a few seconds.

    .venv/bin/python plugins/demo/scripts/fashion_models.py --out fashion-health --docs docs/images
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

import numpy as np

from atlas_core.analysis.compare import compare
from atlas_core.analysis.health import health
from atlas_core.models import open_model
from atlas_demo import fashion

HELD_OUT = 1000
ALIGN = {"memorize": ("relu3", "relu3"), "dead": ("relu4", "relu4")}  # the aligned atlases of docs/health.md
TRAINING = 1000  # training images checked (all of them for the memorizing model, which saw only 256)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="fashion-health", help="folder for the reports")
    parser.add_argument("--docs", help="copy the pictures into this folder (docs/images)")
    args = parser.parse_args()
    out = Path(args.out)
    paths = fashion.fashion_models(quiet=False)
    print("model      train acc  test acc  seconds")
    for name, m in fashion.fashion_metrics().items():
        print(f"{name:9s}  {m['train_accuracy']:9.3f}  {m['test_accuracy']:8.3f}  {m['seconds']:7.1f}")
    held_out = fashion.fashion_images("test", 0, HELD_OUT)
    layers = list(fashion.LAYERS)
    labels = [fashion.CLASS_NAMES[k] for k in fashion.fashion_labels("test", 0, HELD_OUT)]
    models = {name: open_model(path) for name, path in paths.items()}
    pictures = {}
    for name, model in models.items():
        trained_on = fashion.training_images(name)
        if len(trained_on) > TRAINING:
            trained_on = fashion.fashion_images("train", 0, TRAINING)
        report = health(model, trained_on, out / name, layers=layers, holdout=held_out, quiet=True)
        s = report["summary"]
        print(f"\n{name}: {s['dead']} dead of {s['channels']} channels ({s['dead'] / s['channels']:.1%}), "
              f"{s['dormant']} dormant, {s['saturated']} saturated over {report['images']} training images; "
              f"{report['holdout']['training_images_used']} of them against {report['holdout']['images']} held out")
        for e in report["layers"]:
            print(f"  {e['name']:7s} {e['channels']:5d} channels  dead {len(e['dead']):4d}  dormant "
                  f"{len(e['dormant']):4d}  mean active fraction {np.mean(e['active_fraction']):.3f}  "
                  f"holdout separability {e['holdout_separability']:.3f}")
        pictures[f"fashion-health-{name}.png"] = out / name / "health.png"
    for other in ("memorize", "dead"):
        report = compare(models["healthy"], models[other], held_out, out / f"compare-healthy-{other}",
                         layers_a=layers, layers_b=layers, knn_pair=("relu4", "relu4"), quiet=True,
                         align=ALIGN[other], labels=labels)
        cka = np.array(report["cka"], dtype=float)
        print(f"\nCKA healthy / {other} on {report['images']} test images (same layer): "
              + ", ".join(f"{n} {v:.3f}" for n, v in zip(layers, np.diag(cka))))
        print(f"  kNN overlap (k = {report['knn']['k']}) of relu4: mean {report['knn']['mean']:.3f}")
        pictures[f"fashion-compare-healthy-{other}.png"] = out / f"compare-healthy-{other}" / "compare.png"
        al = report["aligned"]
        print(f"  aligned atlases of {al['layer_a']} ({al['images']} images, grid {al['grid']}): "
              + "; ".join(f"{name} trustworthiness {m['trustworthiness_a']:.4f} / {m['trustworthiness_b']:.4f}, "
                          f"same cell {m['same_cell']:.3f}" for name, m in al["methods"].items() if m)
              + f"; each layer alone {al['plain']['trustworthiness_a']:.4f} / {al['plain']['trustworthiness_b']:.4f}")
        pictures[f"fashion-aligned-healthy-{other}.png"] = out / f"compare-healthy-{other}" / "aligned.png"
    if args.docs:
        docs = Path(args.docs)
        docs.mkdir(parents=True, exist_ok=True)
        for target, source in pictures.items():
            shutil.copy(source, docs / target)
        print(f"\ncopied {len(pictures)} pictures to {docs}")


if __name__ == "__main__":
    main()
