"""The tsne reducer: conformance kit, user mistakes, real activations."""

from __future__ import annotations

import numpy as np
import pytest

import atlas_tsne.plugin
from atlas_core import UsageError
from atlas_core.testing import check_registration_is_lazy, check_reducer

LAYER = "/_blocks.8/_swish_1/Clip_output_0"  # 14 x 14 x 480, after ReLU6


@pytest.fixture(scope="module")
def faces():
    """Real activations of scikit-image's lfw_subset (100 faces, 100 non-faces) in EfficientNet-Lite0:
    the 480-d vector at the centre of ``LAYER``."""
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    atlas_demo = pytest.importorskip("atlas_demo")
    source, labels = atlas_demo.lfw()
    images = np.stack([source.load(i, (224, 224)) for i in range(len(source))])
    model = onnx.load(str(atlas_demo.efficientnet_lite0_onnx("legacy")))
    model.graph.output.append(onnx.helper.make_tensor_value_info(LAYER, onnx.TensorProto.FLOAT, None))
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    mean, std = np.float32([0.485, 0.456, 0.406]), np.float32([0.229, 0.224, 0.225])
    x = ((images - mean) / std).transpose(0, 3, 1, 2).astype(np.float32)
    acts = np.concatenate([session.run([LAYER], {"input": x[i:i + 50]})[0] for i in range(0, len(x), 50)])
    return acts[:, :, 7, 7].copy(), np.array([label == "face" for label in labels])


def knn_accuracy(Y, y, k=5):
    d = ((Y[:, None, :] - Y[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    votes = y[np.argsort(d, axis=1)[:, :k]].mean(axis=1)
    return float(((votes > 0.5) == y).mean())


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
    acc = knn_accuracy(Y, y)
    assert acc >= 0.85, f"5-NN accuracy of faces vs non-faces in the t-SNE layout is {acc:.2f} (chance 0.5)"


def test_one_dimensional_layout(atlas_registry, faces):
    """The reference's two-class comparison uses a 1-D t-SNE as its y axis."""
    X, y = faces
    Y = atlas_registry(atlas_tsne.plugin).reducer("tsne", n_components=1, random_state=0).fit_transform(X)
    assert Y.shape == (200, 1) and np.ptp(Y) > 0
    assert knn_accuracy(Y, y) >= 0.8
