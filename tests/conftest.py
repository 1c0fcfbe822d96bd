"""Shared fixtures of the core's tests: the kit's browser under short names; for test_health.py and
test_compare.py, real EfficientNet-Lite0 (ONNX), a copy of it with planted faults, and real photo crops. Nothing
here imports a framework until a fixture is used."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

CLIP = "hardtanh_7"  # block 3's depthwise ReLU6 (Clip 0..6), 28 x 28 x 144, after the Conv "getitem_30"
DEAD = [3, 40, 77, 100, 121, 140]  # bias -1e4 before the clip: never active
SATURATED = [5, 20, 64, 90, 111, 133]  # bias +1e4: always at 6
UPSTREAM = ["getitem_27", "hardtanh_6", "getitem_30"]  # the planted bias only shifts getitem_30 by constants
DOWNSTREAM = [CLIP, "add_236", "hardtanh_20", "hardtanh_32", "logits"]


def plant_faults(original: Path, folder: Path, rename: dict = None) -> Path:
    """A copy of the model whose Conv before ``CLIP`` has its bias moved by -1e4 on DEAD and +1e4 on SATURATED
    channels (and tensors renamed by ``rename``), saved with its weights as external data and the sidecar."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(original))
    producer = {out: node for node in model.graph.node for out in node.output}
    clip = producer[CLIP]
    conv = producer[clip.input[0]]
    assert clip.op_type == "Clip" and conv.op_type == "Conv", (clip.op_type, conv.op_type)
    bias = next(t for t in model.graph.initializer if t.name == conv.input[2])
    values = numpy_helper.to_array(bias).copy()
    values[DEAD] -= 1e4
    values[SATURATED] += 1e4
    bias.CopyFrom(numpy_helper.from_array(values, bias.name))
    for old, new in (rename or {}).items():
        for node in model.graph.node:
            node.input[:] = [new if n == old else n for n in node.input]
            node.output[:] = [new if n == old else n for n in node.output]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "planted.onnx"
    onnx.save(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
              location=path.name + ".data")
    shutil.copy(str(original) + ".input.json", str(path) + ".input.json")
    return path


def photo_source(n: int = 32):
    """``n`` views of the real demo photos spread over all of them, as an ArraySource (uint8, 224 x 224)."""
    import atlas_demo
    from atlas_core.images import ArraySource

    views = atlas_demo.demo_images()
    step = len(views) // n
    images = np.stack([views.load(i * step, (224, 224)) for i in range(n)])
    return ArraySource(np.rint(images * 255).astype(np.uint8), names=[views.names[i * step] for i in range(n)])


@pytest.fixture(scope="session")
def efficientnet_path():
    atlas_demo = pytest.importorskip("atlas_demo")
    pytest.importorskip("atlas_onnx")
    return atlas_demo.efficientnet_lite0_onnx("dynamo")


@pytest.fixture(scope="session")
def planted(efficientnet_path, tmp_path_factory):
    """The planted-fault copy (``.path``), what was planted where, and ``.make(folder, rename)`` for more copies."""
    pytest.importorskip("onnx")
    from types import SimpleNamespace
    return SimpleNamespace(path=plant_faults(efficientnet_path, tmp_path_factory.mktemp("planted")), clip=CLIP,
                           dead=DEAD, saturated=SATURATED, upstream=UPSTREAM, downstream=DOWNSTREAM,
                           make=lambda folder, rename=None: plant_faults(efficientnet_path, folder, rename))


@pytest.fixture(scope="session")
def photos():
    pytest.importorskip("atlas_demo")
    return photo_source(32)


@pytest.fixture(scope="session")
def browser(atlas_browser):
    return atlas_browser


@pytest.fixture
def open_page(atlas_open_page):
    return atlas_open_page
