import json

import numpy as np

import atlas_demo


def test_demo_views_are_real_varied_photos():
    source = atlas_demo.demo_images()
    assert len(source) >= 3000 and len(set(source.names)) == len(source)
    a, b = source.raw(0), source.raw(len(source.views) * 3 + 7)  # different photos, different views
    for img in (a, b):
        assert img.dtype == np.float32 and img.ndim == 3 and img.shape[2] == 3
        assert 0 <= img.min() and img.max() <= 1 and img.std() > 0.02
    flipped = source.names.index(source.names[1])
    assert source.names[flipped].endswith("_flip")
    np.testing.assert_array_equal(source.raw(1), source.raw(0)[:, ::-1])


def test_lfw_has_100_faces_then_100_others():
    source, labels = atlas_demo.lfw()
    assert len(source) == 200 and labels[:100] == ["face"] * 100 and labels[100:] == ["non-face"] * 100
    assert source.raw(0).shape == (25, 25, 3)


def test_onnx_export_is_cached_with_sidecar():
    path = atlas_demo.efficientnet_lite0_onnx("dynamo")
    assert path.is_file() and path.with_name(path.name + ".data").is_file()
    assert json.loads(path.with_name(path.name + ".input.json").read_text())["preset"] == "imagenet"
    assert atlas_demo.efficientnet_lite0_onnx("dynamo") == path  # second call: the cache
