"""The ``onnx-jax`` and ``jax`` backends: the core's conformance kit, agreement with onnxruntime on
the real EfficientNet-Lite0 and real photos, lazy registration, and choosing a backend by name."""

from __future__ import annotations

import io
import json
from contextlib import redirect_stdout
from pathlib import Path

import numpy as np
import onnx
import pytest

from atlas_core import IMAGENET_MEAN, IMAGENET_STD, InputSpec, UsageError
from atlas_core.testing import check_backend, check_registration_is_lazy
from atlas_jax import JaxModel
from atlas_jax.model import JaxBackend, OnnxJaxBackend

LIGHT = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"
MID = "add_530"  # a 14x14x112 residual tensor of the dynamo export


def ort_logits(path, photos):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    x = ((photos - np.asarray(IMAGENET_MEAN)) / np.asarray(IMAGENET_STD)).transpose(0, 3, 1, 2).astype(np.float32)
    return sess.run(None, {sess.get_inputs()[0].name: x})[0]


def test_registration_is_lazy():
    check_registration_is_lazy("atlas_jax.plugin")
    check_registration_is_lazy("atlas_jax")


def test_onnx_jax_backend_conformance(dynamo_path, photos):
    model = check_backend(OnnxJaxBackend(), str(dynamo_path), images=photos[:2], layers=[MID, "logits"],
                          mean=IMAGENET_MEAN, std=IMAGENET_STD)
    shapes = {layer.name: layer.shape for layer in model.layers()}
    assert shapes[MID] == (14, 14, 112) and shapes["logits"] == (1000,)
    assert model.provider.startswith("JAX cpu")
    assert model.output == "logits"
    assert isinstance(model.onnx_model(), onnx.ModelProto)


@pytest.mark.parametrize("exporter", ["dynamo", "legacy"])
def test_predictions_agree_with_onnxruntime(exporter, dynamo_path, legacy_path, photos):
    path = dynamo_path if exporter == "dynamo" else legacy_path
    model = OnnxJaxBackend().open(str(path), mean=IMAGENET_MEAN, std=IMAGENET_STD, batch_size=8)
    got = model.activations(photos, [model.output])[model.output]
    ref = ort_logits(path, photos)
    assert np.abs(got - ref).max() <= 1e-4 * np.abs(ref).max()
    assert (got.argmax(1) == ref.argmax(1)).all()
    # real photos, real predictions: chelsea is a cat (ImageNet 281..285), coffee an espresso (967)
    assert 281 <= got[0].argmax() <= 285 and got[1].argmax() == 967


def test_fixed_batch_graph_runs_any_batch():
    """The light graphs fix the batch at 1 (Reshape to (1, -1)); the backend maps over it.

    shufflenet, because its dummy weights keep activations moderate (|a| <= 14): squeezenet's reach 1e10
    before its softmax, where XLA:CPU's jitted mean has given 0, inf or NaN from run to run.
    """
    model = OnnxJaxBackend().open(str(LIGHT / "light_shufflenet.onnx"))
    assert model.input_spec.batch == 1
    images = np.random.default_rng(0).random((3, 224, 224, 3), dtype=np.float32)
    layer = [layer.name for layer in model.layers() if layer.spatial][-1]
    together = model.activations(images, [layer])[layer]
    alone = np.concatenate([model.activations(images[i:i + 1], [layer])[layer] for i in range(3)])
    np.testing.assert_allclose(together, alone, rtol=1e-5, atol=1e-6)


def test_jax_function_matches_activations(lite0, photos):
    import jax
    from atlas_core import INPUT
    fn = lite0.gradients().function(INPUT, [MID])
    a = np.asarray(jax.jit(fn.apply)(fn.params, photos[:2])[MID])
    np.testing.assert_allclose(a, lite0.activations(photos[:2], [MID])[MID], rtol=1e-4, atol=1e-4)
    early = lite0.gradients().function(INPUT, ["add_140"])
    g = jax.jit(jax.grad(lambda x, p: early.apply(p, x)["add_140"][:, 28, 28, :].sum()))(photos[:1], early.params)
    assert g.shape == photos[:1].shape and float(np.abs(g).max()) > 0


