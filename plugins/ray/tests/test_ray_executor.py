"""The ray executor on a local Ray cluster of 2 workers, with EfficientNet-Lite0 (real ImageNet weights, the
dynamo ONNX export) on 48 real images (scikit-image's lfw_subset): the store and the atlas equal the in-process
executor's; a worker killed mid-run loses only the chunks it had not written, and reruns give the same store."""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

ray = pytest.importorskip("ray", reason="the ray executor needs Ray (pip install 'ray[data]')")
pytest.importorskip("ray.data", reason="the ray executor needs Ray Data (pip install 'ray[data]')")
atlas_demo = pytest.importorskip("atlas_demo", reason="the tests use the demo plugin's model and images")
pytest.importorskip("atlas_onnx", reason="the tests run the model through the onnx plugin")

from atlas_core import UsageError  # noqa: E402
from atlas_core.stages import build  # noqa: E402

LAYER = "add_530"  # EfficientNet-Lite0 (dynamo export): 14 x 14 x 80
OPTIONS = dict(reducer="pca", levels=(2, 3), min_count=2, samples_per_image=2, attribution=False, chunk_images=4,
               exporters=("manifest",), quiet=True)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ray")
    images = folder / "lfw.npy"
    np.save(images, atlas_demo.lfw()[0].array[76:124])  # 24 faces, 24 non-faces
    return dict(model=str(atlas_demo.efficientnet_lite0_onnx("dynamo")), images=str(images), folder=folder)


@pytest.fixture(scope="module")
def reference(data):
    """The same atlas by the in-process executor."""
    return build(data["model"], data["images"], LAYER, data["folder"] / "local", **OPTIONS)


@pytest.fixture(scope="module")
def cluster():
    """One local cluster of 2 CPUs for the in-process builds (the executor uses a session it finds)."""
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
             logging_level=logging.ERROR, object_store_memory=256 * 1024 ** 2)
    yield
    ray.shutdown()


def assert_same_store(store, reference):
    assert store.key == reference.key and store.complete()
    np.testing.assert_array_equal(store.provenance(), reference.provenance())  # the same samples
    np.testing.assert_allclose(store.activations(), reference.activations(), rtol=1e-5, atol=1e-6)
    assert store.predictions()["classes"] == reference.predictions()["classes"]


def chunk_files(root: Path) -> dict:
    """Chunk file name -> inode: a chunk written again gets a new inode (the store writes and renames)."""
    return {p.name: p.stat().st_ino for p in sorted(root.glob("chunk-*.npz"))}


def test_two_workers_build_the_same_store_and_atlas(data, reference, cluster):
    atlas = build(data["model"], data["images"], LAYER, data["folder"] / "ray", executor="ray",
                  executor_options={"workers": 2}, **OPTIONS)
    assert_same_store(atlas.store(), reference.store())
    manifest = json.loads((atlas.path / "atlas.json").read_text())
    assert manifest == json.loads((reference.path / "atlas.json").read_text())
    np.testing.assert_allclose(atlas.layout, reference.layout, rtol=1e-4, atol=1e-5)


def _actors() -> list:
    """Process ids of this test's Ray actors of the pool (descendants of this process)."""
    children: dict = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
                children.setdefault(int(fields[1]), []).append(int(entry))
            except (OSError, IndexError):
                continue
    found, todo = [], [os.getpid()]
    while todo:
        for pid in children.get(todo.pop(), []):
            todo.append(pid)
            try:
                title = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0]
            except OSError:
                continue
            if title.startswith(b"ray::") and b"ChunkWorker" in title:
                found.append(pid)
    return found


def _kill_after(root: Path, chunks_before: int, killed: list) -> threading.Thread:
    """A thread that SIGKILLs one pool actor as soon as the store holds one chunk more than ``chunks_before``."""
    def watch():
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if len(list(root.glob("chunk-*.npz"))) > chunks_before:
                actors = _actors()
                if actors:
                    os.kill(actors[0], signal.SIGKILL)
                    killed.append(actors[0])
                    return
            time.sleep(0.005)
    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread


def test_a_worker_killed_mid_run_loses_nothing(data, reference, cluster):
    out = data["folder"] / "killed"
    ref = reference.store()
    root = out / "store" / ref.key
    killed: list = []
    # no retries: the run stops, having written whole chunks only, and says to rerun
    watcher = _kill_after(root, 0, killed)
    with pytest.raises(UsageError, match="rerun atlas build"):
        build(data["model"], data["images"], LAYER, out, executor="ray",
              executor_options={"workers": 2, "retries": 0}, **OPTIONS)
    watcher.join()
    assert killed
    first = chunk_files(root)
    assert 0 < len(first) < ref.n_chunks
    # a rerun with retries, whose worker is killed again: the driver maps the missing chunks to a fresh pool
    watcher = _kill_after(root, len(first), killed)
    atlas = build(data["model"], data["images"], LAYER, out, executor="ray", executor_options={"workers": 2},
                  **OPTIONS)
    watcher.join()
    assert len(killed) == 2
    store = atlas.store()
    assert_same_store(store, ref)
    after = chunk_files(root)
    assert {name: after[name] for name in first} == first  # the chunks of the first run were not collected again
    assert not list(store.root.glob(".chunk-*.tmp"))


