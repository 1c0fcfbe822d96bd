"""The atlas pipeline on real weights and real images (EfficientNet-Lite0, ONNX backend)."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

atlas_demo = pytest.importorskip("atlas_demo")
pytest.importorskip("atlas_onnx")

import atlas_core  # noqa: E402
from atlas_core.atlas import validate  # noqa: E402

ATLAS = str(Path(sys.executable).with_name("atlas"))
LAYER = "add_530"  # 14 x 14 x 112


@pytest.fixture(scope="session")
def model_path():
    return str(atlas_demo.efficientnet_lite0_onnx("dynamo"))


@pytest.fixture(scope="session")
def lfw_atlas(model_path, tmp_path_factory):
    source, labels = atlas_demo.lfw()
    out = tmp_path_factory.mktemp("lfw-atlas")
    return atlas_core.build(model_path, source, LAYER, out, reducer="pca", labels=labels, levels=(5, 10),
                            pool=True, attribution=False, quiet=True), labels


@pytest.fixture(scope="session")
def photo_folder(tmp_path_factory):
    """48 real photo crops as JPEG/PNG files in nested folders, plus one corrupt file."""
    root = tmp_path_factory.mktemp("photos")
    source = atlas_demo.demo_images()
    step = len(source) // 48
    for k in range(48):
        img = Image.fromarray((source.raw(k * step) * 255).astype(np.uint8))
        img.thumbnail((160, 160))
        sub = root / ("a" if k % 2 else "b")
        sub.mkdir(exist_ok=True)
        img.save(sub / f"img{k:03d}.{'jpg' if k % 3 else 'png'}")
    (root / "b" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    return root


def run(*args, **kw):
    return subprocess.run([ATLAS, *map(str, args)], capture_output=True, text=True, **kw)


def test_lfw_layout_separates_faces(lfw_atlas):
    atlas, labels = lfw_atlas
    q = atlas.quality
    assert q["label_source"] == "ground truth"
    assert q["knn_2d"] > 0.75, q  # chance is 0.5
    assert q["knn_full"] > 0.75, q
    assert 0.5 < q["trustworthiness"] <= 1


def test_lfw_manifest_validates_and_icons_exist(lfw_atlas):
    atlas, _ = lfw_atlas
    validate(atlas.path)
    m = atlas.manifest
    assert m["n_samples"] == 200 and m["layer"] == LAYER and m["layer_shape"] == [14, 14, 112]
    layout = atlas.layout
    assert layout.shape == (200, 2) and layout.dtype == np.float32
    assert layout.min() >= 0 and layout.max() <= 1
    for level in m["levels"]:
        dirs = np.load(atlas.path / level["directions"])
        assert dirs.shape == (len(level["cells"]), 112)
        for cell in level["cells"]:
            assert cell["count"] >= level["min_count"] == 5
            icon = Image.open(atlas.path / cell["icon"])
            assert icon.size == (80, 80)
            # the direction is the mean of the members' activations
            acts = atlas.store().activations()[cell["samples"]]
            np.testing.assert_allclose(dirs[cell["direction"]], acts.mean(0), rtol=1e-4, atol=1e-5)
            assert -1 <= cell["fidelity"] <= 1
    assert Image.open(atlas.path / "atlas.png").size == (800, 800)


def test_build_cli_skips_corrupt_image_and_reports_it(model_path, photo_folder, tmp_path):
    out = tmp_path / "atlas"
    res = run("build", model_path, "--images", photo_folder, "--layer", LAYER, "--out", out, "--reducer", "pca",
              "--levels", "4", "--min-count", "2", "--samples-per-image", "2")
    assert res.returncode == 0, res.stderr
    assert "skipped 1 images" in res.stdout
    report = json.loads((out / "report.json").read_text())
    assert [s["name"] for s in report["skipped"]] == ["b/broken.jpg"]
    m = json.loads((out / "atlas.json").read_text())
    # with the JAX plugin installed, EfficientNet-Lite0 is a differentiable classifier: cells are labelled by
    # attribution, and keep the images' predicted classes beside
    assert m["n_samples"] == 96 and m["label_source"] == "attribution"
    assert m["label_sources"] == ["attribution", "predicted"]
    assert all("predicted" in c["labels_by_source"] for lv in m["levels"] for c in lv["cells"])
    labels = {c["label"] for lv in m["levels"] for c in lv["cells"]}
    assert labels and not any(label.startswith("class ") for label in labels), labels  # ImageNet names
    samples = np.load(out / "samples.npy")
    assert samples[:, 1:].min() >= 1 and samples[:, 1:].max() <= 12  # never on the border of 14 x 14
    validate(out)
    # re-running with other grid options reuses what was collected and laid out
    chunks = {p: p.stat().st_mtime_ns for p in (out / "store").glob("*/chunk-*.npz")}
    res2 = run("build", model_path, "--images", photo_folder, "--layer", LAYER, "--out", out, "--reducer", "pca",
               "--levels", "2,4", "--min-count", "2", "--samples-per-image", "2")
    assert res2.returncode == 0 and "reusing pca layout" in res2.stdout
    assert "collect: 0/49" not in res2.stderr
    assert chunks == {p: p.stat().st_mtime_ns for p in (out / "store").glob("*/chunk-*.npz")}
    assert [lv["grid"] for lv in json.loads((out / "atlas.json").read_text())["levels"]] == [2, 4]


def test_kill_and_resume_gives_the_same_atlas(model_path, photo_folder, tmp_path):
    args = ["build", model_path, "--images", photo_folder, "--layer", LAYER, "--reducer", "pca", "--levels", "4",
            "--min-count", "2", "--chunk-images", "8", "--batch-size", "4", "--seed", "3", "--quiet"]
    whole = run(*args, "--out", tmp_path / "whole")
    assert whole.returncode == 0, whole.stderr
    out = tmp_path / "killed"
    proc = subprocess.Popen([ATLAS, *map(str, args), "--out", str(out)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and len(list((out / "store").glob("*/chunk-*.npz"))) < 2:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done = len(list((out / "store").glob("*/chunk-*.npz")))
    assert 2 <= done < 7, "the kill should land mid-collection"
    assert not (out / "atlas.json").exists()
    resumed = run(*args, "--out", out)
    assert resumed.returncode == 0, resumed.stderr
    np.testing.assert_array_equal(np.load(out / "samples.npy"), np.load(tmp_path / "whole" / "samples.npy"))
    np.testing.assert_array_equal(np.load(out / "attribution.npy"), np.load(tmp_path / "whole" / "attribution.npy"))
    np.testing.assert_allclose(np.load(out / "layout.npy"), np.load(tmp_path / "whole" / "layout.npy"), atol=1e-6)
    a = json.loads((out / "atlas.json").read_text())["levels"]
    b = json.loads((tmp_path / "whole" / "atlas.json").read_text())["levels"]
    assert [(c["i"], c["j"], c["samples"]) for c in a[0]["cells"]] == \
           [(c["i"], c["j"], c["samples"]) for c in b[0]["cells"]]


def test_user_errors_are_one_line(model_path, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    cases = [
        (["build", model_path, "--images", empty, "--layer", LAYER], "no images"),
        (["build", model_path, "--images", "demo", "--layer", LAYER, "--reducer", "nope"], "unknown reducer"),
        (["build", model_path, "--images", "demo", "--layer", LAYER, "--levels", "0", "--reducer", "pca"],
         "positive"),
        (["build", model_path, "--images", "demo", "--layer", "add_5300", "--reducer", "pca"], "add_530"),
        (["build", model_path, "--images", tmp_path / "missing", "--layer", LAYER, "--reducer", "pca"],
         "does not exist"),
    ]
    for args, needle in cases:
        res = run(*args, "--out", tmp_path / "o")
        assert res.returncode == 2, (args, res.stderr)
        assert needle in res.stderr and res.stderr.count("\n") == 1 and "Traceback" not in res.stderr, res.stderr


def test_impossible_grid_and_dense_layer(model_path, tmp_path):
    source, _ = atlas_demo.lfw()
    with pytest.raises(atlas_core.UsageError, match="no requested grid"):
        atlas_core.build(model_path, source, LAYER, tmp_path / "a", reducer="pca", levels=(80,), quiet=True)
    # a layer without spatial dimensions is pooled automatically, with a note
    faces = tmp_path / "faces.npy"
    np.save(faces, source.array[90:130])
    res = run("build", model_path, "--images", faces, "--layer", "logits", "--reducer", "pca", "--levels", "3",
              "--out", tmp_path / "dense", "--min-count", "1")
    assert res.returncode == 0, res.stderr
    assert "no spatial dimensions" in res.stdout
    samples = np.load(tmp_path / "dense" / "samples.npy")
    assert samples.shape == (40, 3) and (samples[:, 1:] == -1).all()


def test_labels_csv_matches_relative_path_or_file_name(tmp_path):
    from atlas_core.images import ArraySource
    from atlas_core.labels import read_labels
    source = ArraySource(np.zeros((3, 4, 4, 3)), names=["a/x.jpg", "b/y.png", "z.bmp"])
    csv_path = tmp_path / "labels.csv"
    csv_path.write_text("file,label\na/x.jpg,cat\ny.png,<img src=x onerror=alert(1)>\n")
    assert read_labels(csv_path, source) == ["cat", "<img src=x onerror=alert(1)>", None]
    csv_path.write_text("nothing.jpg,dog\n")
    with pytest.raises(atlas_core.UsageError, match="no image of the source"):
        read_labels(csv_path, source)
