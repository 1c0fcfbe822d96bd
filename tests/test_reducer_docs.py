"""docs/reducers.md: its custom-reducer example runs, registers and passes the conformance kit."""

from __future__ import annotations

import re
import types
from pathlib import Path

import numpy as np
import pytest

from atlas_core import UsageError
from atlas_core.testing import check_reducer

DOC = (Path(__file__).parents[1] / "docs" / "reducers.md").read_text()
SECTION = DOC.split("## Writing your own reducer", 1)[1]


def _blocks(lang):
    return re.findall(rf"```{lang}\n(.*?)```", SECTION, flags=re.S)


@pytest.fixture
def example_module():
    """The page's Python example, executed as the module ``my_reducers.plugin``."""
    pytest.importorskip("sklearn")
    (code,) = _blocks("python")
    module = types.ModuleType("my_reducers.plugin")
    exec(compile(code, "docs/reducers.md", "exec"), module.__dict__)
    return module


def test_example_passes_check_reducer(atlas_registry, example_module):
    registry = atlas_registry(example_module)
    assert "spectral" in registry.names("reducers")
    check_reducer(registry.get("reducers", "spectral").factory)


def test_example_raises_usage_error(atlas_registry, example_module):
    est = atlas_registry(example_module).reducer("spectral", n_neighbors=1)
    with pytest.raises(UsageError, match="n_neighbors"):
        est.fit_transform(np.ones((10, 3), np.float32))


def test_example_registration_imports_nothing_heavy(example_module):
    # the module body ran in this process; the framework import sits inside fit_transform only
    (code,) = _blocks("python")
    top_level = [line for line in code.splitlines() if line.startswith(("import ", "from "))]
    assert all(re.match(r"(import (numpy|atlas_core)|from atlas_core)", line) for line in top_level), top_level


def test_example_entry_point_names_the_module():
    (toml,) = _blocks("toml")
    assert "[project.entry-points.atlas_core]" in toml
    assert re.search(r'^\w+ = "my_reducers\.plugin"$', toml, flags=re.M)
    (code,) = _blocks("python")
    assert code.startswith('"""my_reducers/plugin.py')


@pytest.mark.parametrize("name", ["umap", "tsne"])
def test_defaults_in_the_page_match_the_plugins(name):
    """The defaults this page states are the ones the plugins use."""
    if name == "umap":
        reducer = pytest.importorskip("atlas_umap.reducer")
        est, EXACT_KNN_MAX = reducer.UMAPReducer(), reducer.EXACT_KNN_MAX
        assert (est.n_neighbors, est.min_dist, est.metric) == (20, 0.01, "cosine")
        assert "`n_neighbors=20, min_dist=0.01, metric=\"cosine\"`" in DOC
        assert f"up to {EXACT_KNN_MAX:,} samples" in DOC
    else:
        est = pytest.importorskip("atlas_tsne.reducer").TSNEReducer()
        assert (est.perplexity, est.metric) == (50, "cosine")
        assert "`perplexity=50, metric=\"cosine\"`" in DOC
