"""`atlas compare` on real weights and real photos: CKA of EfficientNet-Lite0 with itself and with a copy whose
block 3 has planted dead and saturated channels."""

import json

import numpy as np
import pytest
from PIL import Image

from atlas_core import UsageError
from atlas_core.analysis.compare import compare
from atlas_core.analysis.similarity import MinibatchCKA, cka_full, knn_indices, knn_overlap
from atlas_core.images import ArraySource

pytest.importorskip("atlas_onnx")
pytest.importorskip("atlas_demo")

from atlas_core.models import open_model  # noqa: E402

LAYERS = ["hardtanh_4", "getitem_27", "hardtanh_6", "getitem_30", "hardtanh_7", "add_236", "hardtanh_20",
          "hardtanh_32", "logits"]


def pooled(model, source, layers):
    """One mean-pooled vector per image, straight from the canonical activations."""
    out = {n: [] for n in layers}
    for start in range(0, len(source), 64):
        images = np.stack([source.load(i, (224, 224)) for i in range(start, min(len(source), start + 64))])
        for n, a in model.activations(images, layers).items():
            out[n].append(a.mean(axis=(1, 2)) if a.ndim == 4 else a)
    return {n: np.concatenate(v).astype(np.float64) for n, v in out.items()}


def test_layer_against_itself_is_one(efficientnet_path, photos, tmp_path):
    report = compare(open_model(efficientnet_path), None, photos, tmp_path, layers_a=LAYERS, quiet=True)
    cka = np.array(report["cka"], dtype=float)
    assert report["layers_a"] == report["layers_b"] == LAYERS and report["model_b"] is None
    np.testing.assert_allclose(np.diag(cka), 1, atol=1e-9)
    np.testing.assert_allclose(cka, cka.T, atol=1e-9)
    off = cka[~np.eye(len(LAYERS), dtype=bool)]
    assert 0 < off.min() and off.max() < 0.999  # different layers are not the same representation


def test_upstream_of_a_planted_change_is_one_and_downstream_below(efficientnet_path, planted, photos, tmp_path):
    layers = ["hardtanh_4"] + planted.upstream + planted.downstream
    report = compare(open_model(efficientnet_path), open_model(planted.path), photos, tmp_path, layers_a=layers,
                     layers_b=layers, quiet=True)
    diag = dict(zip(layers, np.diag(np.array(report["cka"], dtype=float))))
    for name in ["hardtanh_4"] + planted.upstream:  # identical, or shifted by constants only (getitem_30)
        assert diag[name] > 0.9999, (name, diag[name])
    for name in planted.downstream:
        assert diag[name] < 0.9995, (name, diag[name])
    assert diag["logits"] < 0.9 and diag["hardtanh_32"] < 0.9  # the change grows towards the output
    assert report["model_b"] == "planted.onnx"


def test_minibatch_cka_equals_a_full_batch_computation(efficientnet_path, photos, tmp_path):
    """On the same activations: with one minibatch the estimate is the full-batch unbiased CKA to rounding; with
    the default minibatches of 256 over 512 images it stays within 0.01 of it."""
    model = open_model(efficientnet_path)
    layers = ["hardtanh_4", "hardtanh_13", "add_332", "hardtanh_20"]
    acts = pooled(model, photos, layers)
    full = np.array([[cka_full(acts[a], acts[b]) for b in layers] for a in layers])
    one = compare(model, None, photos, tmp_path / "one", layers_a=layers, quiet=True)
    assert one["minibatches"] == 1 and one["cka_batch"] == 256
    np.testing.assert_allclose(np.array(one["cka"], dtype=float), full, atol=1e-4)
    # Kornblith et al.'s biased form is a different number on 32 images: the estimator is the unbiased one
    biased = np.array([[cka_full(acts[a], acts[b], unbiased=False) for b in layers] for a in layers])
    assert np.abs(biased - full).max() > 0.01

    import atlas_demo
    views = atlas_demo.demo_images()
    step = len(views) // 512
    many = ArraySource(np.stack([np.rint(views.load(i * step, (224, 224)) * 255).astype(np.uint8)
                                 for i in range(512)]))
    acts = pooled(model, many, layers)
    full = np.array([[cka_full(acts[a], acts[b]) for b in layers] for a in layers])
    report = compare(model, None, many, tmp_path / "many", layers_a=layers, quiet=True)
    assert report["minibatches"] == 2 and report["images"] == 512
    np.testing.assert_allclose(np.array(report["cka"], dtype=float), full, atol=0.01)


