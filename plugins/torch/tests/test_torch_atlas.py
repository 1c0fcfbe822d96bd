"""An atlas built through the torch backend matches one built from the same model's ONNX export."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import atlas_demo

ATLAS = str(Path(sys.executable).with_name("atlas"))
COMMON = ["--reducer", "pca", "--levels", "3,6", "--min-count", "2", "--samples-per-image", "3", "--seed", "7",
          "--preset", "imagenet", "--threads", "2", "--quiet"]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The same build twice: --model atlas_demo:efficientnet_lite0 (torch) and its dynamo ONNX export (onnx)."""
    from atlas_core.plugins import load
    if "onnx" not in load().names("backends"):
        pytest.skip("needs the onnx backend (pip install ./plugins/onnx)")
    root = tmp_path_factory.mktemp("torch-vs-onnx")
    source, labels = atlas_demo.lfw()
    pick = list(range(0, 100, 5)) + list(range(100, 200, 5))  # 20 faces, 20 non-faces (real photos)
    np.save(root / "lfw.npy", np.stack([source.raw(i) for i in pick]))
    runs = {"torch": ["--model", "atlas_demo:efficientnet_lite0", "--layer", "_blocks.10"],
            "onnx": [str(atlas_demo.efficientnet_lite0_onnx("dynamo")), "--layer", "add_530"]}
    out = {}
    for name, args in runs.items():
        out[name] = root / name
        run = subprocess.run([ATLAS, "build", *args, "--images", str(root / "lfw.npy"), "--out", str(out[name]),
                              *COMMON], capture_output=True, text=True)
        assert run.returncode == 0, run.stderr[-2000:]
    return out


def manifest(folder: Path) -> dict:
    return json.loads((folder / "atlas.json").read_text())


def test_same_samples_and_layout(built):
    t, o = built["torch"], built["onnx"]
    np.testing.assert_array_equal(np.load(t / "samples.npy"), np.load(o / "samples.npy"))
    lt, lo = np.load(t / "layout.npy"), np.load(o / "layout.npy")
    assert lt.shape == (120, 2)
    np.testing.assert_allclose(lt, lo, atol=1e-4)


def test_same_cells_labels_and_icon_fidelity(built):
    mt, mo = manifest(built["torch"]), manifest(built["onnx"])
    assert mt["layer"] == "_blocks.10" and mo["layer"] == "add_530"
    assert mt["layer_shape"] == mo["layer_shape"] == [14, 14, 112]
    assert [lv["grid"] for lv in mt["levels"]] == [lv["grid"] for lv in mo["levels"]] == [3, 6]
    n_cells = 0
    for lt, lo in zip(mt["levels"], mo["levels"]):
        assert [(c["i"], c["j"], c["count"], c["samples"], c["label"]) for c in lt["cells"]] == \
               [(c["i"], c["j"], c["count"], c["samples"], c["label"]) for c in lo["cells"]]
        for ct, co in zip(lt["cells"], lo["cells"]):
            assert abs(ct["fidelity"] - co["fidelity"]) < 0.02
            n_cells += 1
    assert n_cells >= 10
    assert json.loads((built["torch"] / "predictions.json").read_text()) == \
        json.loads((built["onnx"] / "predictions.json").read_text())