def test_cli_starts_a_local_cluster_quietly(data, reference, tmp_path):
    """``atlas build --executor ray --workers 2`` with no address: a local cluster, the driver's progress bar,
    none of Ray's log lines; the same store. The shorthands are refused with the local executor."""
    atlas = [sys.executable, "-m", "atlas_core.cli", "build", data["model"], "--images", data["images"], "--layer",
             LAYER, "--reducer", "pca", "--levels", "2,3", "--min-count", "2", "--samples-per-image", "2",
             "--no-attribution", "--chunk-images", "4", "--exporters", "manifest"]
    env = dict(os.environ, RAY_ADDRESS="")
    run = subprocess.run(atlas + ["--out", str(tmp_path / "a"), "--executor", "ray", "--workers", "2"],
                         capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert lines[0] == "collect: 0/48 (0.0s)" and lines[-1].startswith("icons:exemplar:"), run.stderr
    assert any(line.startswith("collect: 48/48") for line in lines), run.stderr
    noise = [line for line in lines + run.stdout.splitlines()
             if re.search(r"\bray\b|raylet|core_worker|warning|deprecat|\(pid=", line, re.IGNORECASE)]
    assert not noise, noise
    from atlas_core.atlas import Atlas
    assert_same_store(Atlas(tmp_path / "a").store(), reference.store())

    refused = subprocess.run(atlas + ["--out", str(tmp_path / "b"), "--workers", "2"], capture_output=True,
                             text=True, env=env, timeout=120)
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1, refused.stderr
    assert "--workers need a parallel executor (--executor ray)" in refused.stderr


def test_options_are_checked_in_one_line(data, tmp_path):
    for options, message in (({"workers": 0}, "workers must be a positive integer"),
                             ({"gpus": "many"}, "gpus must be auto or a number"),
                             ({"retries": -1}, "retries must be 0 or a positive integer"),
                             ({"worker": 2}, "unknown executor option 'worker'")):
        with pytest.raises(UsageError, match=message):
            build(data["model"], data["images"], LAYER, tmp_path / "x", executor="ray", executor_options=options,
                  **OPTIONS)


def test_registration_imports_no_ray():
    from atlas_core.testing import check_registration_is_lazy
    check_registration_is_lazy("atlas_ray.plugin")
    code = ("import sys; from atlas_core.plugins import get_registry; get_registry().create('executors', 'ray'); "
            "print('ray' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"  # not even when the executor is created: only when it collects


def test_a_worker_tells_a_users_error_as_data(data, reference):
    """A worker that cannot open the task (here: the store is not on a filesystem it sees) answers each chunk with
    the one-line error, which the driver raises (Ray would keep only the text of an exception)."""
    import dataclasses

    from atlas_core.stages.collect import CollectTask
    from atlas_ray.executor import ChunkWorker
    store = reference.store()
    task = CollectTask(model=data["model"], backend=None, input_options={}, images=data["images"], layer=LAYER,
                       config={"layer": LAYER, "attribution": False}, store_root="/nonexistent/store",
                       store_key=store.key)
    answer = ChunkWorker(task, threads=1)({"chunk": np.array([0, 1])})
    assert list(answer["images"]) == [0, 0] and "is not visible on the Ray node" in answer["error"][0]
    task = dataclasses.replace(task, store_root=str(store.parent), images="/nonexistent/images.npy")
    assert "does not exist" in ChunkWorker(task, threads=1)({"chunk": np.array([0])})["error"][0]


def test_a_worker_adds_the_columns_the_driver_adds(data, tmp_path):
    """The task names the driver's per-sample columns: a worker adds attribution exactly when the driver's stages
    do (the store's key says which), and one that cannot is a one-line error (a plugin missing on its node)."""
    import dataclasses

    from atlas_core.stages import build_state
    from atlas_core.stages.collect import CollectStage, CollectTask
    images = tmp_path / "three.npy"
    np.save(images, np.load(data["images"])[:3])
    state = build_state(data["model"], str(images), LAYER, tmp_path / "a", stages=[CollectStage],
                        samples_per_image=2, chunk_images=3, quiet=True)  # attribution on, but not its stage
    task = CollectTask.from_state(state)
    assert task.columns == () and not task.open().state.columns
    with pytest.raises(UsageError, match=r"a worker adds the per-sample columns \[\], the driver \['attribution'\]"):
        dataclasses.replace(task, columns=("attribution",), config=dict(task.config, attribution=False)).open()
