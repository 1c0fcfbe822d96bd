"""`atlas health` on real weights and real photos: planted dead and saturated channels in EfficientNet-Lite0."""

import json
import math

import numpy as np
import pytest
from PIL import Image

from atlas_core import UsageError
from atlas_core.analysis.health import health
from atlas_core.analysis.similarity import two_sample_accuracy
from atlas_core.images import ArraySource, open_source

pytest.importorskip("atlas_onnx")
pytest.importorskip("atlas_demo")

from atlas_core.models import open_model  # noqa: E402

CLIP = "hardtanh_7"  # the planted layer (see conftest.py)
LAYERS = ["getitem_27", "hardtanh_6", "getitem_30", CLIP]


@pytest.fixture(scope="module")
def reports(efficientnet_path, planted, photos, tmp_path_factory):
    assert planted.clip == CLIP
    original = health(open_model(efficientnet_path), photos, tmp_path_factory.mktemp("orig"), layers=LAYERS,
                      quiet=True)
    altered = health(open_model(planted.path), photos, tmp_path_factory.mktemp("planted"), layers=LAYERS,
                     quiet=True)
    return ({e["name"]: e for e in original["layers"]}, {e["name"]: e for e in altered["layers"]}, planted)


def test_planted_dead_and_saturated_channels_are_reported_exactly(reports):
    original, planted, faults = reports
    DEAD, SATURATED = faults.dead, faults.saturated
    assert not set(DEAD + SATURATED) & set(original[CLIP]["dead"] + original[CLIP]["saturated"])
    assert original[CLIP]["saturated"] == []
    assert set(planted[CLIP]["dead"]) == set(original[CLIP]["dead"]) | set(DEAD)
    assert planted[CLIP]["saturated"] == SATURATED
    assert set(planted[CLIP]["constant"]) >= set(DEAD + SATURATED)
    # the Conv before the clip is never positive on the dead channels; it has no bounds, so nothing saturates
    assert set(planted["getitem_30"]["dead"]) == set(original["getitem_30"]["dead"]) | set(DEAD)
    assert planted["getitem_30"]["saturated"] == [] and planted["getitem_30"]["bounds"] is None
    # layers before the change are untouched
    for name in ("getitem_27", "hardtanh_6"):
        assert planted[name]["dead"] == original[name]["dead"]
        assert planted[name]["active_fraction"] == original[name]["active_fraction"]


def test_report_fields(reports):
    _, planted, faults = reports
    DEAD, SATURATED = faults.dead, faults.saturated
    e = planted[CLIP]
    assert e["op_type"] == "Clip" and e["bounds"] == [0.0, 6.0] and e["channels"] == 144 and e["shape"] == [28, 28, 144]
    assert e["positions"] == 28 * 28
    for key in ("active_fraction", "mean_abs", "max", "min", "dormant_score", "saturation_fraction"):
        assert len(e[key]) == 144, key
    assert all(e["active_fraction"][c] == 0 and e["max"][c] == 0 for c in DEAD)
    assert all(e["saturation_fraction"][c] == 1 and e["min"][c] == 6 for c in SATURATED)
    assert math.isclose(np.mean(e["dormant_score"]), 1, rel_tol=1e-4)  # the score is relative to the layer's mean
    assert set(e["dormant"]) >= set(DEAD)  # |h| = 0: score 0


