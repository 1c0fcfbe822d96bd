"""EfficientNet-Lite0 with its real ImageNet weights, exported by both torch exporters, on real photos."""

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from atlas_core import IMAGENET_MEAN, IMAGENET_STD, UsageError
from atlas_core.models import open_model
from atlas_core.testing import check_backend

from atlas_onnx.plugin import OnnxBackend

# ImageNet classes: 281-285 cats, 967 espresso, 657 missile, 698 palace, 985 daisy
EXPECTED = {0: set(range(281, 286)), 1: {967}, 2: {657, 744}, 4: {985}}


@pytest.fixture(scope="session", params=["dynamo", "legacy"])
def export(request, dynamo, legacy):
    return {"dynamo": dynamo, "legacy": legacy}[request.param]


def test_conformance_kit(dynamo_path, legacy_path, photos):
    for path in (dynamo_path, legacy_path):
        model = check_backend(OnnxBackend(), str(path), images=photos[:2], threads=2)
        assert model.provider == "CPUExecutionProvider"


def test_layers_in_graph_order_with_shapes(dynamo, legacy):
    layers = dynamo.layers()
    assert len(layers) == 94  # every node output: 49 Conv, 33 Clip, 9 Add, ReduceMean, Reshape, Gemm
    assert [(x.name, x.op_type, x.shape) for x in layers[:3]] == [
        ("getitem", "Conv", (112, 112, 32)), ("hardtanh", "Clip", (112, 112, 32)),
        ("getitem_3", "Conv", (112, 112, 32))]
    assert [(x.name, x.shape) for x in layers[-3:]] == [("mean", (1, 1, 1280)), ("view", (1280,)),
                                                        ("logits", (1000,))]
    assert dynamo.output == "logits"
    by_name = {x.name: x for x in legacy.layers()}
    # the legacy export's Pad/Slice shapes come from Shape ops: resolved by data propagation
    assert by_name["/_conv_stem/static_padding/Pad_output_0"].shape == (225, 225, 3)
    assert by_name["/_blocks.5/_project_conv/Conv_output_0"].shape == (14, 14, 80)
    assert legacy.output == "logits" and legacy.layers()[-1].name == "logits"
    assert not any(x.op_type in ("Shape", "Gather", "Constant", "ConstantOfShape") for x in legacy.layers())


def test_input_spec_from_graph_and_sidecar(dynamo):
    spec = dynamo.input_spec
    assert (spec.layout, spec.channels, spec.size, spec.batch) == ("NCHW", 3, (224, 224), None)
    assert tuple(spec.mean) == IMAGENET_MEAN and tuple(spec.std) == IMAGENET_STD  # sidecar names the preset


def test_prepare_is_the_input_spec_normalization(dynamo, variants, photos):
    np.testing.assert_array_equal(dynamo.prepare(photos), dynamo.input_spec.normalize(photos))
    other = open_model(variants["nhwc"], scale=255, mean="120,110,100", std="60")
    assert other.input_spec.layout == "NHWC"
    np.testing.assert_array_equal(other.prepare(photos), other.input_spec.normalize(photos))
    with pytest.raises(UsageError, match="takes 224 channels"):  # a wrong layout override is caught
        open_model(dynamo.path, layout="NHWC")


def test_options_override_the_sidecar(dynamo_path):
    model = open_model(dynamo_path, mean="0.5", std="0.25,0.25,0.5", scale=2, threads=1, batch_size=3)
    assert tuple(model.input_spec.mean) == (0.5, 0.5, 0.5) and tuple(model.input_spec.std) == (0.25, 0.25, 0.5)
    assert model.input_spec.scale == 2.0 and model.batch_size == 3
    assert model.session().get_session_options().intra_op_num_threads == 1
    with pytest.raises(UsageError, match="fixed to 224x224"):
        open_model(dynamo_path, size="300")
    with pytest.raises(UsageError, match="--device"):
        open_model(dynamo_path, device="tpu")
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        with pytest.raises(UsageError, match="onnxruntime-gpu"):
            open_model(dynamo_path, device="cuda").provider


def _block_taps(model, block: int):
    """The ONNX tensor holding block ``block``'s projection (conv + folded batch norm)."""
    graph = model.onnx_model().graph
    node = next(n for n in graph.node if n.op_type == "Conv" and (
        n.input[1] == f"_blocks.{block}._project_conv.weight"
        or n.name == f"/_blocks.{block}/_project_conv/Conv"))
    return node.output[0]


def test_tapped_values_equal_the_torch_model(export, torch_model, photos):
    captured = {}
    hooks = [torch_model._blocks[k]._bn2.register_forward_hook(
        lambda mod, args, out, k=k: captured.__setitem__(k, out.detach().numpy())) for k in (2, 9)]
    hooks.append(torch_model._blocks[2].register_forward_hook(
        lambda mod, args, out: captured.__setitem__("block2", out.detach().numpy())))
    try:
        with torch.no_grad():
            logits = torch_model(torch.from_numpy(export.prepare(photos))).numpy()
    finally:
        for h in hooks:
            h.remove()
    taps = {k: _block_taps(export, k) for k in (2, 9)}
    graph = export.onnx_model().graph
    skip_add = next(n.output[0] for n in graph.node if n.op_type == "Add" and taps[2] in n.input)
    acts = export.activations(photos, [taps[2], taps[9], skip_add, "logits"])
    for k in (2, 9):
        want = captured[k].transpose(0, 2, 3, 1)
        assert acts[taps[k]].shape == want.shape
        np.testing.assert_allclose(acts[taps[k]], want, atol=2e-3 * np.abs(want).max())
    np.testing.assert_allclose(acts[skip_add], captured["block2"].transpose(0, 2, 3, 1), atol=2e-3)
    np.testing.assert_allclose(acts["logits"], logits, atol=2e-3)


