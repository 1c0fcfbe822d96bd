"""The tsne reducer: conformance kit, user mistakes, real activations."""

from __future__ import annotations

import numpy as np
import pytest

import atlas_tsne.plugin
from atlas_core import UsageError
from atlas_core.metrics import knn_agreement
from atlas_core.testing import check_registration_is_lazy, check_reducer


@pytest.fixture(scope="module")
def faces():
    """Real activations of lfw_subset (100 faces, 100 non-faces) in EfficientNet-Lite0 (480-d, one per image)."""
    atlas_demo = pytest.importorskip("atlas_demo")
    pytest.importorskip("atlas_onnx")
    return atlas_demo.lfw_activations()


def test_registration_is_lazy():
    check_registration_is_lazy("atlas_tsne.plugin")


def test_conformance(atlas_registry):
    registry = atlas_registry(atlas_tsne.plugin)
    check_reducer(registry.get("reducers", "tsne").factory)


@pytest.mark.parametrize("params, message", [
    ({"perplexity": 0}, "perplexity"),
    ({"metric": "correlation"}, "metric must be one of cosine"),
    ({"n_components": 3}, "n_components"),
    ({"n_iter": -5}, "n_iter"),
])
def test_bad_parameters_raise_usage_error(atlas_registry, params, message):
    est = atlas_registry(atlas_tsne.plugin).reducer("tsne", random_state=0, **params)
    with pytest.raises(UsageError, match=message):
        est.fit_transform(np.ones((20, 4), np.float32))


def test_unknown_parameter_raises_usage_error(atlas_registry):
    with pytest.raises(UsageError, match="unknown parameter 'perplexty' for reducer tsne"):
        atlas_registry(atlas_tsne.plugin).reducer("tsne", perplexty=30)


def test_real_faces_and_non_faces_separate(atlas_registry, faces):
    X, y = faces
    est = atlas_registry(atlas_tsne.plugin).reducer("tsne", n_components=2, random_state=0)
    assert (est.perplexity, est.metric) == (50.0, "cosine")
    Y = est.fit_transform(X)
    assert Y.shape == (200, 2) and np.isfinite(Y).all()
    assert est.perplexity_ == 50.0
    acc = knn_agreement(Y, y, k=5)
    assert acc >= 0.85, f"5-NN accuracy of faces vs non-faces in the t-SNE layout is {acc:.2f} (chance 0.5)"


def test_one_dimensional_layout(atlas_registry, faces):
    """The reference's two-class comparison uses a 1-D t-SNE as its y axis."""
    X, y = faces
    Y = atlas_registry(atlas_tsne.plugin).reducer("tsne", n_components=1, random_state=0).fit_transform(X)
    assert Y.shape == (200, 1) and np.ptp(Y) > 0
    assert knn_agreement(Y, y, k=5) >= 0.8
