"""The real model under graph surgery: batch fixed to 1, a channels-last input, an open spatial size;
and `atlas activations` (atlas_core.dump) on real photos in every image mode."""

import numpy as np
import pytest
from PIL import Image

import atlas_demo
from atlas_core import UsageError
from atlas_core.dump import dump_activations
from atlas_core.images import FolderSource, open_source, resize
from atlas_core.models import open_model
from atlas_core.testing import check_backend

from atlas_onnx.plugin import OnnxBackend


def test_batch_fixed_to_one_is_batched_after_checking(variants, legacy, photos):
    model = open_model(variants["batch1"], threads=2)
    assert model.input_spec.batch == 1
    mid = "/_blocks.9/Add_output_0"
    got = model.activations(photos, [mid, "logits"])
    want = legacy.activations(photos, [mid, "logits"])
    assert model._rebatch_ok and all(model._rebatch_ok.values())  # the exported Reshape keeps the batch
    np.testing.assert_allclose(got[mid], want[mid], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got["logits"], want["logits"], rtol=1e-5, atol=1e-5)


def test_channels_last_input(variants, dynamo, photos):
    model = open_model(variants["nhwc"], threads=2)
    spec = model.input_spec
    assert (spec.layout, spec.size, spec.channels) == ("NHWC", (224, 224), 3)
    assert model.prepare(photos[:1]).shape == (1, 224, 224, 3)
    got = model.activations(photos, ["hardtanh_20", "logits"])
    want = dynamo.activations(photos, ["hardtanh_20", "logits"])
    assert model.layer("hardtanh_20").shape == (14, 14, 672)  # convolutions stay channels-first inside
    np.testing.assert_allclose(got["hardtanh_20"], want["hardtanh_20"], atol=1e-4)
    np.testing.assert_array_equal(got["logits"].argmax(1), want["logits"].argmax(1))


def test_open_spatial_size(variants, dynamo, photos):
    model = open_model(variants["open"], threads=2)
    assert model.input_spec.size is None
    shapes = {layer.name: layer.shape for layer in model.layers()}
    assert shapes["hardtanh_20"] == (None, None, 672) and shapes["logits"] == (1000,)
    at_224 = model.activations(photos[:2], ["hardtanh_20", "logits"])
    np.testing.assert_allclose(at_224["logits"], dynamo.activations(photos[:2], ["logits"])["logits"], atol=1e-4)
    big = np.stack([resize(p, (256, 320)) for p in photos[:2]])
    at_big = model.activations(big, ["hardtanh_20", "logits"])
    assert at_big["hardtanh_20"].shape == (2, 16, 20, 672)
    assert at_big["logits"][0].argmax() in range(281, 286)  # still a cat
    sized = open_model(variants["open"], size="48,192")
    assert sized.input_spec.size == (48, 192) and sized.layer("hardtanh_20").shape == (3, 12, 672)
    check_backend(OnnxBackend(), str(variants["open"]), images=photos[:2], size=(224, 224), threads=2)
    check_backend(OnnxBackend(), str(variants["nhwc"]), images=photos[:2], threads=2)


def test_shapes_inference_cannot_give_are_measured(variants, dynamo, photos):
    model = open_model(variants["contrib"], threads=2)
    layers = model.layers()
    assert layers[0].name == "hardtanh" and layers[0].op_type == "FusedConv"
    want = {layer.name: layer.shape for layer in dynamo.layers()}
    assert all(layer.shape == want[layer.name] for layer in layers)
    assert len(layers) == len(want) - 1  # the fused Conv's own output is gone
    got = model.activations(photos[:2], ["hardtanh", "hardtanh_20", "logits"])
    ref = dynamo.activations(photos[:2], ["hardtanh", "hardtanh_20", "logits"])
    for name in got:
        np.testing.assert_allclose(got[name], ref[name], atol=1e-4)


def test_weights_as_constant_nodes(variants, legacy, photos):
    model = open_model(variants["constants"], threads=2)
    assert not model.onnx_model().graph.initializer
    assert [x.name for x in model.layers()] == [x.name for x in legacy.layers()]  # Constants are not layers
    mid = "/_blocks.9/Add_output_0"
    got = model.activations(photos[:2], [mid, "logits"])
    ref = legacy.activations(photos[:2], [mid, "logits"])
    np.testing.assert_allclose(got[mid], ref[mid], atol=1e-5)
    np.testing.assert_allclose(got["logits"], ref["logits"], atol=1e-5)


