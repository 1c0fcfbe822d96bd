"""What a build promises about interrupted, concurrent and failed runs (docs/guide.md): one build at a time per
folder, nothing published until everything is written, and a previous atlas left intact by a failed rebuild."""

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from atlas_core.atlas import validate
from atlas_core.testing import NumpyModel, tiny_build

ATLAS = str(Path(sys.executable).with_name("atlas"))


def _files_are_whole(folder: Path) -> int:
    """Every PNG, JPEG and .npy under ``folder`` (outside caches) reads completely; returns how many."""
    n = 0
    for path in folder.rglob("*"):
        rel = path.relative_to(folder)
        if rel.parts[0] in ("store", "keys", "layout.raw.npy", "receptive_field.json") or not path.is_file():
            continue  # caches, keyed by their inputs
        if path.suffix in (".png", ".jpg"):
            with Image.open(path) as im:
                im.load()
            n += 1
        elif path.suffix == ".npy":
            np.load(path)
            n += 1
    return n


@pytest.fixture(scope="module")
def photos(tmp_path_factory):
    atlas_demo = pytest.importorskip("atlas_demo")
    pytest.importorskip("atlas_onnx")
    root = tmp_path_factory.mktemp("publish")
    src = atlas_demo.demo_images()
    ids = np.linspace(0, len(src) - 1, 160).astype(int)
    np.save(root / "views.npy", np.stack([(src.load(int(k), (224, 224)) * 255).astype(np.uint8) for k in ids]))
    return root / "views.npy", str(atlas_demo.efficientnet_lite0_onnx("dynamo"))


def _build_args(photos, out, seed=0):
    views, model = photos
    return [ATLAS, "build", model, "--images", str(views), "--layer", "add_530", "--out", str(out), "--reducer",
            "pca", "--levels", "4,8,16", "--min-count", "1", "--samples-per-image", "3", "--no-attribution",
            "--chunk-images", "16", "--seed", str(seed), "--quiet"]


def test_a_second_build_into_the_same_folder_is_refused_and_the_first_is_whole(photos, tmp_path):
    out = tmp_path / "atlas"
    first = subprocess.Popen(_build_args(photos, out), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and not list((out / "store").glob("*/chunk-*.npz")):
        time.sleep(0.02)
    second = subprocess.run(_build_args(photos, out, seed=5), capture_output=True, text=True)
    assert second.returncode == 2 and second.stderr.count("\n") == 1, second.stderr
    assert "another atlas build" in second.stderr and str(first.pid) in second.stderr
    assert first.wait(timeout=300) == 0, first.stderr.read()[-2000:]
    clean = subprocess.run(_build_args(photos, tmp_path / "clean"), capture_output=True, text=True)
    assert clean.returncode == 0, clean.stderr[-2000:]
    validate(out)
    for name in ("layout.npy", "samples.npy"):
        np.testing.assert_array_equal(np.load(out / name), np.load(tmp_path / "clean" / name))
    a, b = (json.loads((d / "atlas.json").read_text())["levels"] for d in (out, tmp_path / "clean"))
    assert [[c["samples"] for c in lv["cells"]] for lv in a] == [[c["samples"] for c in lv["cells"]] for lv in b]


def test_kill_during_icons_and_thumbnails_then_rerun(photos, tmp_path):
    out = tmp_path / "atlas"
    build = _build_args(photos, out)
    ok = subprocess.run(build, capture_output=True, text=True)  # a published atlas to overwrite
    assert ok.returncode == 0, ok.stderr[-2000:]
    before = (out / "atlas.json").read_bytes()
    proc = subprocess.Popen(_build_args(photos, out, seed=2), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None and not (out / ".next" / "icons").exists():
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the build ended before the kill"
    assert (out / "atlas.json").read_bytes() == before  # killed while staging: the published atlas is untouched
    validate(out)
    _files_are_whole(out)
    again = subprocess.run(_build_args(photos, out, seed=2), capture_output=True, text=True)
    assert again.returncode == 0, again.stderr[-2000:]
    validate(out)
    assert _files_are_whole(out) > 50 and not (out / ".next").exists() and not (out / ".old").exists()
    assert json.loads((out / "atlas.json").read_text())["store"] != json.loads(before)["store"]


def test_a_commit_cut_short_is_finished_by_the_next_run(tmp_path):
    """The journal: a run killed between the moves of its commit is completed (rolled forward) next time."""
    from atlas_core.stages.publish import JOURNAL, Publication
    out = tmp_path / "atlas"
    tiny_build(out)
    pub = Publication(out)
    staged = pub.begin()
    (staged / "atlas.json").write_text(json.dumps({"marker": 1}))
    (staged / "new.txt").write_text("new")
    (staged / JOURNAL).write_text(json.dumps(["new.txt", "atlas.json"]))
    os.replace(staged / "new.txt", out / "new.txt")  # the run died after its first move
    Publication(out).recover()
    assert json.loads((out / "atlas.json").read_text()) == {"marker": 1} and (out / "new.txt").is_file()
    assert not (out / ".next").exists() and not (out / ".old").exists()


@pytest.fixture
def small_disk(tmp_path):
    """A 6 MB tmpfs (skipped where it cannot be mounted: not root, or no mount)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a tmpfs needs root")
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=6m", "tmpfs", str(mount)], capture_output=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {res.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], capture_output=True)  # lazy: open memory maps may still point in


def _fill(disk: Path, leave: int) -> None:
    st = os.statvfs(disk)
    free = st.f_bavail * st.f_frsize
    with open(disk / "filler", "wb") as f:
        f.write(b"\0" * max(0, free - leave))


def test_a_rebuild_on_a_full_disk_leaves_the_previous_atlas_valid(small_disk):
    out = small_disk / "atlas"
    tiny_build(out)
    manifest = (out / "atlas.json").read_bytes()
    whole = _files_are_whole(out)
    _fill(small_disk, leave=64 * 1024)
    with pytest.raises(OSError) as err:
        tiny_build(out, model=NumpyModel(seed=3), icon_size=96, levels=(2, 4, 6))  # new samples, new icons
    assert err.value.errno == errno.ENOSPC
    assert (out / "atlas.json").read_bytes() == manifest
    validate(out)
    assert _files_are_whole(out) == whole
    (small_disk / "filler").unlink()
    again = tiny_build(out, model=NumpyModel(seed=3), icon_size=96, levels=(2, 4, 6))
    validate(out)
    assert json.loads((out / "atlas.json").read_text())["store"] == f"store/{again.store.key}"


def test_a_full_disk_is_one_line_from_the_command(small_disk, photos):
    views, model = photos
    _fill(small_disk, leave=16 * 1024)
    res = subprocess.run([ATLAS, "activations", model, "--images", str(views), "--layer", "add_530", "-o",
                          str(small_disk / "acts.npz")], capture_output=True, text=True)
    assert res.returncode == 1 and res.stderr.count("\n") == 1 and "no space left" in res.stderr, res.stderr
