"""Fashion-MNIST and the three CNNs trained on it: the health report tells the strategies apart.

Needs Debian's dataset-fashion-mnist (``make fashion``); skipped without it. The models train once per machine
(about half a minute on two idle cores, several minutes on a loaded one) and are cached."""

import gzip
import time

import numpy as np
import pytest

from atlas_demo import fashion

pytestmark = pytest.mark.skipif(not fashion.fashion_available(),
                                reason=f"Fashion-MNIST is not installed: {fashion.INSTALL}")


@pytest.fixture(scope="module")
def models():
    return fashion.fashion_models()


@pytest.fixture(scope="module")
def reports(models, tmp_path_factory):
    pytest.importorskip("atlas_onnx")
    from atlas_core.analysis.health import health
    from atlas_core.models import open_model
    held_out = fashion.fashion_images("test", 0, 1000)
    out = {}
    for name, path in models.items():
        trained_on = fashion.training_images(name)
        if len(trained_on) > 1000:  # healthy and dead: the first 1,000 of their 20,000 training images
            trained_on = fashion.fashion_images("train", 0, 1000)
        report = health(open_model(path), trained_on, tmp_path_factory.mktemp(name), layers=list(fashion.LAYERS),
                        holdout=held_out, quiet=True)
        out[name] = {e["name"]: e for e in report["layers"]}
    return out


def test_idx_files_read_with_numpy():
    images, labels = fashion.fashion_arrays("train")
    assert images.shape == (60000, 28, 28) and images.dtype == np.uint8 and labels.shape == (60000,)
    assert np.bincount(labels).tolist() == [6000] * 10
    test = fashion.fashion_images("test", 10, 5)
    assert len(test) == 5 and test.names[0] == "fashion-test/00010"
    img = test.raw(0)
    assert img.shape == (28, 28, 3) and 0 <= img.min() and img.max() <= 1 and img.std() > 0.05
    assert fashion.fashion_labels("test", 10, 5).tolist() == fashion.fashion_arrays("test")[1][10:15].tolist()
    assert fashion.CLASS_NAMES[9] == "Ankle boot"


def test_idx_reader_refuses_other_files(tmp_path):
    bad = tmp_path / "bad.gz"
    with gzip.open(bad, "wb") as f:
        f.write(np.array([2049, 3], ">u4").tobytes() + bytes(3))
    with pytest.raises(ValueError, match="magic 2049"):
        fashion._read_idx(bad, 2051, 3)
    with gzip.open(bad, "wb") as f:
        f.write(np.array([2049, 4], ">u4").tobytes() + bytes(3))
    with pytest.raises(ValueError, match="holds 3 values"):
        fashion._read_idx(bad, 2049, 1)


def test_models_are_cached_with_named_layers(models):
    pytest.importorskip("atlas_onnx")
    from atlas_core.models import open_model
    start = time.perf_counter()
    assert fashion.fashion_models() == models  # from the cache
    assert time.perf_counter() - start < 1
    for path in models.values():
        assert path.is_file() and path.with_name(path.name + ".input.json").is_file()
        model = open_model(path)
        assert model.input_spec.size == (28, 28) and model.input_spec.channels == 1
        layers = {x.name: x for x in model.layers()}
        assert set(fashion.LAYERS) <= set(layers) and layers["relu1"].bounds == (0.0, None)
    metrics = fashion.fashion_metrics()
    assert metrics["healthy"]["test_accuracy"] > 0.85
    assert metrics["memorize"]["train_accuracy"] == 1.0
    assert metrics["memorize"]["test_accuracy"] < metrics["healthy"]["test_accuracy"] - 0.03
    assert metrics["dead"]["test_accuracy"] < metrics["healthy"]["test_accuracy"]


def dead_share(report):
    return sum(len(e["dead"]) for e in report.values()) / sum(e["channels"] for e in report.values())


def test_dead_relu_model_has_far_more_dead_channels(reports):
    healthy, dead = dead_share(reports["healthy"]), dead_share(reports["dead"])
    assert healthy < 0.05 and dead > 0.3, (healthy, dead)
    assert len(reports["dead"]["relu4"]["dead"]) > len(reports["healthy"]["relu4"]["dead"]) + 30


def test_memorizing_model_is_separable_from_held_out_images_in_its_last_layers(reports):
    mem = [reports["memorize"][n]["holdout_separability"] for n in fashion.LAYERS]
    healthy = [reports["healthy"][n]["holdout_separability"] for n in fashion.LAYERS]
    assert all(abs(s - 0.5) < 0.03 for s in healthy), healthy
    assert all(abs(s - 0.5) < 0.03 for s in mem[:3]), mem  # the convolutions generalize
    assert mem[3] > 0.6 and mem[4] > mem[3], mem  # the dense layer and the logits remember the training set
