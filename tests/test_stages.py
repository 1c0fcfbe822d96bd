"""The build's stages, store and reuse policy, on the conformance kit's tiny numpy network: no plugin needed."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import atlas_core
from atlas_core import UsageError
from atlas_core.atlas import validate
from atlas_core.plugins import load
from atlas_core.stages import build_state
from atlas_core.stages.collect import CollectStage
from atlas_core.store import SampleStore
from atlas_core.testing import NumpyModel, tiny_build, tiny_images


@pytest.fixture
def registry():
    return load(entry_points=False)


def test_whole_pipeline_without_any_plugin(tmp_path):
    """In a fresh interpreter with every plugin disabled: a real (tiny) model, real stages, a valid atlas."""
    code = textwrap.dedent(f"""
        import json, sys
        from atlas_core.testing import tiny_build
        state = tiny_build({str(tmp_path / 'atlas')!r})
        print(json.dumps({{"cells": [len(lv.cells) for lv in state.levels],
                           "plugins": sorted(state.registry.plugins), "written": state.written,
                           "modules": sorted(m for m in sys.modules if m.startswith("atlas_") and
                                             not m.startswith("atlas_core"))}}))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=dict(os.environ, ATLAS_DISABLE_PLUGINS="all"))
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout.strip().splitlines()[-1])
    assert data["plugins"] == ["builtins"] and data["modules"] == []
    assert all(data["cells"]) and {"atlas.json", "atlas.png", "index.html"} <= set(data["written"])
    m = validate(tmp_path / "atlas")
    # the numpy model has a gradient capability of its own: attribution labels, with no plugin at all
    assert m["model"] == "tiny-numpy-cnn" and m["label_source"] == "attribution"
    assert m["label_sources"] == ["attribution", "predicted"]
    labels = {c["label"] for lv in m["levels"] for c in lv["cells"]}
    assert labels <= {"red", "green", "blue", "grey"}  # the model's own class names


def test_cells_are_objects_with_members_icons_and_fidelity(tmp_path):
    state = tiny_build(tmp_path / "a")
    acts = state.store.activations()
    for level in state.levels:
        for cell in level.cells:
            direction = level.directions[cell.direction]
            np.testing.assert_allclose(direction, acts[np.sort(cell.members)].mean(0), rtol=1e-5, atol=1e-6)
            cos = acts[cell.members] @ direction / np.linalg.norm(acts[cell.members], axis=1)
            assert cos[0] == pytest.approx(cos.max())  # most representative first
            assert (state.out / cell.icons["exemplar"]).is_file() and -1 <= cell.fidelity["exemplar"] <= 1


def test_rerun_reuses_every_artifact_and_other_options_reuse_what_they_can(tmp_path, capsys):
    out = tmp_path / "a"
    tiny_build(out)
    icon = out / "icons" / "exemplar" / "4"
    mtimes = {p: p.stat().st_mtime_ns for p in icon.iterdir()}
    tiny_build(out, quiet=False)
    assert "reusing pca layout" in capsys.readouterr().out
    assert mtimes == {p: p.stat().st_mtime_ns for p in icon.iterdir()}  # icons of an unchanged level are kept
    tiny_build(out, min_count=3)  # another level: its icons are drawn again
    assert mtimes != {p: p.stat().st_mtime_ns for p in icon.iterdir() if p in mtimes}


def test_a_model_rewritten_in_place_collects_afresh(tmp_path):
    """The store is keyed by the model's content, not its name: another model of the same name collects anew."""
    out = tmp_path / "a"
    first = tiny_build(out)
    other = NumpyModel(seed=1)
    assert other.name == first.model.name and other.identity != first.model.identity
    second = tiny_build(out, model=other)
    assert second.store.key != first.store.key
    assert not np.allclose(second.store.activations(), first.store.activations())
    assert [p.name for p in (out / "store").iterdir()] == [second.store.key]  # the other store is pruned


def test_store_filled_out_of_order_and_interrupted_resumes_to_the_same_samples(tmp_path, registry):
    images = tiny_images(40)
    whole = build_state(NumpyModel(), images, "conv2", tmp_path / "whole", stages=[CollectStage],
                        chunk_images=6, samples_per_image=3, quiet=True, registry=registry)
    # a second atlas: collect only chunks 5, 2 and 0 (as parallel workers might), then "crash"
    state = build_state(NumpyModel(), images, "conv2", tmp_path / "part", stages=[CollectStage],
                        chunk_images=6, samples_per_image=3, quiet=True, registry=registry)
    store = state.store
    key = store.key
    for name in list(store.root.iterdir()):
        if name.name.startswith("chunk-") and name.name not in ("chunk-0000005.npz", "chunk-0000002.npz",
                                                                "chunk-0000000.npz"):
            name.unlink()
    (store.root / "consolidated.json").unlink()
    assert store.missing_chunks() == [1, 3, 4, 6]
    kept = {p.name: p.stat().st_mtime_ns for p in store.root.glob("chunk-*")}
    resumed = build_state(NumpyModel(), images, "conv2", tmp_path / "part", stages=[CollectStage],
                          chunk_images=6, samples_per_image=3, quiet=True, registry=registry).store
    assert resumed.key == key and resumed.missing_chunks() == []
    assert kept == {p.name: p.stat().st_mtime_ns for p in resumed.root.glob("chunk-*") if p.name in kept}
    np.testing.assert_array_equal(resumed.provenance(), whole.store.provenance())
    np.testing.assert_array_equal(resumed.activations(), whole.store.activations())


