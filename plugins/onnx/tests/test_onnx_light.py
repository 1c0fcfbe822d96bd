"""Listing and tapping on every graph of onnx's backend/test/data/light: real topologies (batch fixed
to 1, initializers listed as inputs, weights made by ConstantOfShape), dummy weights."""

from pathlib import Path

import numpy as np
import onnx
import onnx.utils
import onnxruntime as ort
import pytest

from atlas_core.models import open_model
from atlas_core.testing import check_backend

from atlas_onnx.plugin import OnnxBackend

LIGHT = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"
GRAPHS = sorted(p.name for p in LIGHT.glob("light_*.onnx"))


def test_all_light_graphs_are_here():
    assert len(GRAPHS) >= 9 and {"light_inception_v1.onnx", "light_resnet50.onnx", "light_densenet121.onnx",
                                 "light_squeezenet.onnx", "light_vgg19.onnx", "light_shufflenet.onnx"} <= set(GRAPHS)


@pytest.fixture(scope="module")
def images():
    return np.random.default_rng(0).random((2, 224, 224, 3), dtype=np.float32)


@pytest.mark.parametrize("name", GRAPHS)
def test_light_graph(name, images, tmp_path):
    path = LIGHT / name
    model = open_model(path, threads=2)
    graph = onnx.load(str(path)).graph
    spec = model.input_spec
    assert (spec.layout, spec.channels, spec.size, spec.batch) == ("NCHW", 3, (224, 224), 1)

    layers = model.layers()
    order = {out: i for i, node in enumerate(graph.node) for out in node.output}
    positions = [order[layer.name] for layer in layers]
    assert positions == sorted(positions), "layers must come in graph order"
    producers = {graph.node[i].op_type for i in positions}
    assert "Conv" in producers and not producers & {"ConstantOfShape", "Shape", "Constant"}
    assert model.output == graph.output[0].name == layers[-1].name

    # every layer at once (taps only): shapes as listed
    taps = [layer.name for layer in layers if layer.name != model.output]
    acts = model.activations(images[:1], taps)
    for layer in layers[:-1]:
        assert acts[layer.name].shape == (1,) + tuple(layer.shape), layer.name

    # a few taps with the model's output: the output is bit for bit the untouched model's
    picks = [taps[len(taps) // 4], taps[len(taps) // 2], taps[-1]]
    got = model.activations(images, picks + [model.output])
    untouched = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for i in range(2):
        want = untouched.run(None, {model.input_name: model.prepare(images[i:i + 1])})[0]
        want = want.transpose(0, 2, 3, 1) if want.ndim == 4 else want
        assert np.array_equal(got[model.output][i:i + 1], want)

    # a tapped value equals the same tensor from a graph cut by onnx's own extractor
    mid = picks[1]
    cut = tmp_path / "cut.onnx"
    onnx.utils.extract_model(str(path), str(cut), [model.input_name], [mid], check_model=False)
    reference = ort.InferenceSession(str(cut), providers=["CPUExecutionProvider"])
    for i in range(2):
        want = reference.run(None, {model.input_name: model.prepare(images[i:i + 1])})[0]
        want = want.transpose(0, 2, 3, 1) if want.ndim == 4 else want
        np.testing.assert_allclose(got[mid][i:i + 1], want, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(acts[mid], got[mid][:1], rtol=1e-5, atol=1e-6)


def test_light_graph_conformance():
    check_backend(OnnxBackend(), str(LIGHT / "light_squeezenet.onnx"), threads=2)


def test_batch_fixed_to_one_runs_batched_when_that_is_safe(images):
    """squeezenet has no reshape: rewritten to take any batch; vgg19 reshapes to (1, 25088): its
    classifier runs image by image, its convolutions batched."""
    squeeze = open_model(LIGHT / "light_squeezenet.onnx", threads=2)
    vgg = open_model(LIGHT / "light_vgg19.onnx", threads=2)
    for model in (squeeze, vgg):
        out = model.activations(images, [model.output])[model.output]
        untouched = ort.InferenceSession(str(model.path), providers=["CPUExecutionProvider"])
        for i in range(2):
            want = untouched.run(None, {model.input_name: model.prepare(images[i:i + 1])})[0]
            assert np.array_equal(out[i:i + 1].reshape(want.shape), want)
    assert list(squeeze._rebatch_ok.values()) == [True]
    assert vgg._rebatch_ok == {} and not vgg._may_rebatch(((vgg.output,), ()))
    conv = vgg.layers()[len(vgg.layers()) // 2].name
    vgg.activations(images, [conv])
    assert vgg._rebatch_ok == {((conv,), ()): True}
