"""Session fixtures for the JAX plugin: the real EfficientNet-Lite0 exports and real photos."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import atlas_demo
from atlas_core import IMAGENET_MEAN, IMAGENET_STD

PHOTOS = atlas_demo.TEST_PHOTOS


@pytest.fixture(scope="session")
def dynamo_path() -> Path:
    return atlas_demo.efficientnet_lite0_onnx("dynamo")


@pytest.fixture(scope="session")
def legacy_path() -> Path:
    return atlas_demo.efficientnet_lite0_onnx("legacy")


@pytest.fixture(scope="session")
def photos() -> np.ndarray:
    """Five real photos, centre-cropped to 224x224, float32 NHWC in [0, 1]."""
    return atlas_demo.photo_batch(PHOTOS, 224)


@pytest.fixture(scope="session")
def crops(photos):
    """``crops(n)``: n random square crops of the real photos (seed 0), each resized to 224x224."""
    from atlas_core.images import resize

    def make(n: int) -> np.ndarray:
        rng = np.random.default_rng(0)
        views = []
        for k in range(n):
            img = photos[k % len(photos)]
            s = int(rng.integers(112, 224))
            y, x = rng.integers(0, 224 - s, 2)
            views.append(resize(img[y:y + s, x:x + s], (224, 224)))
        return np.stack(views)
    return make


@pytest.fixture(scope="session")
def lite0(dynamo_path):
    """EfficientNet-Lite0 (dynamo export) opened with the onnx-jax backend."""
    from atlas_jax.model import OnnxJaxBackend
    return OnnxJaxBackend().open(str(dynamo_path), mean=IMAGENET_MEAN, std=IMAGENET_STD, batch_size=8)
