"""The fuzz suites: hostile image files among good ones through `atlas build` and `atlas activations`, and hostile
ONNX files through `atlas layers` (both ONNX backends) and `atlas activations`. Every run exits 0 with the bad
items named, or non-zero with one line and no traceback; no file outside a model's folder is opened."""

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
import fuzz_images  # noqa: E402
import fuzz_onnx  # noqa: E402

ATLAS = str(Path(sys.executable).with_name("atlas"))


@pytest.fixture(scope="module")
def model_path():
    atlas_demo = pytest.importorskip("atlas_demo")
    pytest.importorskip("atlas_onnx")
    return str(atlas_demo.efficientnet_lite0_onnx("dynamo"))


@pytest.fixture(scope="module")
def hostile_images(tmp_path_factory):
    atlas_demo = pytest.importorskip("atlas_demo")
    root = tmp_path_factory.mktemp("fuzz-images")
    src = atlas_demo.demo_images()
    good = [(src.load(int(k), (160, 200)) * 255).astype(np.uint8) for k in np.linspace(0, len(src) - 1, 12).astype(int)]
    kinds = fuzz_images.make(root / "images", good)
    counts = Counter(kinds.values())
    assert counts["bad"] + counts["either"] >= 300 and counts["good"] >= 25, counts
    return root, kinds


def _one_line_or_ok(rc, stderr):
    return rc == 0 or (stderr.count("\n") == 1 and stderr.startswith("atlas: error:"))


def test_hostile_images_in_a_build(model_path, hostile_images):
    root, kinds = hostile_images
    out = root / "atlas"
    res = subprocess.run([ATLAS, "build", model_path, "--images", root / "images", "--layer", "add_530", "--out", out,
                          "--reducer", "pca", "--levels", "3", "--min-count", "1", "--no-attribution", "--quiet"],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr[-2000:]
    assert "Traceback" not in res.stderr and "Warning" not in res.stderr, res.stderr[-2000:]
    report = json.loads((out / "report.json").read_text())
    names = json.loads((out / "images.json").read_text())
    used = {names[i] for i in np.load(out / "samples.npy")[:, 0]}
    skipped = {s["name"]: s["error"] for s in report["skipped"]}
    assert [n for n, k in kinds.items() if k == "good" and n not in used] == []  # every good image is in the atlas
    assert [n for n, k in kinds.items() if k == "bad" and n not in skipped] == []  # every bad one is named
    assert [n for n in kinds if n not in used and n not in skipped] == []  # nothing is lost
    assert all(name in error for name, error in skipped.items())  # the reason names the file
    assert "NaN or infinite" in skipped["bad/nan.tif"] and "over the cap" in skipped["bad/bomb-65535x65535.png"]


def test_hostile_images_in_activations(model_path, hostile_images, tmp_path):
    root, kinds = hostile_images
    res = subprocess.run([ATLAS, "activations", model_path, "--images", root / "images", "--layer", "add_530",
                          "-o", tmp_path / "acts.npz"], capture_output=True, text=True)
    assert res.returncode == 0 and "Traceback" not in res.stderr, res.stderr[-2000:]
    z = np.load(tmp_path / "acts.npz")
    kept = set(z["image_names"].tolist())
    assert {n for n, k in kinds.items() if k == "good"} <= kept and not kept & {n for n, k in kinds.items() if k == "bad"}
    assert np.isfinite(z["add_530"]).all()


def test_hostile_onnx_files(tmp_path):
    pytest.importorskip("atlas_onnx")
    folder = tmp_path / "models"
    names = fuzz_onnx.make(folder)
    assert len(names) >= 60
    np.save(tmp_path / "images.npy", (np.random.default_rng(0).random((3, 16, 16, 3)) * 255).astype(np.uint8))
    cases = []
    for n in names:
        cases.append({"id": f"layers:{n}", "argv": ["layers", str(folder / n)]})
        cases.append({"id": f"activations:{n}", "argv": ["activations", str(folder / n), "--images",
                                                          str(tmp_path / "images.npy"), "--layer", "r", "-o",
                                                          str(tmp_path / "out.npz")]})
        if "atlas_jax" in sys.modules or _installed("atlas_jax"):
            cases.append({"id": f"layers-onnx-jax:{n}", "argv": ["layers", str(folder / n), "--backend", "onnx-jax"]})
    (tmp_path / "cases.json").write_text(json.dumps(cases))
    run = subprocess.run([sys.executable, str(HERE / "fuzz_runner.py"), tmp_path / "cases.json",
                          tmp_path / "results.json"], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
    results = json.loads((tmp_path / "results.json").read_text())
    escaped = [(r["id"], r["traceback"].strip().splitlines()[-1]) for r in results if r["traceback"]]
    assert escaped == []
    noisy = [(r["id"], r["stderr"]) for r in results if not _one_line_or_ok(r["rc"], r["stderr"])]
    assert noisy == []
    secret = str((tmp_path / fuzz_onnx.SECRET).resolve())
    assert [r["id"] for r in results if secret in r["opened"]] == []  # no traversal reached the file outside
    ok = {r["id"] for r in results if r["rc"] == 0}
    assert {"layers:good.onnx", "activations:good.onnx", "layers:good-fixed-batch.onnx"} <= ok
    refused = Counter(r["id"].split(":")[0] for r in results if r["rc"] != 0)
    assert refused["layers"] >= 40, refused


def _installed(module: str) -> bool:
    import importlib.util
    return importlib.util.find_spec(module) is not None
