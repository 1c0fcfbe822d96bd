"""Session fixtures for the JAX plugin: the real EfficientNet-Lite0 exports and real photos."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import atlas_demo
from atlas_core import IMAGENET_MEAN, IMAGENET_STD
from atlas_core.images import resize

PHOTOS = ("chelsea", "coffee", "rocket", "china", "flower")


def centre_crop(a: np.ndarray) -> np.ndarray:
    h, w = a.shape[:2]
    s = min(h, w)
    return a[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]


@pytest.fixture(scope="session")
def dynamo_path() -> Path:
    return atlas_demo.efficientnet_lite0_onnx("dynamo")


@pytest.fixture(scope="session")
def legacy_path() -> Path:
    return atlas_demo.efficientnet_lite0_onnx("legacy")


@pytest.fixture(scope="session")
def photos() -> np.ndarray:
    """Five real photos, centre-cropped to 224x224, float32 NHWC in [0, 1]."""
    return np.stack([resize(centre_crop(atlas_demo.photo(n)), (224, 224)) for n in PHOTOS])


@pytest.fixture(scope="session")
def lite0(dynamo_path):
    """EfficientNet-Lite0 (dynamo export) opened with the onnx-jax backend."""
    from atlas_jax.model import OnnxJaxBackend
    return OnnxJaxBackend().open(str(dynamo_path), mean=IMAGENET_MEAN, std=IMAGENET_STD, batch_size=8)