def test_predictions_on_real_photos(export, photos):
    logits = export.activations(photos, ["logits"])["logits"]
    top1 = logits.argmax(1)
    for i, classes in EXPECTED.items():
        assert top1[i] in classes, f"photo {i}: predicted {top1[i]}"
    assert 698 in np.argsort(-logits[3])[:3]  # china: palace among the top three


def test_outputs_stay_exactly_what_an_untouched_session_returns(export, photos):
    names = [x.name for x in export.layers()]
    untouched = ort.InferenceSession(str(export.path), providers=["CPUExecutionProvider"])
    want = untouched.run(None, {export.input_name: export.prepare(photos)})[0]
    got = export.activations(photos, names[::7] + ["logits"])["logits"]
    assert np.array_equal(got, want)
    (key, _), = export._plans[tuple(names[::7] + ["logits"])]  # one graph, fused taps computed by copies
    assert key[1] and set(key[1]) < set(names[::7])


def test_outputs_stay_exact_in_two_graphs_when_copies_are_not_tried(legacy_path, legacy, photos, monkeypatch):
    import atlas_onnx.model
    monkeypatch.setattr(atlas_onnx.model, "MAX_PROBES", 0)
    model = open_model(legacy_path, threads=2)
    names = ("/_conv_head/Conv_output_0", "logits")  # fused into its Clip and pooling in NCHWc blocks
    acts = model.activations(photos[:3], names)
    assert len(model._plans[names]) == 2
    untouched = ort.InferenceSession(str(legacy_path), providers=["CPUExecutionProvider"])
    assert np.array_equal(acts["logits"], untouched.run(None, {"input": legacy.prepare(photos[:3])})[0])
    alone = legacy.activations(photos[:3], names[:1])[names[0]]
    np.testing.assert_allclose(acts[names[0]], alone, rtol=1e-6, atol=1e-6)


def test_both_exports_agree(dynamo, legacy, photos):
    a = dynamo.activations(photos, ["logits", "hardtanh_32"])
    b = legacy.activations(photos, ["logits", "/_swish_1/Clip_output_0"])
    np.testing.assert_allclose(a["logits"], b["logits"], atol=1e-3)
    np.testing.assert_allclose(a["hardtanh_32"], b["/_swish_1/Clip_output_0"], atol=1e-3)


def test_tap_sets_and_batches_do_not_change_values(dynamo_path, dynamo, photos):
    small = open_model(dynamo_path, threads=2, batch_size=2)  # 5 images: batches of 2, 2, 1
    a = small.activations(photos, ["hardtanh_20"])["hardtanh_20"]
    b = dynamo.activations(photos, ["getitem", "hardtanh_20", "logits"])["hardtanh_20"]
    assert a.dtype == np.float32 and a.flags["C_CONTIGUOUS"]
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_images_of_other_sizes_and_grey_images_are_resized(dynamo, photos):
    from atlas_core.images import resize
    big = np.stack([resize(p, (300, 260)) for p in photos[:2]])
    logits = dynamo.activations(big, ["logits"])["logits"]
    assert logits.shape == (2, 1000) and logits[0].argmax() in EXPECTED[0]
    grey = photos[:1].mean(axis=3, keepdims=True)
    assert dynamo.activations(grey, ["logits"])["logits"].shape == (1, 1000)
    with pytest.raises(UsageError, match="N x H x W x 3"):
        dynamo.activations(photos[0], ["logits"])


def test_unknown_layer_names_closest_matches(dynamo, legacy, photos):
    with pytest.raises(UsageError, match=r"unknown layer 'hardtanh_2O'.*closest: hardtanh_2") as err:
        dynamo.activations(photos[:1], ["hardtanh_2O"])
    assert "\n" not in str(err.value)
    with pytest.raises(UsageError, match="does not depend on the image"):  # the input's shape only
        legacy.activations(photos[:1], ["/Shape_output_0"])


def test_onnx_model_has_its_external_weights(dynamo, photos):
    proto = dynamo.onnx_model()
    assert isinstance(proto, onnx.ModelProto)
    assert all(t.data_location == onnx.TensorProto.DEFAULT for t in proto.graph.initializer)
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    x = dynamo.prepare(photos[:2])
    assert np.array_equal(session.run(None, {"input": x})[0], dynamo.activations(photos[:2], ["logits"])["logits"])


def test_open_from_a_model_proto(legacy_path, legacy, photos):
    proto = onnx.load(str(legacy_path))
    model = open_model(proto, backend="onnx", preset="imagenet", size=224, threads=2)
    assert model.path is None and model.onnx_model() is proto
    np.testing.assert_array_equal(model.activations(photos[:2], ["logits"])["logits"],
                                  legacy.activations(photos[:2], ["logits"])["logits"])


@pytest.mark.gpu
@pytest.mark.skipif("CUDAExecutionProvider" not in ort.get_available_providers(),
                    reason="needs onnxruntime-gpu and a CUDA GPU")
def test_cuda_matches_cpu(dynamo_path, dynamo, photos):
    gpu = open_model(dynamo_path)  # CUDA by default when onnxruntime-gpu is there
    assert gpu.provider == "CUDAExecutionProvider", "onnxruntime-gpu fell back to CPU: is the GPU visible?"
    names = ["hardtanh_20", "getitem_69", "logits"]
    a, b = gpu.activations(photos, names), dynamo.activations(photos, names)
    for name in names:
        np.testing.assert_allclose(a[name], b[name], atol=1e-2 * np.abs(b[name]).max(), err_msg=name)
    assert (a["logits"].argmax(1) == b["logits"].argmax(1)).all()