def test_rank_three_tokens(variants, dynamo, photos):
    """Rank-3 tensors are (1, L, C), positions along the width: the head's NCHW map reshaped to (N, 1280, 49)
    keeps its channels first (NCL), its transpose (N, 49, 1280) has them last (NLC); both are the same 49
    vectors of 1280 channels, which are the map's positions."""
    model = open_model(variants["tokens"], threads=2)
    assert model.layer("tokens").shape == (1, 49, 1280) and model.layer("tokens_cl").shape == (1, 49, 1280)
    got = model.activations(photos[:2], ["tokens", "tokens_cl", "logits"])
    head = dynamo.activations(photos[:2], ["hardtanh_32"])["hardtanh_32"]  # NHWC 7x7x1280
    np.testing.assert_allclose(got["tokens"], head.reshape(2, 1, 49, 1280), atol=1e-5)
    np.testing.assert_array_equal(got["tokens_cl"], got["tokens"])
    assert model.output == "logits"


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Real photos saved as JPEG, grey PNG, 16-bit PNG and RGBA PNG, plus one file that is not an image."""
    root = tmp_path_factory.mktemp("photos")
    rgb = {n: (atlas_demo.photo(n) * 255).astype(np.uint8) for n in ("chelsea", "coffee", "astronaut")}
    Image.fromarray(rgb["chelsea"]).save(root / "a_chelsea.jpg", quality=95)
    Image.fromarray(rgb["coffee"]).save(root / "b_coffee.png")
    grey = rgb["astronaut"].mean(axis=2).astype(np.uint8)
    Image.fromarray(grey, "L").save(root / "c_grey.png")
    Image.fromarray(grey.astype(np.uint16) * 257).save(root / "d_grey16.png")  # the same values in 16 bits
    alpha = np.full(rgb["coffee"].shape[:2] + (1,), 255, np.uint8)
    Image.fromarray(np.concatenate([rgb["coffee"], alpha], axis=2), "RGBA").save(root / "e_rgba.png")
    (root / "f_broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    return root


def test_dump_activations(folder, dynamo, tmp_path, capsys):
    out = tmp_path / "acts.npz"
    report = dump_activations(dynamo, open_source(str(folder)), ["hardtanh_20", "logits"], out, batch_size=2)
    assert "5 images" in report and "skipped 1 image" in report and "f_broken.jpg" in report
    assert "f_broken.jpg" in capsys.readouterr().err
    data = np.load(out)
    assert sorted(data.files) == ["hardtanh_20", "image_names", "logits"]
    assert list(data["image_names"]) == ["a_chelsea.jpg", "b_coffee.png", "c_grey.png", "d_grey16.png", "e_rgba.png"]
    assert data["hardtanh_20"].shape == (5, 14, 14, 672) and data["hardtanh_20"].dtype == np.float32
    # the rows are the model's activations of those decoded, resized images
    source = FolderSource(folder)
    images = np.stack([source.load(i, (224, 224)) for i in range(5)])
    want = dynamo.activations(images, ["logits"])["logits"]
    np.testing.assert_allclose(data["logits"], want, rtol=1e-5, atol=1e-5)
    assert data["logits"][1].argmax() == 967 and data["logits"][4].argmax() == 967  # espresso, RGB and RGBA
    np.testing.assert_allclose(data["logits"][2], data["logits"][3], atol=1e-4)  # 8-bit and 16-bit grey
    assert Image.open(folder / "d_grey16.png").mode.startswith("I")


def test_dump_with_an_open_size(folder, variants, tmp_path):
    model = open_model(variants["open"], threads=2)
    with pytest.raises(UsageError, match="--size"):  # the photos come in several sizes
        dump_activations(model, open_source(str(folder)), ["logits"], tmp_path / "x.npz")
    same = tmp_path / "same"
    same.mkdir()
    for name in ("a_chelsea.jpg", "f_broken.jpg"):
        (same / name).write_bytes((folder / name).read_bytes())
    report = dump_activations(model, open_source(str(same)), ["hardtanh_20"], tmp_path / "y")
    data = np.load(tmp_path / "y.npz")
    assert data["hardtanh_20"].shape == (1, 18, 28, 672)  # chelsea is 300x451, run at its own size
    assert "skipped 1 image" in report
