"""fit_samples: UMAP fitted on a seeded subsample, the other samples placed by transform (real activations).

Real data: 3,000 centre vectors of ``relu3`` (64-d) of the ``healthy`` Fashion-MNIST CNN (trained here, cached),
one per test image. Skipped without Debian's dataset-fashion-mnist or the onnx plugin."""

from __future__ import annotations

import numpy as np
import pytest

from atlas_core import UsageError
from atlas_core.metrics import knn_agreement, trustworthiness
from atlas_umap.knn import exact_knn, exact_knn_query
from atlas_umap.reducer import FIT_SAMPLES_AUTO, UMAPReducer


@pytest.fixture(scope="module")
def fashion_acts(tmp_path_factory):
    fashion = pytest.importorskip("atlas_demo.fashion")
    if not fashion.fashion_available():
        pytest.skip(f"Fashion-MNIST is not installed: {fashion.INSTALL}")
    pytest.importorskip("atlas_onnx")
    from atlas_core.models import open_model
    model = open_model(str(fashion.fashion_models()["healthy"]), threads=2)
    source = fashion.fashion_images("test", 0, 3000)
    images = np.stack([source.load(i, (28, 28)) for i in range(len(source))])
    acts = np.concatenate([model.activations(images[i:i + 500], ["relu3"])["relu3"][:, 3, 3, :]
                           for i in range(0, len(images), 500)])
    path = tmp_path_factory.mktemp("acts") / "acts.npy"
    np.save(path, acts.astype(np.float32))
    return np.load(path, mmap_mode="r"), fashion.fashion_labels("test", 0, 3000)


def test_auto_fits_everything_up_to_the_limit():
    est = UMAPReducer(random_state=0)
    assert est.fit_samples == "auto"
    assert est.fit_count(FIT_SAMPLES_AUTO) == FIT_SAMPLES_AUTO
    assert est.fit_count(10 * FIT_SAMPLES_AUTO) == FIT_SAMPLES_AUTO
    assert UMAPReducer(fit_samples=None).fit_count(10 ** 7) == 10 ** 7
    assert UMAPReducer(fit_samples=500).fit_count(400) == 400


def test_bad_fit_samples_is_a_usage_error():
    for bad in (10, "all", 1.5):
        with pytest.raises(UsageError, match="fit_samples") as info:
            UMAPReducer(random_state=0, fit_samples=bad).fit_transform(np.ones((100, 4), np.float32))
        assert "\n" not in str(info.value)


def test_exact_query_matches_the_self_search():
    rng = np.random.default_rng(0)
    X = np.abs(rng.normal(size=(300, 16))).astype(np.float32)
    for metric in ("cosine", "euclidean"):
        idx, dist = exact_knn(X, 6, metric)
        qidx, qdist = exact_knn_query(X, X, 6, metric)  # a point is its own nearest neighbour
        np.testing.assert_array_equal(qidx[:, 0], np.arange(300))
        np.testing.assert_allclose(qdist[:, 1:], dist[:, 1:], atol=1e-5)


def test_subsample_fit_and_transform(fashion_acts):
    acts, labels = fashion_acts
    est = UMAPReducer(random_state=0, fit_samples=1000)
    Y = est.fit_transform(acts)  # the memory map itself: read chunk by chunk
    assert Y.shape == (3000, 2) and np.isfinite(Y).all()
    fitted = est.fit_indices_
    assert len(fitted) == 1000 and np.all(np.diff(fitted) > 0)
    np.testing.assert_array_equal(Y[fitted], est.model_.embedding_)  # the fitted samples keep their place
    # transformed samples land inside the fitted layout's extent, near their neighbours
    lo, hi = Y[fitted].min(0), Y[fitted].max(0)
    span = hi - lo
    assert np.all(Y >= lo - 0.1 * span) and np.all(Y <= hi + 0.1 * span)
    # the layout keeps neighbourhoods and the classes about as well as a fit on everything
    full = UMAPReducer(random_state=0, fit_samples=None).fit_transform(np.asarray(acts))
    t_sub, t_full = trustworthiness(acts, Y, seed=0), trustworthiness(acts, full, seed=0)
    k_sub, k_full = knn_agreement(Y, labels, seed=0), knn_agreement(full, labels, seed=0)
    assert t_sub > 0.9 and t_sub > t_full - 0.03, (t_sub, t_full)
    assert k_sub > k_full - 0.05, (k_sub, k_full)
    # reproducible
    np.testing.assert_array_equal(Y, UMAPReducer(random_state=0, fit_samples=1000).fit_transform(acts))
