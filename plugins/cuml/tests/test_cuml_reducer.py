"""The cuml-umap reducer: lazy registration and one-line errors everywhere; the fit itself only where RAPIDS
cuML and a CUDA GPU are there (skipped cleanly elsewhere)."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

import atlas_cuml.plugin
from atlas_core import UsageError
from atlas_core.testing import check_registration_is_lazy

HAS_CUML = importlib.util.find_spec("cuml") is not None


def test_registration_is_lazy():
    check_registration_is_lazy("atlas_cuml.plugin")


def test_registered_with_the_umap_defaults(atlas_registry):
    registry = atlas_registry(atlas_cuml.plugin)
    assert "cuml-umap" in registry.names("reducers")
    est = registry.reducer("cuml-umap", n_components=2, random_state=3)
    assert (est.n_neighbors, est.min_dist, est.metric, est.random_state, est.fit_samples) == \
        (20, 0.01, "cosine", 3, None)


def test_unknown_and_bad_parameters_are_one_line_errors(atlas_registry):
    registry = atlas_registry(atlas_cuml.plugin)
    with pytest.raises(UsageError, match="unknown parameter 'n_neighbours' for reducer cuml-umap"):
        registry.reducer("cuml-umap", n_neighbours=15)
    with pytest.raises(UsageError, match="build_algo") as info:
        registry.reducer("cuml-umap", random_state=0, build_algo="fast").fit_transform(np.ones((50, 4), np.float32))
    assert "\n" not in str(info.value)


@pytest.mark.skipif(HAS_CUML, reason="cuML is installed: the missing-cuML error cannot happen")
def test_without_cuml_choosing_it_is_a_one_line_error(atlas_registry):
    est = atlas_registry(atlas_cuml.plugin).reducer("cuml-umap", random_state=0)
    with pytest.raises(UsageError, match="needs RAPIDS cuML.*--reducer umap") as info:
        est.fit_transform(np.abs(np.random.default_rng(0).normal(size=(200, 8))).astype(np.float32))
    assert "\n" not in str(info.value)


def test_on_a_gpu_it_passes_the_conformance_kit(atlas_registry):
    pytest.importorskip("cuml", reason="RAPIDS cuML is not installed (GPU machines only)")
    from atlas_core.testing import check_reducer
    registry = atlas_registry(atlas_cuml.plugin)
    check_reducer(registry.get("reducers", "cuml-umap").factory)
    X = np.abs(np.random.default_rng(0).normal(size=(3000, 16))).astype(np.float32)
    Y = registry.reducer("cuml-umap", random_state=0, fit_samples=1000).fit_transform(X)
    assert Y.shape == (3000, 2) and np.isfinite(Y).all()
