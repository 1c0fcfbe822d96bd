"""The atlas viewer in real headless Chromium (Debian's chromium, driven by Playwright), on atlases of real photos."""

import importlib.util
import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from atlas_core.exporters.viewer import show, write_viewer

_spec = importlib.util.spec_from_file_location("viewer_atlas", Path(__file__).with_name("test_viewer_atlas.py"))
viewer_atlas = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(viewer_atlas)
HOSTILE = viewer_atlas.HOSTILE
HOSTILE_MODEL = "<script>alert(2)</script>.onnx"
HOSTILE_NAME = '"><img src=x onerror=alert(3)>'


@pytest.fixture(scope="session")
def atlas_dir(tmp_path_factory):
    pytest.importorskip("atlas_demo")
    out = viewer_atlas.make_atlas(tmp_path_factory.mktemp("viewer") / "atlas", n_images=240, per_image=3,
                                  grids=(6, 12, 24))
    # hostile strings in every other place data reaches the page: the model name and image names
    manifest = json.loads((out / "atlas.json").read_text())
    manifest["model"] = HOSTILE_MODEL
    (out / "atlas.json").write_text(json.dumps(manifest))
    names = json.loads((out / "images.json").read_text())
    (out / "images.json").write_text(json.dumps([HOSTILE_NAME + n if n.startswith("coffee") else n for n in names]))
    write_viewer(out)
    return out


@pytest.fixture
def page(open_page, atlas_dir):
    p = open_page((atlas_dir / "index.html").resolve().as_uri())
    p.wait_for_selector("html[data-ready]", timeout=15000)
    yield p


def _levels(atlas_dir):
    return json.loads((atlas_dir / "atlas.json").read_text())["levels"]


def _drawn(png: bytes) -> float:
    """The share of a screenshot's pixels that are not white or near-white background."""
    return float((np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).min(axis=2) < 220).mean())


def _hover_cell(page, pred):
    """Hover the first cell on screen whose data satisfies the JS predicate `pred(cell)`; return that cell."""
    found = _cell_on_screen(page, pred)
    page.mouse.move(found["x"] - 3, found["y"] - 3)
    page.mouse.move(found["x"], found["y"])
    return found


def _cell_on_screen(page, pred="true"):
    """The centre, count and label of the first cell of the current level on screen with `pred(cell)` true."""
    found = page.evaluate("""pred => {
        const lv = atlasViewer.levels[+document.documentElement.dataset.level];
        for (const box of document.querySelectorAll('.cell')) {
            const c = lv.byKey.get(+box.dataset.j * lv.grid + +box.dataset.i);
            const r = box.getBoundingClientRect(), m = document.getElementById('map').getBoundingClientRect();
            const x = r.left + r.width / 2, y = r.top + r.height / 2;
            if (c && x > m.left && x < m.right && y > m.top && y < m.bottom && new Function('c', 'return ' + pred)(c))
                return {x, y, count: c[2], label: window.ATLAS_DATA.labels[c[3][0]]};
        }
        return null;
    }""", pred)
    assert found, f"no cell on screen with {pred}"
    return found


def test_write_viewer_files_and_escaped_data(atlas_dir):
    for name in ("index.html", "viewer/leaflet.js", "viewer/LICENSE-leaflet.txt", "viewer/viewer.js",
                 "viewer/atlas-data.js"):
        assert (atlas_dir / name).is_file(), name
    data = (atlas_dir / "viewer" / "atlas-data.js").read_text()
    assert "<" not in data and ">" not in data  # every < > & in data strings is a \\u escape
    assert json.loads(data[data.index("{"):data.rindex("}") + 1])["labels"].count(HOSTILE) == 1
    html = (atlas_dir / "index.html").read_text()
    assert "http://" not in html and "https://" not in html


def test_write_viewer_reads_a_minimal_manifest(tmp_path):
    """Only the fields every atlas has: no labels, samples, images or icons paths beyond `icon`."""
    (tmp_path / "atlas.json").write_text(json.dumps({"version": 1, "model": "m", "layer": "l", "levels": [
        {"grid": 2, "cells": [{"i": 1, "j": 0, "count": 3, "icon": "icons/x/2/1_0.png"}]}]}))
    write_viewer(tmp_path)
    text = (tmp_path / "viewer" / "atlas-data.js").read_text()
    data = json.loads(text[text.index("{"):text.rindex("}") + 1])
    assert data["levels"] == [{"grid": 2, "min_count": None, "cells": [[1, 0, 3, [], ["icons/x/2/1_0.png"], [], [], {}]]}]
    assert data["meta"]["n_samples"] == 3 and data["labels"] == []


