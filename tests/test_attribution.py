"""Class attribution on the real EfficientNet-Lite0: exact where the tail is linear, a finite difference through
onnxruntime elsewhere, stored and labelled end to end."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

atlas_demo = pytest.importorskip("atlas_demo")
pytest.importorskip("atlas_onnx")
pytest.importorskip("atlas_jax", reason="attribution needs the gradient capability of the JAX plugin")

import onnx  # noqa: E402
from onnx import numpy_helper  # noqa: E402

from atlas_core.atlas import validate  # noqa: E402
from atlas_core.models import open_model  # noqa: E402
from atlas_core.stages import build_state  # noqa: E402
from atlas_core.stages.attribution import AttributionStage  # noqa: E402
from atlas_core.stages.collect import CollectStage  # noqa: E402

ATLAS = str(Path(sys.executable).with_name("atlas"))
LAST_CONV = "hardtanh_32"  # 7 x 7 x 1280, the head convolution after its ReLU6; then mean pool and Gemm
MID = "add_530"


@pytest.fixture(scope="module")
def model_path():
    return str(atlas_demo.efficientnet_lite0_onnx("dynamo"))


@pytest.fixture(scope="module")
def model(model_path):
    return open_model(model_path)


@pytest.fixture(scope="module")
def photos():
    return atlas_demo.photo_batch()[:4]


def collect(model, photos, layer, out, **options):
    return build_state(model, photos, layer, out, stages=[CollectStage, AttributionStage], quiet=True,
                       samples_per_image=3, **options).store


def test_attribution_where_the_tail_is_linear_is_exact(model, model_path, photos, tmp_path):
    """After the last convolution the logits are mean-pool then Gemm: a_yx . dlogit_c/da_yx = a_yx . W_c / (H W)."""
    store = collect(model, photos, LAST_CONV, tmp_path / "a")
    graph = onnx.load(model_path)
    W = numpy_helper.to_array(next(t for t in graph.graph.initializer if t.name == "_fc.weight"))
    acts, attribution = store.activations(), store.column("attribution")
    assert attribution.dtype == np.float16 and attribution.shape == (12, 1000)
    expected = acts.astype(np.float64) @ W.T.astype(np.float64) / 49
    err = np.abs(attribution.astype(np.float64) - expected).max(axis=1) / np.abs(expected).max(axis=1)
    assert err.max() < 1e-3, err


def test_attribution_at_a_mid_layer_matches_a_finite_difference_through_onnxruntime(model, model_path, photos,
                                                                                     tmp_path):
    import onnxruntime as ort
    store = collect(model, photos, MID, tmp_path / "b")
    tail = tmp_path / "tail.onnx"
    onnx.utils.extract_model(model_path, str(tail), [MID], ["logits"])
    session = ort.InferenceSession(str(tail), providers=["CPUExecutionProvider"])
    maps = model.activations(photos, [MID])[MID]  # N x 14 x 14 x 112, canonical
    prov, attribution = store.provenance(), store.column("attribution").astype(np.float64)
    eps = 1e-2
    for s in range(len(prov)):
        image, y, x = prov[s]
        a = maps[image].copy()
        t = np.zeros_like(a)
        t[y, x] = a[y, x]
        run = lambda m: session.run(None, {MID: m.transpose(2, 0, 1)[None].astype(np.float32)})[0][0]  # noqa
        fd = (run(a + eps * t) - run(a - eps * t)) / (2 * eps)
        corr = np.corrcoef(fd, attribution[s])[0, 1]
        assert corr >= 0.99, (s, corr)


def test_attribution_atlas_end_to_end(model_path, tmp_path):
    source, labels = atlas_demo.lfw()
    np.save(tmp_path / "faces.npy", source.array[60:140])
    out = tmp_path / "atlas"
    res = subprocess.run([ATLAS, "build", model_path, "--images", tmp_path / "faces.npy", "--layer", MID,
                          "--out", out, "--reducer", "pca", "--levels", "3,6", "--min-count", "2",
                          "--samples-per-image", "2", "--chunk-images", "16"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert "attribution: 160 samples" in res.stdout
    m = validate(out)
    assert m["label_source"] == "attribution" and m["attribution"]["target"] == "logits"
    attribution = np.load(out / "attribution.npy", mmap_mode="r")
    assert attribution.shape == (160, 1000) and attribution.dtype == np.float16
    store = np.load(out / m["store"] / "attribution.npy", mmap_mode="r")
    np.testing.assert_array_equal(attribution, store)
    classes = json.loads((out / "classes.json").read_text())
    for level in m["levels"]:
        cell_attr = np.load(out / level["attribution"])
        for cell in level["cells"]:
            mean = attribution[cell["samples"]].astype(np.float64).mean(0)
            np.testing.assert_allclose(cell_attr[cell["direction"]], mean, rtol=2e-3, atol=2e-3)
            assert cell["label"] == classes[int(np.argmax(mean))]
            assert cell["attribution"][0][0] == cell["label"] and "predicted" in cell["labels_by_source"]
            assert 0 < cell["labels"][0][1] <= 1  # the label's share


def test_model_without_gradients_falls_back_to_prediction_labels(model_path, tmp_path):
    source, _ = atlas_demo.lfw()
    np.save(tmp_path / "faces.npy", source.array[90:120])
    out = tmp_path / "atlas"
    env = dict(os.environ, ATLAS_DISABLE_PLUGINS="jax")
    res = subprocess.run([ATLAS, "build", model_path, "--images", tmp_path / "faces.npy", "--layer", MID,
                          "--out", out, "--reducer", "pca", "--levels", "3", "--min-count", "1"],
                         capture_output=True, text=True, env=env)
    assert res.returncode == 0, res.stderr
    notes = [line for line in res.stdout.splitlines() if line.startswith("note: no attribution")]
    assert len(notes) == 1 and "pip install ./plugins/jax" in notes[0]
    m = json.loads((out / "atlas.json").read_text())
    assert m["label_source"] == "predicted" and m["attribution"] is None and not (out / "attribution.npy").exists()


def test_relaxed_maxpool_has_the_average_pools_derivative():
    """The reference's relaxation: through a max-pool, the JVP is that of an average pool of the same windows."""
    from atlas_jax.model import OnnxJaxBackend
    path = Path(onnx.__file__).parent / "backend/test/data/light/light_inception_v1.onnx"
    lowered = OnnxJaxBackend().open(str(path))
    layers = lowered.layers()
    pool = next(layer for layer in layers if layer.op_type == "MaxPool")
    graph = lowered.graph
    node = next(n for n in graph.nodes if pool.name in n.output)
    source = node.input[0]
    grads = lowered.gradients()
    x = lowered.activations(np.random.default_rng(0).random((1, 224, 224, 3), np.float32), [source])[source]
    t = np.random.default_rng(1).standard_normal(x.shape).astype(np.float32)
    _, relaxed = grads.jvp(source, [pool.name], x, t, relax_maxpool=True)[pool.name]
    _, exact = grads.jvp(source, [pool.name], x, t)[pool.name]
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    k, s = attrs["kernel_shape"][0], attrs["strides"][0]
    pads = attrs.get("pads", [0, 0, 0, 0])
    padded = np.pad(t[0], ((pads[0], pads[2]), (pads[1], pads[3]), (0, 0)), constant_values=np.nan)
    h, w = relaxed.shape[1:3]
    expected = np.stack([[np.nanmean(padded[i * s:i * s + k, j * s:j * s + k], axis=(0, 1)) for j in range(w)]
                         for i in range(h)])
    np.testing.assert_allclose(relaxed[0], expected, rtol=1e-4, atol=1e-5)
    assert not np.allclose(exact[0], expected, atol=1e-3)  # the exact derivative picks the maxima
