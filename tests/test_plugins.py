"""Plugin discovery, failures, duplicates and disabling, through real entry points."""

import json
import os
import subprocess
import sys
import textwrap

import pytest

import atlas_core
from atlas_core.plugins import load
from atlas_core.testing import check_reducer


def _fake_distribution(root, dist, module, source, ep_name):
    """A real installed distribution on sys.path: a module plus a .dist-info with entry points."""
    (root / f"{module}.py").write_text(textwrap.dedent(source))
    info = root / f"{dist}-1.2.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.2.3\n")
    (info / "entry_points.txt").write_text(f"[atlas_core]\n{ep_name} = {module}\n")


GOOD = """
    from atlas_core import hookimpl
    class Halves:
        def __init__(self, n_components=2, random_state=None):
            self.n_components = n_components; self.random_state = random_state
        def fit_transform(self, X):
            return X[:, :2]
    @hookimpl
    def atlas_register_reducers(register):
        register("halves", Halves, description="first two features")
"""
BROKEN = "raise ImportError('needs the frobnicator library')\n"
DUPLICATE = """
    from atlas_core import hookimpl
    @hookimpl
    def atlas_register_reducers(register):
        register("pca", dict)
"""


def _atlas_plugins(tmp_path, env_extra=None):
    env = dict(os.environ, PYTHONPATH=str(tmp_path), **(env_extra or {}))
    return subprocess.run([sys.executable, "-m", "atlas_core.cli", "plugins", "--json"],
                          capture_output=True, text=True, env=env)


def test_entry_point_plugin_is_discovered_and_broken_one_skipped(tmp_path):
    _fake_distribution(tmp_path, "atlas_good", "atlas_good_plugin", GOOD, "good")
    _fake_distribution(tmp_path, "atlas_broken", "atlas_broken_plugin", BROKEN, "broken")
    out = _atlas_plugins(tmp_path)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    good = [p for p in data["plugins"] if p["name"] == "good"]
    assert good and good[0]["distribution"] == "atlas_good" and good[0]["version"] == "1.2.3"
    assert good[0]["registers"] == {"reducers": ["halves"]}
    assert any(p["name"] == "builtins" and "pca" in p["registers"]["reducers"] for p in data["plugins"])
    failed = {f["name"]: f for f in data["failed"]}
    assert "needs the frobnicator library" in failed["broken"]["error"]


def test_plain_listing_names_failures(tmp_path):
    _fake_distribution(tmp_path, "atlas_broken", "atlas_broken_plugin", BROKEN, "broken")
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    out = subprocess.run([sys.executable, "-m", "atlas_core.cli", "plugins"], capture_output=True, text=True,
                         env=env)
    assert out.returncode == 0
    assert "broken" in out.stdout and "FAILED" in out.stdout and "frobnicator" in out.stdout
    assert "pca" in out.stdout


def test_disable_named_and_all_external(tmp_path):
    _fake_distribution(tmp_path, "atlas_good", "atlas_good_plugin", GOOD, "good")
    names = lambda out: {p["name"] for p in json.loads(out.stdout)["plugins"]}  # noqa: E731
    assert "good" in names(_atlas_plugins(tmp_path))
    assert "good" not in names(_atlas_plugins(tmp_path, {"ATLAS_DISABLE_PLUGINS": "good"}))
    assert names(_atlas_plugins(tmp_path, {"ATLAS_DISABLE_PLUGINS": "all"})) == {"builtins"}


def test_duplicate_name_is_reported_and_the_first_party_one_kept(tmp_path):
    # an impostor that sorts before the real plugin registers its name: the real one is kept, every command works
    _fake_distribution(tmp_path, "atlas_dup", "atlas_dup_plugin", DUPLICATE, "aaa_dup")
    out = _atlas_plugins(tmp_path)
    assert out.returncode == 0, out.stderr
    conflicts = json.loads(out.stdout)["conflicts"]
    assert conflicts == [{"family": "reducers", "name": "pca", "kept": "builtins", "ignored": "aaa_dup"}]
    plain = subprocess.run([sys.executable, "-m", "atlas_core.cli", "plugins"], capture_output=True, text=True,
                           env=dict(os.environ, PYTHONPATH=str(tmp_path)))
    assert plain.returncode == 0 and "CONFLICT" in plain.stdout and "'aaa_dup'" in plain.stdout
    assert "Traceback" not in plain.stderr


def test_duplicate_in_process_keeps_the_first(atlas_registry):
    class Dup:
        @atlas_core.hookimpl
        def atlas_register_reducers(self, register):
            register("pca", dict)
            register("halves", dict)

    class Dup2:
        @atlas_core.hookimpl
        def atlas_register_reducers(self, register):
            register("halves", list)
    registry = load(entry_points=False, extra=(("dup", Dup()), ("dup2", Dup2())))
    assert registry.get("reducers", "pca").plugin == "builtins"
    assert registry.get("reducers", "halves").factory is dict  # neither is first-party: the first one wins
    assert [(c.name, c.kept, c.ignored) for c in registry.conflicts] == [("pca", "builtins", "dup"),
                                                                       ("halves", "dup", "dup2")]


def test_register_nonsense_is_reported_not_raised(atlas_registry):
    class Bad:
        @atlas_core.hookimpl
        def atlas_register_reducers(self, register):
            register(None)
    registry = atlas_registry(Bad())
    assert "pca" in registry.names("reducers")
    assert any("register() needs a name" in f.error for f in registry.failed)


def test_backends_are_tried_by_priority(atlas_registry):
    class Low:
        name = "low"
        def can_open(self, source): return True  # noqa: E704

    class High(Low):
        name = "zz-high"

    class Plugin:
        @atlas_core.hookimpl
        def atlas_register_backends(self, register):
            register("low", Low, priority=0)
            register("zz-high", High, priority=5)
    assert atlas_registry(Plugin()).backend_for("anything").name == "zz-high"


def test_hook_that_raises_is_skipped(atlas_registry):
    class Bad:
        @atlas_core.hookimpl
        def atlas_register_reducers(self, register):
            raise RuntimeError("boom")
    registry = atlas_registry(Bad())
    assert "pca" in registry.names("reducers")
    assert any("boom" in f.error for f in registry.failed)


def test_isolated_manager_discovers_nothing(atlas_plugin_manager):
    assert atlas_plugin_manager.get_plugins() == set()


def test_isolated_registry_has_builtins_only(atlas_registry):
    registry = atlas_registry()
    assert set(registry.plugins) == {"builtins"}
    assert registry.names("reducers") == ["pca"] and registry.names("renderers") == ["exemplar"]


def test_unknown_name_suggests(atlas_registry):
    with pytest.raises(atlas_core.UsageError, match="did you mean pca"):
        atlas_registry().reducer("pcaa")


def test_builtin_pca_conforms(atlas_registry):
    check_reducer(atlas_registry().get("reducers", "pca").factory)
