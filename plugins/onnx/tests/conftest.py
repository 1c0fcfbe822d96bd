"""Session fixtures: the real EfficientNet-Lite0 exports (cached outside the repo), real photos,
and graph variants of the real model made by surgery (fixed batch, NHWC input, open spatial size)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest

import atlas_demo
from atlas_core.models import open_model

LIGHT = Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"
PHOTOS = atlas_demo.TEST_PHOTOS


@pytest.fixture(scope="session")
def dynamo_path() -> Path:
    return atlas_demo.efficientnet_lite0_onnx("dynamo")


@pytest.fixture(scope="session")
def legacy_path() -> Path:
    return atlas_demo.efficientnet_lite0_onnx("legacy")


@pytest.fixture(scope="session")
def photos() -> np.ndarray:
    """The five real photos, centre-cropped and resized to 224x224, float32 NHWC in [0, 1]."""
    return atlas_demo.photo_batch(PHOTOS, 224)


@pytest.fixture(scope="session")
def dynamo(dynamo_path):
    return open_model(dynamo_path, threads=2)


@pytest.fixture(scope="session")
def legacy(legacy_path):
    return open_model(legacy_path, threads=2)


@pytest.fixture(scope="session")
def torch_model():
    return atlas_demo.efficientnet_lite0()


def save_variant(folder: Path, model: onnx.ModelProto, source: Path, name: str = "variant.onnx") -> Path:
    """Save an edited graph next to a copy of the original's external data file and its sidecar."""
    folder.mkdir(parents=True, exist_ok=True)
    data = source.with_name(source.name + ".data")
    if data.exists() and not (folder / data.name).exists():
        shutil.copy(data, folder / data.name)
    sidecar = source.with_name(source.name + ".input.json")
    shutil.copy(sidecar, folder / (name + ".input.json"))
    path = folder / name
    onnx.save(model, str(path))
    return path


def graph_only(path: Path) -> onnx.ModelProto:
    return onnx.load(str(path), load_external_data=False)


@pytest.fixture(scope="session")
def variants(tmp_path_factory, dynamo_path, legacy_path) -> dict:
    """Real-weight variants: ``batch1`` (legacy export with batch fixed to 1), ``nhwc`` (a channels-last
    input transposed into the dynamo graph), ``contrib`` (an onnxruntime-only op first), ``open``
    (dynamo graph with open height and width), ``constants`` (legacy export, weights as Constant nodes),
    ``tokens`` (a rank-3 tensor: the head's map as a sequence of tokens)."""
    root = tmp_path_factory.mktemp("variants")
    out = {}

    m = graph_only(legacy_path)
    dim = m.graph.input[0].type.tensor_type.shape.dim[0]
    dim.Clear()
    dim.dim_value = 1
    for o in m.graph.output:
        o.type.tensor_type.shape.dim[0].Clear()
        o.type.tensor_type.shape.dim[0].dim_value = 1
    out["batch1"] = save_variant(root / "batch1", m, legacy_path)

    m = graph_only(dynamo_path)
    old = m.graph.input[0]
    nhwc = onnx.helper.make_tensor_value_info("pixels", onnx.TensorProto.FLOAT, ["batch", 224, 224, 3])
    transpose = onnx.helper.make_node("Transpose", ["pixels"], [old.name], perm=[0, 3, 1, 2], name="to_nchw")
    del m.graph.input[:]
    m.graph.input.append(nhwc)
    m.graph.node.insert(0, transpose)
    out["nhwc"] = save_variant(root / "nhwc", m, dynamo_path)

    m = graph_only(dynamo_path)  # the stem's Conv + Clip as onnxruntime's contrib FusedConv: onnx
    conv, clip = m.graph.node[0], m.graph.node[1]  # cannot infer its shape, nor anything after it
    fused = onnx.helper.make_node("FusedConv", list(conv.input), list(clip.output), name="stem",
                                  domain="com.microsoft", activation="Clip", activation_params=[0.0, 6.0],
                                  **{a.name: onnx.helper.get_attribute_value(a) for a in conv.attribute})
    del m.graph.node[:2]
    m.graph.node.insert(0, fused)
    m.opset_import.append(onnx.helper.make_opsetid("com.microsoft", 1))
    del m.graph.value_info[:]
    out["contrib"] = save_variant(root / "contrib", m, dynamo_path)

    m = graph_only(dynamo_path)
    shape = m.graph.input[0].type.tensor_type.shape
    shape.dim[2].Clear()
    shape.dim[2].dim_param = "height"
    shape.dim[3].Clear()
    shape.dim[3].dim_param = "width"
    del m.graph.value_info[:]
    path = save_variant(root / "open", m, dynamo_path)
    side = path.with_name(path.name + ".input.json")
    side.write_text('{"preset": "imagenet"}')
    out["open"] = path

    m = graph_only(dynamo_path)  # the head's 7x7 map as 49 tokens of 1280 channels, a dead branch
    shape = onnx.numpy_helper.from_array(np.array([0, 1280, -1], np.int64), "token_shape")
    m.graph.initializer.append(shape)
    m.graph.node.extend([onnx.helper.make_node("Reshape", ["hardtanh_32", "token_shape"], ["tokens_cl"]),
                         onnx.helper.make_node("Transpose", ["tokens_cl"], ["tokens"], perm=[0, 2, 1])])
    out["tokens"] = save_variant(root / "tokens", m, dynamo_path)

    m = onnx.load(str(legacy_path))
    constants = [onnx.helper.make_node("Constant", [], [t.name], value=t, name=f"const_{t.name}")
                 for t in m.graph.initializer]
    del m.graph.initializer[:]
    for node in reversed(constants):
        m.graph.node.insert(0, node)
    out["constants"] = save_variant(root / "constants", m, legacy_path)
    return out
