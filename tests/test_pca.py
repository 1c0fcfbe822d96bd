import numpy as np

from atlas_core.reducers import PCA


def test_pca_matches_svd_up_to_sign_and_is_deterministic():
    rng = np.random.default_rng(1)
    X = rng.normal(size=(200, 8)) @ np.diag([5, 3, 1, 1, 1, 1, 1, 1])
    Y = PCA().fit_transform(X)
    assert Y.shape == (200, 2) and Y.dtype == np.float32
    assert np.var(Y[:, 0]) > np.var(Y[:, 1]) > 0
    # sign convention: the largest loading of each component is positive
    est = PCA().fit(X)
    assert (est.components_[np.arange(2), np.abs(est.components_).argmax(1)] > 0).all()
    np.testing.assert_allclose(Y, PCA().fit_transform(X.copy()))
    # flipping the data flips the scores, not the components' sign convention
    assert np.allclose(np.abs(PCA().fit_transform(-X)), np.abs(Y), atol=1e-4)


def test_pca_pads_when_too_few_features():
    Y = PCA().fit_transform(np.random.default_rng(0).normal(size=(10, 1)))
    assert Y.shape == (10, 2) and np.all(Y[:, 1] == 0)