def test_inline_view_leaves_out_levels_beyond_its_budget(atlas_dir):
    html = show(atlas_dir, max_mb=0.01).html  # room for the coarsest level only (always kept)
    data = json.loads(html[html.index("window.ATLAS_DATA = ") + 20:html.index(";\n</script>", html.index("window.ATLAS_DATA"))])
    assert len(data["levels"]) == 1 and data["meta"]["levels_left_out"] == len(_levels(atlas_dir)) - 1
    assert all(p in data["files"] for c in data["levels"][0]["cells"] for p in c[4])


def test_loads_offline_without_errors_and_icons_render(page, atlas_dir):
    levels = _levels(atlas_dir)
    level = int(page.attr("level"))
    assert int(page.attr("grid")) == levels[level]["grid"]
    n_icons = page.evaluate("[...document.querySelectorAll('.cell img')].filter(i => i.complete && i.naturalWidth > 0).length")
    assert n_icons >= 10
    assert _drawn(page.locator("#map").screenshot()) > 0.05, "the map looks blank"
    # icon side / cell side against the reference's min(1, sqrt(n_cell / (total / grid^2)))
    sizes = page.evaluate("""() => {
        const lv = atlasViewer.levels[+document.documentElement.dataset.level], n = window.ATLAS_DATA.meta.n_samples;
        return [...document.querySelectorAll('.cell')].filter(b => lv.byKey.has(+b.dataset.j * lv.grid + +b.dataset.i))
            .map(b => [lv.byKey.get(+b.dataset.j * lv.grid + +b.dataset.i)[2] / (n / lv.grid ** 2),
                       b.firstChild.getBoundingClientRect().width / b.getBoundingClientRect().width]); }""")
    density, ratio = np.array(sizes).T
    assert np.allclose(ratio, 0.96 * np.minimum(1, np.sqrt(density)), atol=0.05)
    assert (density < 1).any() and (density >= 1).any()  # both regimes are on screen
    assert page.errors == [] and page.remote == [] and page.dialogs == []


def test_wheel_zoom_switches_to_finer_levels(page, atlas_dir):
    grids = [lv["grid"] for lv in _levels(atlas_dir)]
    start = int(page.attr("level"))
    box = page.locator("#map").bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    seen = [start]
    for _ in range(12):
        page.mouse.wheel(0, -240)
        page.wait_for_timeout(350)
        seen.append(int(page.attr("level")))
    assert max(seen) == len(grids) - 1 > start
    assert seen == sorted(seen)  # zooming in only ever goes finer
    assert int(page.attr("grid")) == grids[-1]
    page.wait_for_function(f"[...document.querySelectorAll('.cell img')].some(i => i.src.includes('/{grids[-1]}/') && i.naturalWidth > 0)")
    labels = page.evaluate("[...document.querySelectorAll('.cell-label .label')].map(l => [l.scrollWidth, l.clientWidth, l.childElementCount])")
    assert labels, "no labels at the finest level"
    assert all(sw <= cw + 1 and n == 0 for sw, cw, n in labels)  # each label fits its box, and is only text
    for _ in range(12):
        page.mouse.wheel(0, 240)
        page.wait_for_timeout(300)
    assert int(page.attr("level")) < len(grids) - 1
    assert page.errors == []


def test_keyboard_zoom(page):
    start = int(page.attr("level"))
    page.focus("#map")
    for _ in range(4):
        page.keyboard.press("Equal")  # "+"/"=": Leaflet's keyboard zoom in
        page.wait_for_timeout(350)
    assert int(page.attr("level")) > start