def test_minibatch_sum_of_synthetic_blocks_is_the_weighted_mean():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((40, 6))
    acc = MinibatchCKA(1, 1)
    assert not acc.update([x[:3]], [x[:3]])  # too small to count
    acc.update([x[:20]], [x[:20] ** 2])
    acc.update([x[20:]], [x[20:] ** 2])
    assert acc.minibatches == 2 and acc.samples == 40
    assert 0 < acc.cka[0, 0] < 1


def test_knn_overlap_per_image(efficientnet_path, planted, photos, tmp_path):
    model = open_model(efficientnet_path)
    report = compare(model, open_model(planted.path), photos, tmp_path, layers_a=LAYERS[:3], layers_b=LAYERS[:3],
                     knn_pair=("hardtanh_20", "hardtanh_32"), k=5, quiet=True)
    knn = report["knn"]
    assert knn["layer_a"] == "hardtanh_20" and knn["layer_b"] == "hardtanh_32" and knn["k"] == 5
    assert sorted(knn["images"]) == sorted(photos.names)
    # brute force on the canonical activations: all distances, full sort
    a = pooled(model, photos, ["hardtanh_20"])["hardtanh_20"]
    b = pooled(open_model(planted.path), photos, ["hardtanh_32"])["hardtanh_32"]
    order = [photos.names.index(n) for n in knn["images"]]
    a, b = a[order], b[order]

    def neighbours(x):
        d = ((x[:, None] - x[None]) ** 2).sum(-1)
        np.fill_diagonal(d, np.inf)
        return [set(np.argsort(row, kind="stable")[:5]) for row in d]

    want = [len(p & q) / 5 for p, q in zip(neighbours(a), neighbours(b))]
    np.testing.assert_allclose(knn["overlap"], want)
    assert 0 < knn["mean"] < 1
    np.testing.assert_allclose(knn_overlap(a, a, 5), 1)
    assert (knn_indices(a, 5, block=7) == knn_indices(a, 5)).all()  # blocking changes nothing


def test_files_and_escaping(planted, photos, tmp_path):
    evil = 'x"<b>&'
    path = planted.make(tmp_path / "m", rename={"hardtanh_4": evil})
    model = open_model(path)
    report = compare(model, None, ArraySource(photos.array[:8]), tmp_path / "out", layers_a=[evil, "hardtanh_6"],
                     quiet=True)
    saved = json.loads((tmp_path / "out" / "compare.json").read_text())
    assert saved["layers_a"] == [evil, "hardtanh_6"] and saved == json.loads(json.dumps(report))
    page = (tmp_path / "out" / "index.html").read_text()
    assert evil not in page and "x&quot;&lt;b&gt;&amp;" in page
    assert Image.open(tmp_path / "out" / "compare.png").width >= 480


def test_bad_input_is_a_usage_error(efficientnet_path, photos, tmp_path):
    model = open_model(efficientnet_path)
    few = ArraySource(photos.array[:6])
    with pytest.raises(UsageError, match="unknown layer 'nope'"):
        compare(model, None, few, tmp_path, layers_a=["hardtanh_4", "nope"])
    with pytest.raises(UsageError, match="unknown layer 'nope'"):
        compare(model, None, few, tmp_path, layers_a=["hardtanh_4"], knn_pair=("hardtanh_4", "nope"))
    with pytest.raises(UsageError, match="at least 4"):
        compare(model, None, few, tmp_path, layers_a=["hardtanh_4"], cka_batch=3)
    with pytest.raises(UsageError, match="CKA needs at least 4 images"):
        compare(model, None, ArraySource(photos.array[:3]), tmp_path, layers_a=["hardtanh_4"], quiet=True)
    with pytest.raises(UsageError, match="no images"):
        compare(model, None, ArraySource(np.zeros((0, 8, 8), np.uint8)), tmp_path, layers_a=["hardtanh_4"])