def test_statistics_equal_a_direct_computation_on_the_full_activations(planted, photos, tmp_path):
    """The streamed, blocked statistics (graph layout, several batches) equal numpy on the canonical arrays."""
    model = open_model(planted.path)
    report = health(model, photos, tmp_path, layers=[CLIP, "getitem_30"], batch_size=7, quiet=True)
    images = np.stack([photos.load(i, (224, 224)) for i in range(len(photos))])
    acts = model.activations(images, [CLIP, "getitem_30"])
    for e in report["layers"]:
        a = acts[e["name"]].reshape(-1, e["channels"]).astype(np.float64)
        np.testing.assert_allclose(e["active_fraction"], (a > 0).mean(axis=0), rtol=1e-5)
        np.testing.assert_allclose(e["mean_abs"], np.abs(a).mean(axis=0), rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(e["max"], a.max(axis=0), rtol=1e-5)
        np.testing.assert_allclose(e["min"], a.min(axis=0), rtol=1e-5)
        score = np.abs(a).mean(axis=0) / np.abs(a).mean(axis=0).mean()
        np.testing.assert_allclose(e["dormant_score"], score, rtol=1e-4, atol=1e-7)
        assert e["dormant"] == [int(i) for i in np.flatnonzero(score <= 0.025)]
    clip = report["layers"][0]
    a = acts[CLIP].reshape(-1, 144)
    np.testing.assert_allclose(clip["saturation_fraction"], (a >= 6 - 6e-3).mean(axis=0), rtol=1e-5)


def test_dormant_threshold_is_an_option(efficientnet_path, photos, tmp_path):
    model = open_model(efficientnet_path)
    few = ArraySource(photos.array[:8])
    low = health(model, few, tmp_path / "low", layers=["hardtanh_20"], dormant_threshold=0.0, quiet=True)["layers"][0]
    high = health(model, few, tmp_path / "high", layers=["hardtanh_20"], dormant_threshold=0.5, quiet=True)["layers"][0]
    score = np.array(high["dormant_score"])
    assert high["dormant"] == [int(i) for i in np.flatnonzero(score <= 0.5)]
    assert low["dormant"] == [int(i) for i in np.flatnonzero(score <= 0)]
    assert len(high["dormant"]) > len(low["dormant"])


def test_pictures_and_page(planted, photos, tmp_path):
    """health.png and index.html are written; every string from the model is escaped in the page."""
    evil = '<script>alert("x")</script>&'
    path = planted.make(tmp_path / "model", rename={CLIP: evil})
    report = health(open_model(path), ArraySource(photos.array[:6]), tmp_path / "out", layers=[evil], quiet=True)
    page = (tmp_path / "out" / "index.html").read_text()
    assert evil not in page and "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;&amp;" in page
    saved = json.loads((tmp_path / "out" / "health.json").read_text())
    assert saved == json.loads(json.dumps(report)) and saved["layers"][0]["name"] == evil
    png = Image.open(tmp_path / "out" / "health.png")
    assert png.width > 600 and png.height > 100


def test_bounds_of_bounded_layers(efficientnet_path):
    layers = open_model(efficientnet_path).layers()
    assert {(x.op_type, x.bounds) for x in layers if x.op_type == "Clip"} == {("Clip", (0.0, 6.0))}
    assert all(x.bounds is None for x in layers if x.op_type != "Clip")
    atlas_demo = pytest.importorskip("atlas_demo")
    legacy = open_model(atlas_demo.efficientnet_lite0_onnx("legacy")).layers()  # limits from Constant nodes
    assert {x.bounds for x in legacy if x.op_type == "Clip"} == {(0.0, 6.0)}


def test_torch_backend_reports_the_same_dead_channels(efficientnet_path, photos, tmp_path):
    pytest.importorskip("atlas_torch")
    import atlas_demo
    few = ArraySource(photos.array[:12])
    torch_model = open_model(atlas_demo.efficientnet_lite0(), preset="imagenet", size=224)
    stem = next(x for x in torch_model.layers() if x.op_type == "ReLU6")
    assert stem.bounds == (0.0, 6.0)
    t = health(torch_model, few, tmp_path / "torch", layers=[stem.name], quiet=True)["layers"][0]
    o = health(open_model(efficientnet_path), few, tmp_path / "onnx", layers=["hardtanh"], quiet=True)["layers"][0]
    assert t["dead"] == o["dead"] and t["saturated"] == o["saturated"] == []
    np.testing.assert_allclose(t["active_fraction"], o["active_fraction"], atol=2e-3)


def test_bad_input_is_a_usage_error(efficientnet_path, photos, tmp_path):
    model = open_model(efficientnet_path)
    few = ArraySource(photos.array[:2])
    with pytest.raises(UsageError, match="unknown layer 'hardtanh_77'.*closest"):
        health(model, few, tmp_path, layers="hardtanh_7,hardtanh_77")
    with pytest.raises(UsageError, match="at least one layer"):
        health(model, few, tmp_path, layers=" , ")
    with pytest.raises(UsageError, match="no images"):
        health(model, ArraySource(np.zeros((0, 224, 224, 3), np.uint8)), tmp_path, layers=[CLIP])
    with pytest.raises(UsageError, match="dormant threshold"):
        health(model, few, tmp_path, layers=[CLIP], dormant_threshold=-1)
    with pytest.raises(UsageError, match="batch size must be a positive whole number"):
        health(model, few, tmp_path, layers=[CLIP], batch_size=0)
    (tmp_path / "file").write_text("x")
    with pytest.raises(UsageError, match="is a file"):
        health(model, few, tmp_path / "file", layers=[CLIP])


def test_undecodable_images_are_skipped_and_counted(efficientnet_path, photos, tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(photos.array[i]).save(folder / f"ok{i}.png")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    model = open_model(efficientnet_path)
    report = health(model, open_source(str(folder)), tmp_path / "out", layers=[CLIP], quiet=True)
    assert report["images"] == 3 and [s["image"] for s in report["skipped"]] == ["broken.jpg"]
    only_bad = tmp_path / "bad"
    only_bad.mkdir()
    (only_bad / "broken.png").write_bytes(b"not a png")
    with pytest.raises(UsageError, match="none of the 1 images could be decoded"):
        health(model, open_source(str(only_bad)), tmp_path / "out2", layers=[CLIP], quiet=True)


def test_two_sample_accuracy_on_real_activations():
    """Faces against non-faces (lfw_subset through EfficientNet-Lite0) are told apart; two random halves of the
    same set are not."""
    atlas_demo = pytest.importorskip("atlas_demo")
    acts, faces = atlas_demo.lfw_activations()
    assert two_sample_accuracy(acts[faces], acts[~faces]) > 0.85
    rng = np.random.default_rng(1)
    halves = [two_sample_accuracy(*np.array_split(acts[rng.permutation(len(acts))], 2), seed=s) for s in range(5)]
    assert abs(np.mean(halves) - 0.5) < 0.1, halves


def test_analysis_imports_no_framework():
    import subprocess
    import sys

    heavy = ["onnxruntime", "onnx", "jax", "torch", "sklearn", "scipy", "umap", "openTSNE", "numba"]
    code = ("import sys, atlas_core.analysis.health, atlas_core.analysis.compare, atlas_core.analysis.draw\n"
            f"print([m for m in {heavy!r} if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "[]"