def test_touch_pinch_zooms_and_tap_shows_a_cell(browser, atlas_dir):
    context = browser.new_context(viewport={"width": 800, "height": 600}, has_touch=True)
    page = context.new_page()
    page.goto((atlas_dir / "index.html").resolve().as_uri())
    page.wait_for_selector("html[data-ready]")
    start = int(page.evaluate("document.documentElement.dataset.level"))
    box = page.locator("#map").bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    cdp = context.new_cdp_session(page)

    def touch(kind, d):
        points = [{"x": cx - d, "y": cy, "id": 0}, {"x": cx + d, "y": cy, "id": 1}] if kind != "touchEnd" else []
        cdp.send("Input.dispatchTouchEvent", {"type": kind, "touchPoints": points})

    touch("touchStart", 30)
    for d in range(40, 250, 15):
        touch("touchMove", d)
        page.wait_for_timeout(16)
    touch("touchEnd", 0)
    page.wait_for_function(f"+document.documentElement.dataset.level > {start}", timeout=5000)
    page.wait_for_timeout(400)  # the zoom animation ends
    cell = _cell_on_screen(page)
    page.touchscreen.tap(cell["x"], cell["y"])
    page.wait_for_function("document.querySelector('#info .meta') && /samples/.test(document.querySelector('#info .meta').textContent)")
    context.close()


def test_keyboard_enter_pins_the_centre_cell(page):
    page.focus("#map")
    for _ in range(3):  # a few steps in, so that a cell surely lies at the centre; then the arrows move off it
        page.keyboard.press("Equal")
        page.wait_for_timeout(300)
    for key in ("ArrowLeft", "ArrowUp", "ArrowRight", "ArrowDown", "ArrowLeft"):
        page.keyboard.press("Enter")
        if page.evaluate("!!document.querySelector('#info .meta')"):
            break
        page.keyboard.press(key)
        page.wait_for_timeout(300)
    assert "samples" in page.text_content("#info .meta")
    assert "Pinned" in page.text_content("#info")


