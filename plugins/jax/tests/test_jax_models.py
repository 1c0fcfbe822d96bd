"""The lowering on ordinary models the other tests do not use, each derived here from the real
EfficientNet-Lite0 and checked through ``atlas layers`` and ``atlas activations --backend onnx-jax`` against
onnxruntime (``--backend onnx``): a 1-channel (grey) input, a non-square input, rank-3 tensors (the map as
a token sequence, channels first and last), quantized graphs made with onnxruntime's own quantization tools
(dynamic: ConvInteger, MatMulInteger; static QDQ: QuantizeLinear, DequantizeLinear), one refused by name
(static QOperator: QLinearAdd, an onnxruntime contrib op); and the light zoo's Dropout outputs."""

from __future__ import annotations

import io
import json
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper, numpy_helper

from atlas_core.cli import main

LIGHT = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"
MID = "add_530"  # 14x14x112 at 224 px


def _photos_nchw(photos, channels=3):
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    return ((photos - mean) / std).transpose(0, 3, 1, 2).astype(np.float32)


@pytest.fixture(scope="session")
def ordinary(tmp_path_factory, dynamo_path, photos) -> dict:
    """{name: path} of the derived models (weights inline)."""
    from onnxruntime.quantization import (CalibrationDataReader, QuantFormat, QuantType, quantize_dynamic,
                                          quantize_static)
    root = tmp_path_factory.mktemp("ordinary")
    base = onnx.load(str(dynamo_path))
    out = {}

    m = onnx.ModelProto()
    m.CopyFrom(base)  # grey: the stem's weights folded over the colour axis, a 1-channel input
    stem = m.graph.node[0]
    for t in m.graph.initializer:
        if t.name == stem.input[1]:
            t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t).sum(1, keepdims=True), t.name))
    m.graph.input[0].type.tensor_type.shape.dim[1].dim_value = 1
    onnx.save(m, str(root / "grey.onnx"))
    out["grey"] = root / "grey.onnx"

    m = onnx.ModelProto()
    m.CopyFrom(base)  # the same graph at 160x224: fully convolutional up to the mean pool
    m.graph.input[0].type.tensor_type.shape.dim[2].dim_value = 160
    del m.graph.value_info[:]
    onnx.save(m, str(root / "nonsquare.onnx"))
    out["nonsquare"] = root / "nonsquare.onnx"

    m = onnx.ModelProto()
    m.CopyFrom(base)  # the mid map as a token sequence: (N, 112, 196) channels first, (N, 196, 112) last
    m.graph.initializer.append(numpy_helper.from_array(np.array([0, 112, -1], np.int64), "token_shape"))
    m.graph.node.extend([helper.make_node("Reshape", [MID, "token_shape"], ["tokens_cl"]),
                         helper.make_node("Transpose", ["tokens_cl"], ["tokens"], perm=[0, 2, 1])])
    onnx.save(m, str(root / "tokens.onnx"))
    out["tokens"] = root / "tokens.onnx"

    quantize_dynamic(str(dynamo_path), str(root / "dynamic.onnx"), weight_type=QuantType.QUInt8)
    out["dynamic"] = root / "dynamic.onnx"

    x = _photos_nchw(photos)

    class Photos(CalibrationDataReader):
        def __init__(self):
            self.feeds = iter([{"input": x[i:i + 1]} for i in range(len(x))])

        def get_next(self):
            return next(self.feeds, None)

    for fmt, name in ((QuantFormat.QDQ, "qdq"), (QuantFormat.QOperator, "qoperator")):
        quantize_static(str(dynamo_path), str(root / f"{name}.onnx"), Photos(), quant_format=fmt,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
        out[name] = root / f"{name}.onnx"
    return out


def cli(*argv) -> tuple:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        rc = main([str(a) for a in argv])
    return rc, out.getvalue(), err.getvalue()


def listing(path, backend) -> list:
    rc, out, err = cli("layers", path, "--backend", backend, "--json")
    assert rc == 0, err
    return json.loads(out)


def activations(path, backend, images, layers, tmp_path) -> dict:
    target = tmp_path / f"{backend}.npz"
    args = ["activations", path, "--backend", backend, "--images", images, "--preset", "imagenet", "-o", target]
    for layer in layers:
        args += ["--layer", layer]
    rc, _, err = cli(*args)
    assert rc == 0, err
    return dict(np.load(target))


@pytest.fixture(scope="module")
def images(tmp_path_factory, photos):
    path = tmp_path_factory.mktemp("images") / "photos.npy"
    np.save(path, photos)
    return path


@pytest.mark.parametrize("name,layers", [
    ("grey", [MID, "logits"]),
    ("nonsquare", [MID, "logits"]),
    ("tokens", ["tokens", "tokens_cl", MID]),
])
def test_float_models_equal_onnxruntime(ordinary, images, tmp_path, name, layers):
    jax_layers, ort_layers = listing(ordinary[name], "onnx-jax"), listing(ordinary[name], "onnx")
    assert [(d["name"], d["shape"]) for d in jax_layers] == [(d["name"], d["shape"]) for d in ort_layers]
    shapes = {d["name"]: d["shape"] for d in jax_layers}
    got = activations(ordinary[name], "onnx-jax", images, layers, tmp_path)
    ref = activations(ordinary[name], "onnx", images, layers, tmp_path)
    for layer in layers:
        assert got[layer].shape == ref[layer].shape == (len(ref[layer]),) + tuple(shapes[layer])
        assert np.abs(got[layer] - ref[layer]).max() <= 1e-4 * np.abs(ref[layer]).max(), layer
    if name == "grey":
        assert shapes[MID] == [14, 14, 112]
        assert (got["logits"].argmax(1) == ref["logits"].argmax(1)).all()
    if name == "nonsquare":
        assert shapes[MID] == [10, 14, 112]
    if name == "tokens":  # both are the map's 196 positions, 112 channels each
        assert shapes["tokens"] == shapes["tokens_cl"] == [1, 196, 112]
        np.testing.assert_allclose(got["tokens"], got[MID].reshape(-1, 1, 196, 112), atol=1e-6)
        np.testing.assert_allclose(got["tokens_cl"], got["tokens"], atol=1e-6)


@pytest.mark.parametrize("name", ["dynamic", "qdq"])
def test_quantized_models_equal_onnxruntime(ordinary, dynamo_path, images, photos, tmp_path, name):
    """The same listing as onnxruntime (its uint8/int32 tensors are not layers there either); the activations
    agree as far as a quantized graph allows: a value one float32 ulp apart can round to the next quantization
    step, which then propagates, so the bound is a tenth of the quantization's own error (the quantized
    model against the float one), and the predicted classes of the real photos are the same."""
    jax_layers, ort_layers = listing(ordinary[name], "onnx-jax"), listing(ordinary[name], "onnx")
    assert [(d["name"], d["shape"]) for d in jax_layers] == [(d["name"], d["shape"]) for d in ort_layers]
    ops = {n.op_type for n in onnx.load(str(ordinary[name])).graph.node}
    assert ops & {"ConvInteger", "MatMulInteger", "DynamicQuantizeLinear"} if name == "dynamic" else \
        {"QuantizeLinear", "DequantizeLinear"} <= ops
    layers = [MID, "logits"]
    got = activations(ordinary[name], "onnx-jax", images, layers, tmp_path)
    ref = activations(ordinary[name], "onnx", images, layers, tmp_path)
    float_ref = activations(dynamo_path, "onnx", images, layers, tmp_path)
    for layer in layers:
        scale = np.abs(ref[layer]).max()
        ours, quantization = np.abs(got[layer] - ref[layer]).max(), np.abs(float_ref[layer] - ref[layer]).max()
        print(name, layer, "lowering vs onnxruntime", ours / scale, "quantized vs float", quantization / scale)
        assert ours <= 0.1 * quantization, layer
    assert (got["logits"].argmax(1) == ref["logits"].argmax(1)).all()


def test_quantized_gradients_pass_by_straight_through_rounding(ordinary):
    """Rounding's derivative is taken as the identity: the gradient of a quantized graph's mid layer with
    respect to the input is not zero (its exact derivative is, almost everywhere)."""
    import jax
    from atlas_jax.lowering import OnnxGraph
    graph = OnnxGraph(str(ordinary["dynamic"]))
    f = graph.function(["add_140"])
    x = np.random.default_rng(0).standard_normal((1, 3, 64, 64)).astype(np.float32)
    g = jax.jit(jax.grad(lambda x: f(graph.params, x)[0][0, :, 8, 8].sum()))(x)
    assert np.abs(np.asarray(g)).max() > 0


def test_unsupported_quantized_ops_are_refused_by_name(ordinary, images, tmp_path):
    """QOperator graphs use onnxruntime's contrib ops (com.microsoft QLinearAdd): one line, the op and the
    node, from atlas layers and atlas activations alike; never a traceback or an empty list."""
    rc, out, err = cli("layers", ordinary["qoperator"], "--backend", "onnx-jax")
    assert rc == 2 and "QLinearAdd" in err and "node" in err and err.count("\n") == 1 and not out
    rc, _, err = cli("activations", ordinary["qoperator"], "--backend", "onnx-jax", "--images", images,
                     "--layer", "logits", "-o", tmp_path / "q.npz")
    assert rc == 2 and "QLinearAdd" in err and err.count("\n") == 1


@pytest.mark.parametrize("name", ["light_bvlc_alexnet", "light_squeezenet", "light_inception_v1",
                                  "light_vgg19"])
def test_dropout_graphs_list_the_same_tappable_layers(name):
    """Both backends list the same tensors of the light zoo's Dropout graphs (the Dropout's output, not its
    mask), and every one of them can be tapped in one pass."""
    from atlas_core.models import open_model
    path = str(LIGHT / f"{name}.onnx")
    x = np.random.default_rng(0).random((2, 224, 224, 3), dtype=np.float32)
    models = {b: open_model(path, backend=b) for b in ("onnx", "onnx-jax")}
    names = {b: [layer.name for layer in m.layers()] for b, m in models.items()}
    assert names["onnx"] == names["onnx-jax"]
    assert any(layer.op_type == "Dropout" for layer in models["onnx-jax"].layers())
    graph = onnx.load(path).graph
    mask = next(n.output[1] for n in graph.node if n.op_type == "Dropout" and len(n.output) > 1)
    for model in models.values():
        acts = model.activations(x, names["onnx"])
        assert set(acts) == set(names["onnx"])
        with pytest.raises(Exception, match="mask"):
            model.activations(x, [mask])


def test_featureviz_on_grey_and_non_square_models(ordinary):
    """A 1-channel model gets grey icons; a non-square one is served at the icon's own scale and, the old
    way, with the icon stretched over its 160x224 input."""
    from atlas_core import IMAGENET_MEAN, IMAGENET_STD, IconRequest
    from atlas_jax.featureviz import FeatureVizRenderer
    from atlas_jax.model import OnnxJaxBackend
    directions = np.abs(np.random.default_rng(0).standard_normal((2, 24))).astype(np.float32)
    for name, view, extent in (("grey", "icon", (32, 32)), ("nonsquare", "input", (160, 224))):
        model = OnnxJaxBackend().open(str(ordinary[name]), mean=IMAGENET_MEAN, std=IMAGENET_STD)
        req = IconRequest(model=model, layer="add_140", directions=directions, icon_size=32,
                          options=dict(steps=2, batch=2, view=view))
        icons = FeatureVizRenderer().render(req)
        assert [icon.info["extent"] for icon in icons] == [extent, extent]
        pixels = np.asarray(icons[0]).astype(int)
        if name == "grey":
            assert np.abs(pixels[..., 0] - pixels[..., 1]).max() <= 1 and pixels.std() > 0


def test_atlas_build_on_a_rank_three_layer(ordinary, crops, tmp_path):
    """atlas build on the token sequence (1 x 196 x 112): samples at positions along the sequence."""
    np.save(tmp_path / "views.npy", crops(24))
    out = tmp_path / "atlas"
    rc, _, err = cli("build", ordinary["tokens"], "--images", tmp_path / "views.npy", "--layer", "tokens",
                     "--preset", "imagenet", "--out", out, "--reducer", "pca", "--levels", "3", "--min-count", "1",
                     "--quiet")
    assert rc == 0, err
    meta = json.loads((out / "atlas.json").read_text())
    assert meta["layer_shape"] == [1, 196, 112] and meta["levels"][0]["cells"]
