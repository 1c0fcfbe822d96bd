"""The umap reducer: conformance kit, user mistakes, exact neighbours, real activations, numba cache."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

import atlas_umap.plugin
from atlas_core import UsageError
from atlas_core.metrics import knn_agreement
from atlas_core.testing import check_registration_is_lazy, check_reducer
from atlas_umap.knn import exact_knn


@pytest.fixture(scope="module")
def faces():
    """Real activations of lfw_subset (100 faces, 100 non-faces) in EfficientNet-Lite0 (480-d, one per image)."""
    atlas_demo = pytest.importorskip("atlas_demo")
    pytest.importorskip("atlas_onnx")
    return atlas_demo.lfw_activations()


def test_registration_is_lazy():
    check_registration_is_lazy("atlas_umap.plugin")


def test_conformance(atlas_registry):
    registry = atlas_registry(atlas_umap.plugin)
    assert "umap" in registry.names("reducers")
    check_reducer(registry.get("reducers", "umap").factory)


def test_defaults_are_the_reference_notebook(atlas_registry):
    est = atlas_registry(atlas_umap.plugin).reducer("umap", n_components=2, random_state=3)
    assert (est.n_neighbors, est.min_dist, est.metric, est.random_state) == (20, 0.01, "cosine", 3)


@pytest.mark.parametrize("params, message", [
    ({"n_neighbors": 1}, "n_neighbors"),
    ({"n_neighbors": 2.5}, "n_neighbors"),
    ({"min_dist": -0.1}, "min_dist"),
    ({"knn": "fast"}, "knn"),
    ({"n_epochs": 0}, "n_epochs"),
    ({"metric": "cosin"}, "did you mean cosine"),
    ({"metric": "manhattan", "knn": "exact"}, "exact"),
])
def test_bad_parameters_raise_usage_error(atlas_registry, faces, params, message):
    est = atlas_registry(atlas_umap.plugin).reducer("umap", random_state=0, **params)
    with pytest.raises(UsageError, match=message) as info:
        est.fit_transform(faces[0])
    assert "\n" not in str(info.value)


def test_unknown_parameter_raises_usage_error(atlas_registry):
    with pytest.raises(UsageError, match="unknown parameter 'n_neighbours' for reducer umap"):
        atlas_registry(atlas_umap.plugin).reducer("umap", n_neighbours=15)


def test_bad_samples_raise_usage_error(atlas_registry):
    est = atlas_registry(atlas_umap.plugin).reducer("umap", random_state=0)
    with pytest.raises(UsageError, match="at least 4 samples"):
        est.fit_transform(np.ones((3, 8), np.float32))
    with pytest.raises(UsageError, match="NaN"):
        est.fit_transform(np.full((10, 8), np.nan, np.float32))


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_exact_knn_matches_brute_force(faces, metric):
    X = faces[0]
    idx, dist = exact_knn(X, 12, metric)
    if metric == "cosine":
        Z = X / np.linalg.norm(X, axis=1, keepdims=True)
        full = 1.0 - Z.astype(np.float64) @ Z.T.astype(np.float64)
    else:
        full = np.sqrt(((X[:, None, :].astype(np.float64) - X[None]) ** 2).sum(-1))
    np.fill_diagonal(full, -1)
    expected = np.sort(full, axis=1)[:, :12]
    expected[:, 0] = 0
    assert (idx[:, 0] == np.arange(len(X))).all(), "each sample must be its own first neighbour"
    np.testing.assert_allclose(dist, expected, atol=2e-3 if metric == "euclidean" else 2e-5)
    assert (np.diff(dist, axis=1) >= 0).all()
    # a blocked search gives the same neighbours as one block
    idx2, _ = exact_knn(X, 12, metric, block_elements=7 * len(X))
    assert np.array_equal(idx, idx2)


def test_real_faces_and_non_faces_separate(atlas_registry, faces):
    X, y = faces
    est = atlas_registry(atlas_umap.plugin).reducer("umap", n_components=2, random_state=0)
    Y = est.fit_transform(X)
    assert Y.shape == (200, 2) and Y.dtype == np.float32
    assert est.knn_method_ == "exact"
    acc = knn_agreement(Y, y, k=5)
    assert acc >= 0.85, f"5-NN accuracy of faces vs non-faces in the 2-D layout is {acc:.2f} (chance 0.5)"


CHILD = r"""
import json, os, sys
import numpy as np
from atlas_umap.compile import prepare
prepare()
from numba.core import event
from atlas_umap.reducer import UMAPReducer
X = np.load(sys.argv[1])
with event.install_recorder("numba:compile") as rec:
    UMAPReducer(random_state=0, n_epochs=20).fit_transform(X)
names = sorted({e.data["dispatcher"].py_func.__qualname__ for _, e in rec.buffer if e.is_start})
print(json.dumps({"compiled": names, "cache": os.environ.get("NUMBA_CACHE_DIR")}))
"""


def _fit_in_fresh_process(path):
    out = subprocess.run([sys.executable, "-c", CHILD, str(path)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_a_later_process_compiles_nothing(faces, tmp_path):
    """What a second ``atlas build`` pays: the reducer's numba code comes from the persistent cache."""
    np.save(tmp_path / "X.npy", faces[0])
    first = _fit_in_fresh_process(tmp_path / "X.npy")  # fills the cache if this machine never did
    second = _fit_in_fresh_process(tmp_path / "X.npy")
    assert second["cache"], "the plugin must point numba at a persistent cache folder"
    assert second["compiled"] == [], f"a later process still compiled {second['compiled']} (first: {first})"


def test_aligned_layouts_of_two_views(atlas_registry, faces):
    """fit_transform_aligned (the AlignedReducer capability): one layout per view of the same 200 images, each
    keeping faces and non-faces apart, reproducible with the same random_state; bad input is a UsageError."""
    from atlas_core.contracts import AlignedReducer
    X, y = faces
    view_b = X[:, ::2]  # the same images seen through half the channels
    make = lambda: atlas_registry(atlas_umap.plugin).reducer("umap", n_components=2, random_state=0)  # noqa: E731
    est = make()
    assert isinstance(est, AlignedReducer)
    ya, yb = est.fit_transform_aligned([X, view_b])
    assert ya.shape == yb.shape == (200, 2) and ya.dtype == np.float32
    assert knn_agreement(ya, y, k=5) >= 0.85 and knn_agreement(yb, y, k=5) >= 0.85
    again = make().fit_transform_aligned([X, view_b])
    np.testing.assert_array_equal(again[0], ya)
    with pytest.raises(UsageError, match="same samples"):
        make().fit_transform_aligned([X, X[:100]])
    with pytest.raises(UsageError, match="at least two"):
        make().fit_transform_aligned([X])