def test_atlas_view_prints_the_page(atlas_dir):
    import subprocess
    atlas = Path(sys.executable).with_name("atlas")
    out = subprocess.run([str(atlas), "view", str(atlas_dir), "--no-browser"], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == (atlas_dir / "index.html").resolve().as_uri()


def test_hover_shows_count_labels_and_marked_thumbnails(page):
    cell = _hover_cell(page, "c[2] >= 3 && c[5].length >= 3")
    page.wait_for_function("document.querySelector('#info .meta')")
    assert page.text_content("#info .meta").startswith(f"{cell['count']} samples")
    assert page.text_content("#info h2") == cell["label"]
    assert page.locator("#info .shares li").count() >= 1
    assert page.locator("#info .thumb .mark").count() >= 3
    page.wait_for_function("[...document.querySelectorAll('#info .thumb img')].every(i => i.complete && i.naturalWidth > 0)")


def test_hostile_label_stays_text(page):
    _hover_cell(page, f"window.ATLAS_DATA.labels[c[3][0]] === {json.dumps(HOSTILE)}")
    page.wait_for_function("document.querySelector('#info h2')")
    assert page.text_content("#info h2") == HOSTILE
    captions = page.eval_on_selector_all("#info figcaption", "els => els.map(e => e.textContent)")
    assert any(c.startswith(HOSTILE_NAME) for c in captions)
    assert HOSTILE_MODEL in page.text_content("h1") and HOSTILE_MODEL in page.title()
    assert page.evaluate("document.querySelectorAll('script:not([src])').length") == 0
    assert page.evaluate("document.querySelectorAll('img[src=\"x\"], img[src$=\"/x\"]').length") == 0
    page.wait_for_timeout(200)
    assert page.dialogs == [] and page.errors == []


def test_search_and_heatmap_and_renderer_switch(page):
    page.fill("#search", "chelsea")
    page.wait_for_function("document.querySelectorAll('.cell.hit').length > 0")
    ok = page.evaluate("""() => {
        const lv = atlasViewer.levels[+document.documentElement.dataset.level];
        return [...document.querySelectorAll('.cell.hit')].every(b => {
            const c = lv.byKey.get(+b.dataset.j * lv.grid + +b.dataset.i);
            return c[3].some((v, k) => k % 2 === 0 && window.ATLAS_DATA.labels[v] === 'chelsea');
        });
    }""")
    assert ok
    assert "matching cell" in page.text_content("#search-info")
    page.fill("#search", "")
    page.select_option("#heat", label="chelsea")
    page.wait_for_function("document.querySelectorAll('.cell .heat').length > 0")
    opacities = page.evaluate("[...document.querySelectorAll('.cell .heat')].map(h => +h.style.opacity)")
    assert max(opacities) > 0.3 and min(opacities) == 0
    page.select_option("#renderer", label="average")
    page.wait_for_function("[...document.querySelectorAll('.cell img')].every(i => i.src.includes('icons/average/'))")
    assert page.errors == []


def test_notebook_show_renders_inline(open_page, atlas_dir, tmp_path):
    from atlas_core.atlas import Atlas
    view = Atlas(atlas_dir).show(height=500)  # what a notebook cell calls
    # a notebook page: the cell output's HTML in an unrelated folder, so only inlined data can render
    (tmp_path / "notebook.html").write_text(f"<!doctype html><html><body>{view._repr_html_()}</body></html>")
    p = open_page((tmp_path / "notebook.html").as_uri())
    frame = p.frame_locator("iframe")
    frame.locator("html[data-ready]").wait_for(timeout=15000)
    assert frame.locator("html").get_attribute("data-grid") is not None
    assert frame.locator(".cell img").count() >= 10
    assert _drawn(p.locator("iframe").screenshot()) > 0.05
    assert p.errors == [] and p.remote == [] and p.dialogs == []


def test_viewer_on_a_built_atlas(open_page, tmp_path):
    """`atlas_core.build` (PCA, real EfficientNet-Lite0 weights) writes a viewer that opens and shows its icons."""
    atlas_demo = pytest.importorskip("atlas_demo")
    import atlas_core
    from atlas_core.images import ArraySource
    source = atlas_demo.demo_images()
    ids = np.linspace(0, len(source) - 1, 24).astype(int)
    images = np.stack([np.asarray(Image.fromarray((source.raw(int(k)) * 255).astype(np.uint8)).resize((96, 96)))
                       for k in ids])
    names = [source.names[k] for k in ids]
    labels = [HOSTILE if n.startswith("coffee") else n.split("/")[0] for n in names]
    if importlib.util.find_spec("atlas_onnx"):
        model, layer = str(atlas_demo.efficientnet_lite0_onnx("dynamo")), "add_530"
    elif importlib.util.find_spec("atlas_torch"):
        model, layer = atlas_demo.efficientnet_lite0(), "_blocks.11"
    else:
        pytest.skip("no model backend plugin installed")
    atlas_core.build(model, ArraySource(images, names=names), layer, tmp_path / "a", reducer="pca", labels=labels,
                     levels=(3, 6), min_count=2, samples_per_image=2, attribution=False, quiet=True)
    p = open_page((tmp_path / "a" / "index.html").as_uri())
    p.wait_for_selector("html[data-ready]", timeout=15000)
    assert p.evaluate("[...document.querySelectorAll('.cell img')].filter(i => i.naturalWidth > 0).length") >= 3
    _hover_cell(p, "c[2] >= 2")
    p.wait_for_function("document.querySelector('#info .meta')")
    assert "samples" in p.text_content("#info .meta")
    assert p.errors == [] and p.remote == [] and p.dialogs == []


def test_first_view_shows_every_row_of_the_atlas(page):
    """The whole atlas is on screen at first: the top and bottom rows of the level shown are inside the map."""
    inside = page.evaluate("""() => {
        const m = document.getElementById('map').getBoundingClientRect();
        const lv = atlasViewer.levels[+document.documentElement.dataset.level];
        const rows = lv.cells.map(c => c[1]);
        const top = Math.min(...rows), bottom = Math.max(...rows);
        const boxes = [...document.querySelectorAll('.cell')].filter(b => +b.dataset.j === top || +b.dataset.j === bottom);
        return boxes.length > 0 && boxes.every(b => { const r = b.getBoundingClientRect();
            return r.top >= m.top - 1 && r.bottom <= m.bottom + 1 && r.left >= m.left - 1 && r.right <= m.right + 1; });
    }""")
    assert inside


def test_the_panel_forgets_a_cell_of_another_level_after_a_zoom(page):
    """Hover a cell, zoom with the keyboard until the level changes: the panel no longer shows the old cell."""
    found = _hover_cell(page, "true")
    assert page.text_content("#info h2")
    start = int(page.attr("level"))
    page.locator("#map").focus()
    for _ in range(8):
        page.keyboard.press("+")
        page.wait_for_timeout(300)
        if int(page.attr("level")) != start:
            break
    assert int(page.attr("level")) != start
    assert page.query_selector("#info h2") is None and "Hover or click" in page.text_content("#info")
    assert found and page.errors == []