def test_store_takes_extra_columns_and_opens_read_only(tmp_path):
    store = SampleStore(tmp_path, {"a": 1}, n_images=3, chunk_images=2)
    for k, rows in ((1, 1), (0, 3)):
        store.write_chunk(k, {"acts": np.full((rows, 4), k, np.float32), "prov": np.zeros((rows, 3), np.int32),
                              "attribution": np.full((rows, 5), k + 0.5, np.float16)}, [])
    store.consolidate()
    ro = SampleStore.open(tmp_path, store.key)
    assert ro.column("attribution").dtype == np.float16 and ro.column("attribution").shape == (4, 5)
    assert ro.activations()[:, 0].tolist() == [0, 0, 0, 1]  # image order, not writing order
    with pytest.raises(RuntimeError, match="read-only"):
        ro.write_chunk(0, {"acts": np.zeros((0, 4)), "prov": np.zeros((0, 3))}, [])
    with pytest.raises(UsageError, match="no samples store"):
        SampleStore(tmp_path, {"other": 1}, 3, readonly=True)


def test_unknown_renderer_option_is_a_one_line_error(tmp_path):
    res = subprocess.run([sys.executable, "-c", textwrap.dedent(f"""
        import sys
        from atlas_core.cli import main
        from atlas_core.testing import NumpyModel, tiny_images
        import numpy as np
        np.save({str(tmp_path / 'x.npy')!r}, tiny_images(12))
        sys.exit(0)
    """)], capture_output=True, text=True)
    assert res.returncode == 0
    with pytest.raises(UsageError) as err:
        tiny_build(tmp_path / "a", icon_options={"step": 512})
    message = str(err.value)
    assert "\n" not in message and "'step'" in message and "exemplar" in message
    with pytest.raises(UsageError, match="not among the chosen ones"):
        tiny_build(tmp_path / "b", icon_options={"featureviz.steps": 512})
    assert not (tmp_path / "a" / "store").exists()  # refused before any work


def test_unknown_reducer_parameter_and_build_option(tmp_path):
    with pytest.raises(UsageError, match="unknown parameter 'n_neighbours' for reducer pca; known: n_components"):
        tiny_build(tmp_path / "a", reducer_params={"n_neighbours": 5})
    with pytest.raises(UsageError, match="unknown build option levls"):
        tiny_build(tmp_path / "b", levls=(3,))


def test_throwaway_exporter_plugin_runs_in_atlas_build(tmp_path):
    """An exporter from a plugin, found through a real entry point, runs in `atlas build` after the manifest."""
    plugin = tmp_path / "site"
    plugin.mkdir()
    (plugin / "cells_csv.py").write_text(textwrap.dedent("""
        from atlas_core import hookimpl

        class CellsCsv:
            name = "cells-csv"
            order = 50

            def export(self, build, out):
                lines = ["grid,i,j,count,label"]
                lines += [f"{lv.grid},{c.i},{c.j},{c.count},{c.label}" for lv in build.levels for c in lv.cells]
                assert build.manifest["layer"] == build.config.layer  # the manifest ran first
                (out / "cells.csv").write_text("\\n".join(lines))
                return ["cells.csv"]

        @hookimpl
        def atlas_register_exporters(register):
            register("cells-csv", CellsCsv, description="one row per cell")
    """))
    info = plugin / "cells_csv-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: cells-csv\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[atlas_core]\ncells_csv = cells_csv\n")
    np.save(tmp_path / "images.npy", (tiny_images(30) * 255).astype(np.uint8))
    code = textwrap.dedent(f"""
        import sys
        from atlas_core.stages import build
        from atlas_core.testing import NumpyModel
        build(NumpyModel(), {str(tmp_path / 'images.npy')!r}, "conv2", {str(tmp_path / 'atlas')!r}, reducer="pca",
              levels=(3,), min_count=2, quiet=True)
    """)
    env = dict(os.environ, PYTHONPATH=str(plugin), ATLAS_DISABLE_PLUGINS="")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert res.returncode == 0, res.stderr
    rows = (tmp_path / "atlas" / "cells.csv").read_text().splitlines()
    m = json.loads((tmp_path / "atlas" / "atlas.json").read_text())
    assert len(rows) - 1 == sum(len(lv["cells"]) for lv in m["levels"]) > 0
    listed = subprocess.run([sys.executable, "-m", "atlas_core.cli", "plugins"], capture_output=True, text=True,
                            env=env)
    assert "exporters: cells-csv" in listed.stdout


