"""The command line with the onnx backend: `atlas layers`, `atlas activations`, and bad input as one
line on stderr with exit status 2, never a traceback."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from PIL import Image

import atlas_demo

ATLAS = str(Path(sys.executable).with_name("atlas"))


def atlas(*args):
    return subprocess.run([ATLAS, *map(str, args)], capture_output=True, text=True)


def one_line_error(out, *words):
    assert out.returncode == 2, out
    assert out.stderr.count("\n") == 1 and "Traceback" not in out.stderr, out.stderr
    assert out.stderr.startswith("atlas: error: ")
    for word in words:
        assert word in out.stderr, out.stderr


def test_layers_json(dynamo_path):
    out = atlas("layers", dynamo_path, "--json")
    assert out.returncode == 0, out.stderr
    layers = json.loads(out.stdout)
    assert len(layers) == 94 and all({"name", "op_type", "shape"} <= set(x) for x in layers)
    assert layers[-1] == {"name": "logits", "op_type": "Gemm", "shape": [1000]}
    assert {"name": "hardtanh_20", "op_type": "Clip", "shape": [14, 14, 672], "bounds": [0.0, 6.0]} in layers


def test_layers_text_with_options(dynamo_path):
    out = atlas("layers", dynamo_path, "--threads", "1", "--mean", "0.5", "--std", "0.5")
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[-1].split() == ["logits", "Gemm", "1000"]
    assert "94 layers" in out.stderr and "running on CPUExecutionProvider" in out.stderr


def test_activations_command(dynamo_path, tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    for name in ("rocket", "coffee"):
        Image.fromarray((atlas_demo.photo(name) * 255).astype(np.uint8)).save(images / f"{name}.png")
    (images / "zz_broken.png").write_text("not an image")
    out = atlas("activations", dynamo_path, "--images", images, "--layer", "hardtanh_20", "--layer", "logits",
                "-o", tmp_path / "acts.npz", "--batch-size", "1", "--threads", "2")
    assert out.returncode == 0, out.stderr
    assert "skipped 1 image" in out.stdout and "zz_broken.png" in out.stderr
    data = np.load(tmp_path / "acts.npz")
    assert list(data["image_names"]) == ["coffee.png", "rocket.png"]  # file-name order
    assert data["hardtanh_20"].shape == (2, 14, 14, 672) and data["logits"].argmax(1)[0] == 967


def test_missing_model():
    one_line_error(atlas("layers", "/nonexistent/model.onnx"), "not found")


def test_not_an_onnx_file(tmp_path):
    fake = tmp_path / "fake.onnx"
    fake.write_text("this is text, not a protobuf\n" * 10)
    one_line_error(atlas("layers", fake), "not an ONNX model")
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    one_line_error(atlas("layers", empty), "not an ONNX model")


@pytest.fixture(scope="module")
def external(dynamo_path):
    """The dynamo export's graph, to be saved with edited external-data locations."""
    return onnx.load(str(dynamo_path), load_external_data=False)


def _with_location(model, location):
    edited = onnx.ModelProto()
    edited.CopyFrom(model)
    for entry in edited.graph.initializer[0].external_data:
        if entry.key == "location":
            entry.value = location
    return edited


def test_missing_external_data(tmp_path, dynamo_path):
    shutil.copy(dynamo_path, tmp_path / "model.onnx")
    one_line_error(atlas("layers", tmp_path / "model.onnx"), "efficientnet-lite0.onnx.data", "missing")


def test_external_data_outside_the_model_folder_is_refused(tmp_path, external, dynamo_path):
    folder = tmp_path / "model"
    folder.mkdir()
    shutil.copy(dynamo_path.with_name(dynamo_path.name + ".data"), folder / "efficientnet-lite0.onnx.data")
    (tmp_path / "secret.data").write_bytes(b"\0" * 4096)
    for location in ("../secret.data", str(tmp_path / "secret.data"), "sub/../../secret.data"):
        onnx.save(_with_location(external, location), str(folder / "m.onnx"))
        one_line_error(atlas("layers", folder / "m.onnx"), "path traversal")
    (folder / "link.data").symlink_to(tmp_path / "secret.data")
    onnx.save(_with_location(external, "link.data"), str(folder / "m.onnx"))
    one_line_error(atlas("layers", folder / "m.onnx"), "path traversal")


def test_truncated_external_data(tmp_path, external):
    (tmp_path / "efficientnet-lite0.onnx.data").write_bytes(b"\0" * 100)
    onnx.save(external, str(tmp_path / "m.onnx"))
    one_line_error(atlas("layers", tmp_path / "m.onnx"), "shorter")


def test_unknown_layer_names_the_closest(dynamo_path, tmp_path):
    (tmp_path / "img").mkdir()
    Image.fromarray((atlas_demo.photo("coffee") * 255).astype(np.uint8)).save(tmp_path / "img" / "c.png")
    out = atlas("activations", dynamo_path, "--images", tmp_path / "img", "--layer", "hardtanh20",
                "-o", tmp_path / "a.npz")
    one_line_error(out, "unknown layer 'hardtanh20'", "hardtanh_20")


def test_bad_options(dynamo_path):
    one_line_error(atlas("layers", dynamo_path, "--size", "300"), "fixed to 224x224")
    one_line_error(atlas("layers", dynamo_path, "--threads", "0"), "--threads")
    one_line_error(atlas("layers", dynamo_path, "--device", "tpu"), "--device")
