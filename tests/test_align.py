"""`atlas compare --align`: aligned atlases of two real models trained on Fashion-MNIST (real test images), with
the joint (cross-covariance) layout and umap-learn's AlignedUMAP, and the page in Chromium."""

import json

import numpy as np
import pytest

pytest.importorskip("atlas_onnx")
pytest.importorskip("atlas_umap")
fashion = pytest.importorskip("atlas_demo.fashion")
pytestmark = pytest.mark.skipif(not fashion.fashion_available(), reason=f"no Fashion-MNIST: {fashion.INSTALL}")

from atlas_core.analysis.align import cells_of, cross_maps  # noqa: E402
from atlas_core.analysis.compare import compare  # noqa: E402
from atlas_core.models import open_model  # noqa: E402

N = 160  # test images
HOSTILE = "<img src=x onerror=alert(1)>"


@pytest.fixture(scope="module")
def models():
    return fashion.fashion_models()


@pytest.fixture(scope="module")
def labels():
    names = list(fashion.CLASS_NAMES)
    names[3] = HOSTILE  # "Dress" as markup: it must come out as text
    return [names[k] for k in fashion.fashion_labels("test", 0, N)]


@pytest.fixture(scope="module")
def pair(models, labels, tmp_path_factory):
    """healthy relu3 against memorize relu3 on the same N test images."""
    out = tmp_path_factory.mktemp("pair")
    report = compare(open_model(models["healthy"]), open_model(models["memorize"]),
                     fashion.fashion_images("test", 0, N), out, layers_a=["relu3"], layers_b=["relu3"],
                     align="relu3,relu3", labels=labels, quiet=True)
    return out, report, json.loads((out / "aligned.json").read_text())


@pytest.fixture(scope="module")
def itself(models, tmp_path_factory):
    out = tmp_path_factory.mktemp("self")
    report = compare(open_model(models["healthy"]), None, fashion.fashion_images("test", 0, N), out,
                     layers_a=["relu3"], align="relu3,relu3", quiet=True)
    return report, json.loads((out / "aligned.json").read_text())


def test_both_sides_hold_the_same_samples_in_the_same_coordinates(pair):
    out, report, aligned = pair
    a, b = aligned["sides"]
    assert aligned["names"] == report["knn"]["images"] and len(aligned["names"]) == N
    assert len(a["positions"]) == len(b["positions"]) == N
    pa, pb = np.array(a["positions"]), np.array(b["positions"])
    assert pa.min() >= 0 and pa.max() <= 1 and pb.min() >= 0 and pb.max() <= 1
    for side, pos in ((a, pa), (b, pb)):
        assert side["cell_of"] == cells_of(pos, aligned["grid"]).tolist()
        ids = sorted(i for c in side["cells"] for i in c["ids"])
        assert len(ids) == len(set(ids)) and all(side["cell_of"][i] == c["j"] * aligned["grid"] + c["i"]
                                                 for c in side["cells"] for i in c["ids"])
        assert all(c["count"] == len(c["ids"]) >= aligned["min_count"] for c in side["cells"])
    # one coordinate system: an image sits far nearer its own position on the other side than a random image
    shift = np.linalg.norm(pa - pb, axis=1).mean()
    chance = np.linalg.norm(pa - pb[np.random.default_rng(0).permutation(N)], axis=1).mean()
    assert shift < 0.5 * chance, (shift, chance)
    joint = report["aligned"]["methods"]["joint"]
    assert joint["same_cell"] > 0.3 and abs(joint["mean_shift"] - shift) < 1e-3
    for method in ("joint", "aligned-umap"):  # both measured against each layer's own activations
        m = report["aligned"]["methods"][method]
        assert 0.5 < m["trustworthiness_a"] <= 1 and 0.5 < m["trustworthiness_b"] <= 1
    assert report["aligned"]["method"] == "joint" and (out / "aligned-a.png").is_file()
    assert {"Trouser", "Bag"} & {lbl[0] for c in a["cells"] for lbl in c["labels"]}


def test_a_layer_aligned_with_itself(itself):
    report, aligned = itself
    al = report["aligned"]
    a, b = aligned["sides"]
    # joint: identical inputs give identical rows, laid out once: the same positions and cells on both sides
    assert a["positions"] == b["positions"] and a["cell_of"] == b["cell_of"]
    assert al["methods"]["joint"]["same_cell"] == 1.0
    plain = al["plain"]
    for method, tol in (("joint", 0.01), ("aligned-umap", 0.05)):
        m = al["methods"][method]
        assert abs(m["trustworthiness_a"] - plain["trustworthiness_a"]) <= tol, (method, m, plain)
        assert abs(m["trustworthiness_b"] - plain["trustworthiness_b"]) <= tol, (method, m, plain)


def test_cross_maps_are_least_squares_predictions():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(300, 6))
    w = rng.normal(size=(6, 4))
    a2b, b2a = cross_maps(a, a @ w)
    np.testing.assert_allclose(a2b, a @ w, atol=1e-3)  # B is a linear function of A: predicted exactly
    np.testing.assert_allclose(cross_maps(a, a)[0], a, atol=1e-4)


