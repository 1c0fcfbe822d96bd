"""The parts of a million-sample atlas, at a small scale on real data: members in a binary file per level
(atlas.json without per-sample lists), and the viewer loading a level's cells only when a zoom shows it.

Real data: 300 Fashion-MNIST test images (Debian's dataset-fashion-mnist) at 4 positions of ``relu3`` of the
``healthy`` CNN trained here (atlas_demo.fashion, cached); skipped without them or the onnx plugin."""

from __future__ import annotations

import json

import numpy as np
import pytest

from atlas_core.atlas import Atlas, validate
from atlas_core.exporters import manifest
from atlas_core.exporters.viewer import viewer_data


def _build(out, monkeypatch=None, inline_max=None):
    fashion = pytest.importorskip("atlas_demo.fashion")
    if not fashion.fashion_available():
        pytest.skip(f"Fashion-MNIST is not installed: {fashion.INSTALL}")
    pytest.importorskip("atlas_onnx")
    from atlas_core.stages import build_state
    if inline_max is not None:
        monkeypatch.setattr(manifest, "INLINE_SAMPLES_MAX", inline_max)
    labels = [fashion.CLASS_NAMES[k] for k in fashion.fashion_labels("test", 0, 300)]
    return build_state(str(fashion.fashion_models()["healthy"]), fashion.fashion_images("test", 0, 300), "relu3",
                       out, labels=labels, reducer="pca", levels=(4, 8, 16), min_count=2, samples_per_image=4,
                       attribution=False, quiet=True)


@pytest.fixture(scope="module")
def binary_atlas(tmp_path_factory):
    """An atlas written as a large one is: no inline samples (the threshold set to 0)."""
    mp = pytest.MonkeyPatch()
    try:
        state = _build(tmp_path_factory.mktemp("million") / "atlas", mp, inline_max=0)
    finally:
        mp.undo()
    return state


def test_members_round_trip_through_the_binary_file(binary_atlas, tmp_path):
    out = binary_atlas.out
    m = validate(out)
    atlas = Atlas(out)
    for k, (level, built) in enumerate(zip(m["levels"], binary_atlas.levels)):
        assert all("samples" not in cell for cell in level["cells"])
        members = np.load(out / level["members"])
        assert members.dtype == np.int32 and len(members) == sum(c["count"] for c in level["cells"])
        assert sorted(members.tolist()) == sorted(set(members.tolist()))  # each sample in one cell at most
        for n, (cell, made) in enumerate(zip(level["cells"], built.cells)):
            np.testing.assert_array_equal(atlas.members(k, n), made.members)
            assert cell["offset"] == sum(c["count"] for c in level["cells"][:n])
    # a small atlas keeps `samples` inline as well, equal to the binary file
    inline = _build(tmp_path / "inline")
    mi = validate(inline.out)
    for level, other in zip(mi["levels"], m["levels"]):
        members = np.load(inline.out / level["members"])
        np.testing.assert_array_equal(members, np.load(out / other["members"]))
        for cell in level["cells"]:
            assert cell["samples"] == members[cell["offset"]:cell["offset"] + cell["count"]].tolist()
    # the viewer picks the same members from either
    assert viewer_data(out)["levels"] == viewer_data(inline.out)["levels"]


def test_validate_refuses_a_members_file_that_does_not_match(binary_atlas, tmp_path):
    import shutil
    copy = tmp_path / "atlas"
    shutil.copytree(binary_atlas.out, copy, ignore=shutil.ignore_patterns("store"))
    level = json.loads((copy / "atlas.json").read_text())["levels"][0]
    np.save(copy / level["members"], np.load(copy / level["members"])[:-1])
    with pytest.raises(ValueError, match="members"):
        validate(copy)


def test_viewer_loads_a_level_when_a_zoom_first_shows_it(binary_atlas, open_page):
    out = binary_atlas.out
    scripts = sorted(p.name for p in (out / "viewer").glob("level-*.js"))
    assert scripts == ["level-2.js"]  # level 0 and the default level 1 are in atlas-data.js
    head = (out / "viewer" / "atlas-data.js").read_text()
    data = json.loads(head[head.index("{"):head.rindex("}") + 1])
    assert data["levels"][2] == {"grid": 16, "min_count": 2, "n_cells": len(binary_atlas.levels[2].cells),
                                 "script": "viewer/level-2.js"}
    page = open_page((out / "index.html").resolve().as_uri())
    page.wait_for_selector("html[data-ready]", timeout=15000)
    loaded = "[...document.scripts].some(s => s.src.endsWith('level-2.js'))"
    assert int(page.attr("level")) < 2
    if int(page.attr("level")) == 0:
        assert not page.evaluate(loaded)  # nothing finer than the next level is fetched before it is needed
    for _ in range(12):
        if int(page.attr("level")) == 2:
            break
        page.evaluate("atlasViewer.map.zoomIn(0.5, {animate: false})")
        page.wait_for_timeout(100)
    page.wait_for_function("document.documentElement.dataset.level === '2'", timeout=15000)
    assert page.evaluate(loaded)
    assert int(page.attr("cells")) == len(binary_atlas.levels[2].cells)
    page.wait_for_function("document.querySelectorAll('.cell img').length > 0", timeout=15000)
    drawn = page.evaluate("""() => {
        const lv = atlasViewer.levels[2];
        return [...document.querySelectorAll('.cell')].filter(b => lv.byKey.has(+b.dataset.j * lv.grid + +b.dataset.i)).length;
    }""")
    assert drawn > 0
    # hovering a cell of the loaded level shows its members' thumbnails with their image names
    box = page.locator(".cell img").first.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.wait_for_selector("#info .thumbs figure", timeout=5000)
    assert "fashion-test/" in page.text_content("#info .thumbs")
    assert page.errors == [] and page.remote == [] and page.dialogs == []