def test_function_from_a_layer_to_the_logits(lite0, photos):
    """The tail of the graph from a tapped layer: its value is the model's logits, and its JVP along a tangent
    equals a central finite difference through that tail (forward mode, the depthwise convolutions included)."""
    from atlas_core import INPUT
    grads = lite0.gradients()
    assert grads.supports(MID, ["logits"]) is None
    assert "does not depend" in grads.supports("logits", [MID])
    acts = lite0.activations(photos[:2], [MID, "logits"])
    a = acts[MID]
    tangent = np.zeros_like(a)
    tangent[:, 7, 7, :] = a[:, 7, 7, :]  # the attribution tangent: the activation at one position
    value, derivative = grads.jvp(MID, ["logits"], a, tangent)["logits"]
    np.testing.assert_allclose(value, acts["logits"], rtol=1e-4, atol=1e-4)
    fn = grads.function(MID, ["logits"])
    import jax
    tail = jax.jit(lambda x: fn.apply(fn.params, x)["logits"])
    eps = 1e-2
    estimate = (np.asarray(tail(a + eps * tangent)) - np.asarray(tail(a - eps * tangent))) / (2 * eps)
    for row in range(2):
        assert np.corrcoef(derivative[row], estimate[row])[0, 1] > 0.999
    assert grads.supports(INPUT, ["nope"]) is not None


@pytest.fixture(scope="module")
def native(dynamo_path):
    """A native JAX model with real weights: EfficientNet-Lite0's graph as a plain JAX function
    that returns a dict of intermediates (NCHW, as the graph computes them)."""
    from atlas_jax.lowering import OnnxGraph
    graph = OnnxGraph(str(dynamo_path))
    names = ["add_140", MID, "logits"]
    f = graph.function(names)
    spec = InputSpec(layout="NCHW", height=224, width=224, mean=IMAGENET_MEAN, std=IMAGENET_STD)
    return JaxModel(lambda p, x: dict(zip(names, f(p, x))), graph.params, input_spec=spec,
                    name="lite0-native", output="logits", layout="NCHW")


def test_native_jax_backend_conformance(native, lite0, photos):
    backend = JaxBackend()
    assert not backend.can_open("model.onnx")
    model = check_backend(backend, native, images=photos[:2], layers=[MID, "logits"])
    assert [layer.name for layer in model.layers()] == ["add_140", MID, "logits"]
    assert model.layers()[1].shape == (14, 14, 112)
    got = model.activations(photos[:2], [MID])[MID]
    np.testing.assert_allclose(got, lite0.activations(photos[:2], [MID])[MID], rtol=1e-4, atol=1e-4)
    from atlas_core import INPUT
    fn = model.gradients().function(INPUT, [MID])
    assert fn.targets == (MID,) and fn.input_size == (224, 224) and fn.engine == "jax"
    assert "input only" in model.gradients().supports(MID, ["logits"])


def test_native_nested_intermediates_are_flattened():
    """A Flax-style intermediates collection ({module: {'__call__': (array,)}}) names layers a/b."""
    import jax.numpy as jnp
    w = np.asarray([[0.5, -1.0, 2.0]], np.float32)

    def fn(params, x):
        h = jnp.tanh(x @ params["w"].T)
        return {"intermediates": {"dense": {"__call__": (h,)}, "pool": {"__call__": (jnp.mean(x, (1, 2)),)}}}

    model = JaxBackend().open(JaxModel(fn, {"w": w}, input_spec=InputSpec(layout="NHWC", height=4, width=4)))
    names = [layer.name for layer in model.layers()]
    assert names == ["intermediates/dense/__call__", "intermediates/pool/__call__"]
    x = np.random.default_rng(0).random((2, 4, 4, 3), dtype=np.float32)
    out = model.activations(x, [names[0]])[names[0]]
    np.testing.assert_allclose(out, np.tanh(x @ w.T), rtol=1e-5, atol=1e-6)
    with pytest.raises(UsageError, match="intermediates/dense"):
        model.activations(x, ["intermediates/dens"])


def test_backend_is_chosen_by_name(dynamo_path):
    from atlas_core.plugins import load
    registry = load()
    assert {"jax", "onnx-jax"} <= set(registry.names("backends"))
    assert registry.backend_for(str(dynamo_path), "onnx-jax").name == "onnx-jax"
    if "onnx" in registry.names("backends"):  # onnxruntime stays the default for .onnx files
        assert registry.backend_for(str(dynamo_path)).name == "onnx"
    with pytest.raises(UsageError):
        registry.backend_for(str(dynamo_path), "jax")


def test_cli_layers_with_backend(dynamo_path):
    from atlas_core.cli import main
    out = io.StringIO()
    with redirect_stdout(out):
        assert main(["layers", str(dynamo_path), "--backend", "onnx-jax", "--json"]) == 0
    layers = {d["name"]: d for d in json.loads(out.getvalue())}
    assert layers[MID]["shape"] == [14, 14, 112] and layers["logits"]["shape"] == [1000]