def test_mistakes_are_one_line_errors(models, capsys, tmp_path):
    from atlas_core.cli import main
    images = tmp_path / "x.npy"
    np.save(images, np.asarray(fashion.fashion_arrays("test")[0][:8]))
    for extra, words in ((["--align", "relu3,nosuch"], "unknown layer 'nosuch'"),
                         (["--align", "relu3,relu2,relu1"], "one layer of A and one of B"),
                         (["--align", "relu3", "--align-grid", "0"], "--align-grid"),
                         (["--align", "relu3", "--align-reducer", "nosuch"], "nosuch"),
                         (["--align", "relu3", "--align-reducer", "pca", "--align-method", "aligned-umap"],
                          "needs a reducer with fit_transform_aligned"),
                         (["--labels", "folders"], "give --align"),
                         (["--align", "relu3,relu4", "--align-samples", "position"], "relu4 is dense")):
        code = main(["compare", str(models["healthy"]), "--images", str(images), "--out", str(tmp_path / "o"),
                     "--layers-a", "relu3", "--quiet"] + extra)
        err = capsys.readouterr().err
        assert code != 0 and words in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
        assert not (tmp_path / "o" / "compare.json").exists()  # refused before any work


def test_one_position_per_image_the_same_in_both_layers(models, tmp_path):
    """--align-samples position: one inner position of each image, fixed by the seed and the image, the same
    (y, x) in both layers, and the mosaics drawn."""
    from atlas_core.analysis.compare import _inner_position
    source = fashion.fashion_images("test", 0, 64)
    healthy, dead = open_model(models["healthy"]), open_model(models["dead"])
    report = compare(healthy, dead, source, tmp_path, layers_a=["relu3"], layers_b=["relu3"], align="relu3,relu3",
                     align_samples="position", align_reducer="pca", quiet=True)  # the sampling under test: fast
    assert report["aligned"]["methods"]["aligned-umap"] is None  # PCA cannot align; joint still works
    aligned = json.loads((tmp_path / "aligned.json").read_text())
    assert report["aligned"]["samples"].startswith("one random inner position")
    where = np.array(aligned["where"])
    assert where.shape == (64, 2) and where.min() >= 1 and where.max() <= 5  # 7 x 7, edges left out
    index = [source.names.index(n) for n in aligned["names"]]
    assert [tuple(w) for w in where] == [_inner_position(0, i, (7, 7)) for i in index]
    assert len(set(map(tuple, where))) > 10  # not one position for all
    from PIL import Image
    with Image.open(tmp_path / "aligned-a.png") as mosaic:
        assert mosaic.size[0] == aligned["grid"] * max(40, 480 // aligned["grid"])


@pytest.mark.browser
def test_page_links_hover_and_zoom(pair, atlas_open_page):
    out, report, aligned = pair
    page = atlas_open_page((out / "aligned.html").resolve().as_uri(), size=(1100, 900))
    page.wait_for_selector("html[data-ready]", timeout=15000)
    a, b = aligned["sides"]
    g = aligned["grid"]
    cell = max(a["cells"], key=lambda c: c["count"])
    box = page.query_selector("#view-a").bounding_box()
    size = box["width"] / g
    page.mouse.move(box["x"] + (cell["i"] + 0.5) * size, box["y"] + (cell["j"] + 0.5) * size)
    page.wait_for_function(f"document.documentElement.dataset.hover === 'a:{cell['i']},{cell['j']}'")
    mark_a, mark_b = page.query_selector("#mark-a").bounding_box(), page.query_selector("#mark-b").bounding_box()
    right = page.query_selector("#view-b").bounding_box()
    # the right side frames the same cell region
    assert abs((mark_b["x"] - right["x"]) - (mark_a["x"] - box["x"])) < 1
    assert abs((mark_b["y"] - right["y"]) - (mark_a["y"] - box["y"])) < 1 and mark_b["width"] > 0
    here = sum(1 for i in cell["ids"] if b["cell_of"][i] == cell["j"] * g + cell["i"])
    info_b = page.text_content("#info-b")
    assert f"{here} of {cell['count']}" in info_b and "relu3" in info_b
    assert str(cell["count"]) in page.text_content("#info-a")
    spread = page.query_selector_all("#spread-b .spread")  # where the cell's images lie on the right
    assert len(spread) == len({b["cell_of"][i] for i in cell["ids"]})
    # zoom on the left zooms both sides alike
    page.mouse.wheel(0, -400)
    page.wait_for_function("Number(document.documentElement.dataset.zoom) > 1.5")
    ta = page.eval_on_selector("#stage-a", "e => e.style.transform")
    assert ta == page.eval_on_selector("#stage-b", "e => e.style.transform") and "scale" in ta
    if any(HOSTILE in lbl[0] for c in a["cells"] for lbl in c["labels"]):
        assert page.query_selector("#info-a img") is None
    assert page.query_selector("body img[src=x]") is None
    assert not page.errors and not page.dialogs and not page.remote, (page.errors, page.dialogs, page.remote)
