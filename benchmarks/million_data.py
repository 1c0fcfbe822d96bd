"""The real data of the million-sample benchmarks: all 70,000 Fashion-MNIST images (Debian's
``dataset-fashion-mnist``: 60,000 train then 10,000 test) and the ``healthy`` small CNN trained here
(``atlas_demo.fashion``). At 15 positions per image of ``relu3`` (7 x 7 x 64) that is 1,050,000 samples."""

from __future__ import annotations

import numpy as np

from atlas_core.images import ArraySource

LAYER = "relu3"
POSITIONS = 15


def fashion_all(count=None):
    """(image source, ground-truth class names) of the first ``count`` of the 70,000 images (train, then test)."""
    from atlas_demo.fashion import CLASS_NAMES, fashion_arrays
    train, train_labels = fashion_arrays("train")
    test, test_labels = fashion_arrays("test")
    images = np.concatenate([train, test])
    labels = np.concatenate([train_labels, test_labels])
    names = [f"fashion-train/{i:05d}" for i in range(len(train))] + \
        [f"fashion-test/{i:05d}" for i in range(len(test))]
    n = len(images) if count is None else min(count, len(images))
    return ArraySource(images[:n], names=names[:n]), [CLASS_NAMES[k] for k in labels[:n]]


def healthy_model():
    from atlas_demo.fashion import fashion_models
    return str(fashion_models()["healthy"])
