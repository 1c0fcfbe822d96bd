"""Activation grids of a real photo through the real EfficientNet-Lite0: magnitudes, class maps, the flow between
layers and the atlas icons checked against direct computations, and the page in Chromium."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

atlas_demo = pytest.importorskip("atlas_demo")
pytest.importorskip("atlas_onnx")

import onnx  # noqa: E402
from onnx import numpy_helper  # noqa: E402

from atlas_core.models import open_model  # noqa: E402
from atlas_grid.grid import grid, load_image  # noqa: E402

ATLAS = str(Path(sys.executable).with_name("atlas"))
EARLY, MID, LAST = "add_236", "add_530", "hardtanh_32"
HOSTILE = "<img src=x onerror=alert(1)>.png"


@pytest.fixture(scope="module")
def model_path():
    return str(atlas_demo.efficientnet_lite0_onnx("dynamo"))


@pytest.fixture(scope="module")
def model(model_path):
    return open_model(model_path)


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    root = tmp_path_factory.mktemp("photo")
    path = root / HOSTILE  # a name that is markup: the page must show it as text
    Image.fromarray((atlas_demo.photo("chelsea") * 255).astype(np.uint8)).save(path)
    return path


@pytest.fixture(scope="module")
def mid_atlas(model_path, tmp_path_factory):
    root = tmp_path_factory.mktemp("mid-atlas")
    source = atlas_demo.demo_images()
    ids = np.linspace(0, len(source) - 1, 120).astype(int)
    np.save(root / "views.npy", np.stack([(source.load(int(k), (224, 224)) * 255).astype(np.uint8) for k in ids]))
    res = subprocess.run([ATLAS, "build", model_path, "--images", root / "views.npy", "--layer", MID, "--out",
                          root / "atlas", "--reducer", "pca", "--levels", "4,8", "--min-count", "2",
                          "--samples-per-image", "3", "--no-attribution", "--quiet"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    return root / "atlas"


@pytest.fixture(scope="module")
def built(model, photo, mid_atlas, tmp_path_factory):
    out = tmp_path_factory.mktemp("grid") / "out"
    result = grid(model, photo, [MID, EARLY], out, atlases={MID: mid_atlas}, icons="exemplar",
                  images=str(mid_atlas.parent / "views.npy"), quiet=True)
    return out, result


def test_magnitudes_are_the_activation_norms(model, photo, built):
    out, result = built
    image = load_image(photo, (224, 224))
    acts = model.activations(image[None], [EARLY, MID])
    assert [e["name"] for e in result["layers"]] == [EARLY, MID]  # graph order, whatever the order given
    for entry in result["layers"]:
        expected = np.linalg.norm(acts[entry["name"]][0].astype(np.float64), axis=-1)
        np.testing.assert_allclose(np.asarray(entry["magnitude"]), expected, rtol=1e-4)
    assert json.loads((out / "grid.json").read_text())["layers"][0]["height"] == 28


def test_class_map_where_the_tail_is_linear(model, model_path, photo, tmp_path):
    pytest.importorskip("atlas_jax", reason="class maps need gradients")
    result = grid(model, photo, [LAST], tmp_path / "g", icons="exemplar", images="demo", flows=False, quiet=True)
    entry = result["layers"][0]
    c = result["class"]["index"]
    assert result["class"]["name"] == "Egyptian Mau"  # the real photo's real top class
    W = numpy_helper.to_array(next(t for t in onnx.load(model_path).graph.initializer if t.name == "_fc.weight"))
    a = model.activations(load_image(photo, (224, 224))[None], [LAST])[LAST][0].astype(np.float64)
    expected = a @ W[c].astype(np.float64) / 49
    got = np.asarray(entry["class_attribution"]["map"])
    np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-4 * np.abs(expected).max())


def test_nearest_cells_are_a_brute_force_cosine_search(model, photo, mid_atlas, tmp_path):
    result = grid(model, photo, [MID], tmp_path / "g", atlases={MID: mid_atlas}, flows=False, quiet=True)
    entry = result["layers"][0]
    m = json.loads((mid_atlas / "atlas.json").read_text())
    level = m["levels"][m["default_level"]]
    dirs = np.load(mid_atlas / level["directions"]).astype(np.float64)
    a = model.activations(load_image(photo, (224, 224))[None], [MID])[MID][0].reshape(-1, 112).astype(np.float64)
    cos = (a / np.linalg.norm(a, axis=1, keepdims=True)) @ (dirs / np.linalg.norm(dirs, axis=1, keepdims=True)).T
    by_row = {c["direction"]: k for k, c in enumerate(level["cells"])}
    expected = np.array([by_row[r] for r in cos.argmax(1)]).reshape(14, 14)
    np.testing.assert_array_equal(np.asarray(entry["cell"]), expected)
    assert entry["atlas"]["grid"] == level["grid"] and len(entry["atlas"]["cells"]) == len(level["cells"])
    assert all((tmp_path / "g" / f).is_file() for f in entry["icon_files"])


def test_flow_matches_a_finite_difference_through_onnxruntime(model, model_path, photo, built, tmp_path):
    """Row q of the flow from add_236 to add_530: position p's share of ‖a2[q]‖, to first order: scaling a1 at p by
    (1 + ε) changes ‖a2[q]‖ by ε times it (a central difference through the graph's segment in onnxruntime)."""
    pytest.importorskip("atlas_jax", reason="flows need gradients")
    import onnxruntime as ort
    out, result = built
    flow = np.load(out / result["layers"][1]["flow_from_previous"]["file"]).astype(np.float64)
    assert flow.shape == (14 * 14, 28 * 28)
    segment = tmp_path / "segment.onnx"
    onnx.utils.extract_model(model_path, str(segment), [EARLY], [MID])
    session = ort.InferenceSession(str(segment), providers=["CPUExecutionProvider"])
    a1 = model.activations(load_image(photo, (224, 224))[None], [EARLY])[EARLY][0]
    run = lambda m: session.run(None, {EARLY: m.transpose(2, 0, 1)[None].astype(np.float32)})[0][0]  # noqa: E731
    q = 7 * 14 + 7  # the centre of add_530
    eps = 1e-2
    for p in np.argsort(-np.abs(flow[q]))[:3]:
        y, x = divmod(int(p), 28)
        up, down = a1.copy(), a1.copy()
        up[y, x] *= 1 + eps
        down[y, x] *= 1 - eps
        fd = (np.linalg.norm(run(up)[:, 7, 7]) - np.linalg.norm(run(down)[:, 7, 7])) / (2 * eps)
        assert fd == pytest.approx(flow[q, p], rel=0.05, abs=1e-3 * np.abs(flow[q]).max())


def test_errors_are_one_line(model_path, photo, tmp_path):
    cases = [([model_path, photo, "--layers", "logits", "--out", tmp_path / "x"], "no spatial positions"),
             ([model_path, photo, "--layers", MID, "--icons", "atlas", "--out", tmp_path / "x"], "--atlas add_530=DIR"),
             ([model_path, tmp_path / "nope.png", "--layers", MID, "--out", tmp_path / "x"], "not found"),
             ([model_path, photo, "--layers", MID, "--out", tmp_path / "x"], "--images")]
    for args, needle in cases:
        res = subprocess.run([ATLAS, "grid", *map(str, args)], capture_output=True, text=True)
        assert res.returncode == 2 and needle in res.stderr and res.stderr.count("\n") == 1, (args, res.stderr)


@pytest.mark.browser
def test_page_hover_shows_the_value_and_markup_stays_text(built, atlas_open_page):
    out, result = built
    page = atlas_open_page((out / "index.html").resolve().as_uri(), size=(1300, 800))
    page.wait_for_selector("html[data-ready]", timeout=15000)
    assert HOSTILE in page.text_content("#title")  # the file name shown as text
    box = page.query_selector_all(".layer")[1].bounding_box()  # add_530: 14 x 14 positions over 300 px
    page.mouse.move(box["x"] + 5 * 300 / 14 + 3, box["y"] + 9 * 300 / 14 + 3)
    page.wait_for_function("document.documentElement.dataset.hover === 'add_530:9,5'")
    shown = page.text_content("#info")
    assert f"{result['layers'][1]['magnitude'][9][5]:.4f}" in shown
    assert not page.errors and not page.dialogs and not page.remote, (page.errors, page.dialogs, page.remote)


@pytest.mark.browser
def test_a_click_opens_the_positions_atlas_cell(model, photo, mid_atlas, tmp_path, atlas_open_page):
    result = grid(model, photo, [MID], tmp_path / "g", atlases={MID: mid_atlas}, flows=False, quiet=True)
    entry = result["layers"][0]
    i, j = entry["atlas"]["cells"][entry["cell"][3][4]]
    page = atlas_open_page((tmp_path / "g" / "index.html").resolve().as_uri(), size=(1300, 800))
    page.wait_for_selector("html[data-ready]", timeout=15000)
    box = page.query_selector(".layer").bounding_box()
    page.mouse.move(box["x"] + 4 * 300 / 14 + 4, box["y"] + 3 * 300 / 14 + 4)
    page.wait_for_function("document.documentElement.dataset.hover === 'add_530:3,4'")
    page.mouse.click(box["x"] + 4 * 300 / 14 + 4, box["y"] + 3 * 300 / 14 + 4)
    page.wait_for_selector("html[data-ready]", timeout=15000)
    assert page.url.endswith(f"index.html#cell={entry['atlas']['grid']}:{i},{j}")
    page.wait_for_function("window.atlasViewer && atlasViewer.state.pinned")
    pinned = page.evaluate("[atlasViewer.state.pinned.grid, atlasViewer.state.pinned.cell[0], "
                           "atlasViewer.state.pinned.cell[1]]")
    assert pinned == [entry["atlas"]["grid"], i, j] and not page.errors, page.errors
