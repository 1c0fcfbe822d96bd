"""`atlas grid --icons featureviz` on the real EfficientNet-Lite0 and a real photo: every position of the late
7 x 7 layer optimized together (a few steps), its icons measured independently through onnxruntime."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

atlas_demo = pytest.importorskip("atlas_demo")
pytest.importorskip("atlas_onnx")
pytest.importorskip("atlas_jax", reason="featureviz icons need gradients in JAX")

from atlas_core.metrics import icon_fidelity  # noqa: E402
from atlas_core.models import open_model  # noqa: E402
from atlas_grid.grid import grid, load_image  # noqa: E402

ATLAS = str(Path(sys.executable).with_name("atlas"))
LATE = "add_728"  # 7 x 7 x 192
STEPS = 6


@pytest.fixture(scope="module")
def model_path():
    return str(atlas_demo.efficientnet_lite0_onnx("dynamo"))


@pytest.fixture(scope="module")
def model(model_path):
    return open_model(model_path)


@pytest.fixture(scope="module")
def photo(tmp_path_factory):
    path = tmp_path_factory.mktemp("photo") / "chelsea.png"
    Image.fromarray((atlas_demo.photo("chelsea") * 255).astype(np.uint8)).save(path)
    return path


def _run(model, photo, out, steps, seed=0):
    return grid(model, photo, [LATE], out, icons="featureviz", icon_options={"steps": steps}, seed=seed,
                flows=False, attribution=False, quiet=True)


@pytest.fixture(scope="module")
def built(model, photo, tmp_path_factory):
    out = tmp_path_factory.mktemp("fv") / "out"
    return out, _run(model, photo, out, STEPS)


def _icons(out, entry):
    size = entry["featureviz"]["size"]
    icons = []
    for rel in entry["icon_files"]:
        with Image.open(out / rel) as im:
            icon = im.convert("RGB")
        icon.info["extent"] = (size, size)  # what the icon stands for: seen alone at its own scale
        icons.append(icon)
    return icons


def test_one_icon_per_position_and_the_groups(built):
    out, result = built
    entry = result["layers"][0]
    size = entry["featureviz"]["size"]
    assert entry["featureviz"]["view"] == "icon" and entry["featureviz"]["steps"] == STEPS
    assert len(entry["icon_files"]) == 49 and np.asarray(entry["icon_index"]).tolist() == \
        np.arange(49).reshape(7, 7).tolist()
    assert all(Image.open(out / f).size == (size, size) for f in entry["icon_files"])
    assert len(entry["groups"]) == 6 and all((out / g["icon"]).is_file() for g in entry["groups"])
    on_disk = json.loads((out / "grid.json").read_text())["layers"][0]
    assert on_disk["icon_files"] == entry["icon_files"] and on_disk["featureviz"]["size"] == size
    with Image.open(out / entry["picture"]) as pic:
        assert pic.size[0] == pic.size[1] == 7 * 48
    assert (out / "index.html").is_file()


def test_icons_point_at_their_own_positions(model, photo, built, tmp_path):
    """Measured through onnxruntime (not the JAX function that optimized them): each icon's activation is
    closer by cosine to its own position's vector than to another position's, and closer than an unoptimized
    icon's (steps=0: the shared and own noise as initialized)."""
    out, result = built
    entry = result["layers"][0]
    acts = model.activations(load_image(photo, (224, 224))[None], [LATE])[LATE][0].reshape(49, -1)
    icons = _icons(out, entry)
    own = icon_fidelity(model, LATE, icons, acts)
    others = np.roll(np.arange(49), 1 + np.random.default_rng(0).integers(0, 48))  # another position each
    other = icon_fidelity(model, LATE, icons, acts[others])
    noise_out = tmp_path / "noise"
    noise = _run(model, photo, noise_out, 0)["layers"][0]
    baseline = icon_fidelity(model, LATE, _icons(noise_out, noise), acts)
    assert own.mean() > other.mean() + 0.05 and (own > other).mean() > 0.7, (own.mean(), other.mean())
    assert own.mean() > baseline.mean() + 0.1, (own.mean(), baseline.mean())


def test_the_seed_decides(model, photo, tmp_path):
    runs = [_run(model, photo, tmp_path / name, 1, seed) for name, seed in (("a", 0), ("b", 0), ("c", 1))]
    pixels = [[np.asarray(Image.open(tmp_path / name / f)) for f in r["layers"][0]["icon_files"][:5]]
              for name, r in zip("abc", runs)]
    assert all(np.array_equal(x, y) for x, y in zip(pixels[0], pixels[1]))
    assert not any(np.array_equal(x, y) for x, y in zip(pixels[0], pixels[2]))


def test_refusals_are_one_line(model_path, photo, tmp_path):
    base = [ATLAS, "grid", model_path, str(photo), "--layers", LATE, "--icons", "featureviz", "--out",
            str(tmp_path / "x")]
    cases = [(base, {"ATLAS_DISABLE_PLUGINS": "jax"}, "need the model's gradients"),  # no gradient capability
             (base + ["--icon-option", "stepz=3"], {}, "did you mean steps"),
             ([*base[:6], "--icons", "exemplar", "--images", "demo", "--icon-option", "steps=3", *base[8:]], {},
              "applies to --icons featureviz")]
    for args, env, needle in cases:
        res = subprocess.run(args, capture_output=True, text=True, env=dict(os.environ, **env))
        assert res.returncode == 2 and needle in res.stderr and res.stderr.count("\n") == 1, (args, res.stderr)
    assert not (tmp_path / "x").exists()


@pytest.mark.browser
def test_page_shows_the_featureviz_icon(built, atlas_open_page):
    out, result = built
    page = atlas_open_page((out / "index.html").resolve().as_uri(), size=(1300, 800))
    page.wait_for_selector("html[data-ready]", timeout=15000)
    box = page.query_selector(".layer").bounding_box()  # add_728: 7 x 7 positions over 300 px
    page.mouse.move(box["x"] + 2 * 300 / 7 + 5, box["y"] + 4 * 300 / 7 + 5)
    page.wait_for_function("document.documentElement.dataset.hover === 'add_728:4,2'")
    assert "feature visualization of this position's vector" in page.text_content("#info")
    assert page.query_selector("#info img.icon").get_attribute("src") == result["layers"][0]["icon_files"][4 * 7 + 2]
    assert not page.errors and not page.dialogs and not page.remote, (page.errors, page.dialogs, page.remote)
