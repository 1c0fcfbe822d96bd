"""Class atlases, two-class comparisons and the patch test, from a real attribution atlas (EfficientNet-Lite0 on
real photos), through the command line, and their pages in Chromium."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

atlas_demo = pytest.importorskip("atlas_demo")
pytest.importorskip("atlas_onnx")
pytest.importorskip("atlas_jax", reason="class atlases need attribution, which needs the JAX plugin")
pytest.importorskip("atlas_tsne", reason="the comparison's y axis is a 1-D t-SNE")

from atlas_core.atlas import validate  # noqa: E402
from atlas_core.classes.comparison import comparison_x  # noqa: E402
from atlas_core.classes.filters import resolve_class, select  # noqa: E402

ATLAS = str(Path(sys.executable).with_name("atlas"))
LAYER = "add_530"


def run(*args):
    return subprocess.run([ATLAS, *map(str, args)], capture_output=True, text=True)


@pytest.fixture(scope="module")
def parent(tmp_path_factory):
    """An attribution atlas of 240 crops of the real photos (2 positions each), saved as a .npy of images."""
    root = tmp_path_factory.mktemp("classes")
    source = atlas_demo.demo_images()
    ids = np.linspace(0, len(source) - 1, 240).astype(int)
    np.save(root / "views.npy", np.stack([(source.load(int(k), (224, 224)) * 255).astype(np.uint8) for k in ids]))
    res = run("build", atlas_demo.efficientnet_lite0_onnx("dynamo"), "--images", root / "views.npy", "--layer",
              LAYER, "--out", root / "atlas", "--reducer", "pca", "--levels", "4,8", "--min-count", "2",
              "--samples-per-image", "2", "--quiet")
    assert res.returncode == 0, res.stderr
    return root


def _strongest(parent, k=2):
    attribution = np.load(parent / "atlas" / "attribution.npy").astype(np.float32)
    classes = json.loads((parent / "atlas" / "classes.json").read_text())
    wins = np.bincount(attribution.argmax(1), minlength=len(classes))
    return [classes[c] for c in np.argsort(-wins)[:k]], attribution, classes


def test_class_names_resolve_by_name_index_or_unique_part():
    names = ["tabby cat", "tiger cat", "Egyptian cat", "grey whale"]
    assert resolve_class("grey whale", names) == 3 and resolve_class("2", names) == 2
    assert resolve_class("Tabby", names) == 0 and resolve_class("whale", names) == 3
    with pytest.raises(Exception, match="ambiguous"):
        resolve_class("cat", names)
    with pytest.raises(Exception, match="did you mean 'grey whale'"):
        resolve_class("grey whales", names)


def test_class_atlas_from_a_built_atlas(parent):
    (name, _), attribution, classes = _strongest(parent)
    c = classes.index(name)
    out = parent / "class"
    res = run("class-atlas", parent / "atlas", "--class", name, "--out", out, "--reducer", "pca", "--top-n", "40",
              "--min-count", "2", "--levels", "3")
    assert res.returncode == 0, res.stderr
    m = validate(out)
    expected = np.union1d(np.flatnonzero(attribution.argmax(1) == c),
                          np.sort(np.argsort(-attribution[:, c])[:40][attribution[np.argsort(-attribution[:, c])[:40],
                                                                                 c] > 0]))
    assert m["class"]["name"] == name and m["n_samples"] == len(expected) == m["class"]["n_samples"]
    parent_acts = json.loads((parent / "atlas" / "atlas.json").read_text())
    store = np.load(parent / "atlas" / parent_acts["store"] / "acts.npy")
    mine = np.load(out / m["store"] / "acts.npy")
    np.testing.assert_array_equal(mine, store[expected])  # the same samples, not collected again
    np.testing.assert_array_equal(np.load(out / "attribution.npy"), attribution[expected].astype(np.float16))
    assert (out / "index.html").is_file() and (out / "atlas.png").is_file()


def test_compare_classes_axis(parent):
    (a, b), attribution, classes = _strongest(parent)
    out = parent / "compare"
    res = run("compare-classes", parent / "atlas", "--classes", f"{a},{b}", "--out", out, "--top-n", "40",
              "--min-count", "2", "--levels", "4")
    assert res.returncode == 0, res.stderr
    m = validate(out)
    assert m["axis"]["x"]["left"] == a and m["axis"]["x"]["right"] == b
    ia, ib = classes.index(a), classes.index(b)
    ids = np.union1d(select(attribution, ia, "both", 40), select(attribution, ib, "both", 40))
    layout = np.load(out / "layout.npy")
    x = comparison_x(np.load(out / "attribution.npy"), ia, ib)
    np.testing.assert_allclose(layout[:, 0], (x + 1) / 2, atol=1e-6)
    assert len(layout) == len(ids)
    # B's winners lie right of A's
    own = np.load(out / "attribution.npy").astype(np.float32)
    assert layout[own.argmax(1) == ib, 0].mean() > layout[own.argmax(1) == ia, 0].mean()


def test_errors_are_one_line(parent):
    cases = [(["class-atlas", parent / "atlas", "--class", "no such class xyz", "--out", parent / "x"], "no class"),
             (["compare-classes", parent / "atlas", "--classes", "0", "--out", parent / "x"], "two classes"),
             (["patch-test", parent / "atlas", "--cell", "4:9,9", "--onto", parent / "views.npy", "--target", "0",
               "--out", parent / "x"], "no cell"),
             (["patch-test", parent / "atlas", "--cell", "4-1-1", "--onto", parent / "views.npy", "--target", "0",
               "--out", parent / "x"], "GRID:I,J")]
    for args, needle in cases:
        res = run(*args)
        assert res.returncode == 2 and needle in res.stderr and res.stderr.count("\n") == 1, (args, res.stderr)


def test_patch_test_against_its_control(parent, tmp_path):
    m = json.loads((parent / "atlas" / "atlas.json").read_text())
    level = next(lv for lv in m["levels"] if lv["grid"] == 4)
    cell = max(level["cells"], key=lambda c: c["count"])
    faces = tmp_path / "faces.npy"
    np.save(faces, atlas_demo.lfw()[0].array[:12])  # held out: not among the atlas's photos
    res = run("patch-test", parent / "atlas", "--cell", f"4:{cell['i']},{cell['j']}", "--onto", faces,
              "--target", cell["label"], "--out", tmp_path / "pt", "--controls", "3", "--positions", "2")
    assert res.returncode == 0, res.stderr
    report = json.loads((tmp_path / "pt" / "patch-test.json").read_text())
    assert report["n_images"] == 12 and report["control"]["n_cells"] == 3
    assert report["target"]["name"] == cell["label"]
    assert len(report["test"]["delta_per_image"]) == 12 and 0 <= report["test"]["rises"] <= 1
    assert {tuple(c["cell"]) for c in report["control"]["cells"]}.isdisjoint({(cell["i"], cell["j"])})
    assert (tmp_path / "pt" / "patch-test.png").is_file() and (tmp_path / "pt" / "index.html").is_file()


@pytest.mark.browser
def test_pages_show_the_class_heat_map_and_the_axis(parent, open_page):
    (a, b), _, _ = _strongest(parent)
    if not (parent / "compare" / "index.html").is_file():
        run("compare-classes", parent / "atlas", "--classes", f"{a},{b}", "--out", parent / "compare", "--top-n",
            "40", "--min-count", "2", "--levels", "4")
    page = open_page((parent / "atlas" / "index.html").resolve().as_uri())
    page.wait_for_selector("html[data-ready]", timeout=15000)
    page.fill("#attr", a)
    page.wait_for_function("document.documentElement.dataset.heat === 'attribution'")
    heats = page.eval_on_selector_all(".cell[data-heat]", "els => els.map(e => +e.dataset.heat)")
    assert heats and max(heats) == pytest.approx(1.0) and min(heats) < 0.5  # normalized to the level's strongest
    opacities = page.eval_on_selector_all(".cell-label .label", "els => els.map(e => +e.style.opacity)")
    assert opacities and all(0.35 <= o <= 1 for o in opacities)
    page.fill("#attr", "no such class")
    assert "no cell" in page.text_content("#attr-info")
    assert not page.errors, page.errors
    cmp = open_page((parent / "compare" / "index.html").resolve().as_uri())
    cmp.wait_for_selector("html[data-ready]", timeout=15000)
    assert cmp.is_visible("#axis")
    assert a in cmp.text_content("#axis-left") and b in cmp.text_content("#axis-right")
    assert "Comparison of" in cmp.text_content("#title") and not cmp.errors, cmp.errors