def test_exporters_option_chooses_and_the_manifest_always_runs(tmp_path):
    state = tiny_build(tmp_path / "a", exporters=("mosaic",))
    assert state.written[0] == "atlas.json" and "atlas.png" in state.written
    assert not (tmp_path / "a" / "index.html").exists()
    with pytest.raises(UsageError, match="unknown exporter 'csv'"):
        tiny_build(tmp_path / "b", exporters=("csv",))


def test_python_api_takes_arrays_and_lists(tmp_path):
    images = tiny_images(24)
    a = atlas_core.build(NumpyModel(), images, "conv2", tmp_path / "a", reducer="pca", levels=(2,), min_count=2,
                         quiet=True)
    b = atlas_core.build(NumpyModel(), list(images), "conv2", tmp_path / "b", reducer="pca", levels=(2,),
                         min_count=2, quiet=True)
    np.testing.assert_array_equal(a.layout, b.layout)
    assert a.directions(0).shape == a.directions(2).shape  # by index or by grid size
    with pytest.raises(UsageError, match="grid size among"):
        a.directions(10)


def test_core_imports_no_plugin_module():
    code = ("import sys, atlas_core, atlas_core.stages, atlas_core.cli, atlas_core.images, atlas_core.atlas\n"
            "atlas_core.cli.build_parser\n"
            "print(sorted(m for m in sys.modules if m.startswith('atlas_') and not m.startswith('atlas_core')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    # nor does any core source file name one
    from pathlib import Path
    root = Path(atlas_core.__file__).parent
    for path in root.rglob("*.py"):
        text = path.read_text()
        for plugin in ("atlas_demo", "atlas_onnx", "atlas_jax", "atlas_torch", "atlas_umap", "atlas_tsne", "atlas_ray"):
            assert f"import {plugin}" not in text and f"from {plugin}" not in text, (path, plugin)


class ProcessExecutor:
    """A throwaway executor: the collect task, as plain data, goes to two worker processes."""

    name = "processes"
    options = {"workers": 2}

    def collect(self, state, chunks, progress):
        import multiprocessing
        from atlas_core.stages.collect import CollectTask
        task = CollectTask.from_state(state)
        with multiprocessing.get_context("spawn").Pool(state.executor_options["workers"]) as pool:
            for n in pool.imap_unordered(_collect_in_worker, [(task, k) for k in chunks]):
                progress(n)


def _collect_in_worker(job):
    task, k = job
    return task.open().collect(k)


def test_an_executor_plugin_collects_the_same_store_in_other_processes(tmp_path):
    """The executor seam: CollectTask is plain data that other processes open and collect chunks from, in any
    order; the store equals the in-process one (EfficientNet-Lite0 on real faces)."""
    import atlas_core
    atlas_demo = pytest.importorskip("atlas_demo")
    pytest.importorskip("atlas_onnx")

    class Plugin:
        @atlas_core.hookimpl
        def atlas_register_executors(self, register):
            register("processes", ProcessExecutor)

    images = tmp_path / "faces.npy"
    np.save(images, atlas_demo.lfw()[0].array[80:104])
    model = str(atlas_demo.efficientnet_lite0_onnx("dynamo"))
    registry = load(extra=(("processes", Plugin()),))
    options = dict(stages=[CollectStage], chunk_images=6, samples_per_image=2, attribution=False, quiet=True,
                   registry=registry)
    with pytest.raises(UsageError, match="not Python objects"):
        build_state(NumpyModel(), tiny_images(8), "conv2", tmp_path / "obj", executor="processes", **options)
    with pytest.raises(UsageError, match="unknown executor option 'worker'"):
        build_state(model, str(images), "add_530", tmp_path / "p", executor="processes",
                    executor_options={"worker": 3}, **options)
    local = build_state(model, str(images), "add_530", tmp_path / "local", **options).store
    remote = build_state(model, str(images), "add_530", tmp_path / "remote", executor="processes", **options).store
    assert remote.key == local.key and remote.complete()
    np.testing.assert_array_equal(remote.provenance(), local.provenance())
    np.testing.assert_allclose(remote.activations(), local.activations(), rtol=1e-5, atol=1e-6)
