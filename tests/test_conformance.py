"""Every installed registration, of every family, runs through its check of the conformance kit.

A backend needs an example of what it opens: ``EXAMPLES`` has one for each of this project's backends, and a
backend without one fails here (add its example). Models are real: EfficientNet-Lite0 with its ImageNet weights.
"""

from __future__ import annotations

import argparse

import numpy as np
import pytest

from atlas_core import INPUT, IconRequest
from atlas_core.contracts import Backend, Command, GradientProvider, ImageSource
from atlas_core.plugins import get_registry
from atlas_core.testing import (NumpyModel, check_backend, check_exporter, check_gradients, check_reducer,
                                check_renderer, tiny_images)

REGISTRY = get_registry()
EARLY = "add_140"  # EfficientNet-Lite0: 56 x 56 x 24, cheap to differentiate


def _lite0_path():
    atlas_demo = pytest.importorskip("atlas_demo")
    return str(atlas_demo.efficientnet_lite0_onnx("dynamo"))


def _jax_model():
    from atlas_core import IMAGENET_MEAN, IMAGENET_STD, InputSpec
    from atlas_jax import JaxModel
    from atlas_jax.lowering import OnnxGraph
    graph = OnnxGraph(_lite0_path())
    names = [EARLY, "logits"]
    f = graph.function(names)
    spec = InputSpec(layout="NCHW", height=224, width=224, mean=IMAGENET_MEAN, std=IMAGENET_STD)
    return JaxModel(lambda p, x: dict(zip(names, f(p, x))), graph.params, input_spec=spec, name="lite0-jax",
                    output="logits", layout="NCHW")


def _torch_model():
    return pytest.importorskip("atlas_demo").efficientnet_lite0()


EXAMPLES = {  # backend -> (source, open options, layers to check)
    "onnx": lambda: (_lite0_path(), {"preset": "imagenet"}, [EARLY, "logits"]),
    "onnx-jax": lambda: (_lite0_path(), {"preset": "imagenet"}, [EARLY, "logits"]),
    "jax": lambda: (_jax_model(), {}, [EARLY, "logits"]),
    "torch": lambda: (_torch_model(), {"preset": "imagenet"}, ["_blocks.2", "output"]),
}


def _names(family):
    return REGISTRY.names(family)


def _photos():
    return pytest.importorskip("atlas_demo").photo_batch()[:2]


@pytest.mark.parametrize("name", _names("backends"))
def test_backend(name):
    assert name in EXAMPLES, f"backend {name!r} has no example in tests/test_conformance.py: add one"
    source, options, layers = EXAMPLES[name]()
    backend = REGISTRY.backend(name)
    assert isinstance(backend, Backend)
    from atlas_core.models import input_options
    model = check_backend(backend, source, images=_photos(), layers=layers, **input_options(source, **options))
    assert model.identity == backend.open(source, **input_options(source, **options)).identity  # stable


@pytest.mark.parametrize("name", _names("reducers"))
def test_reducer(name):
    if name.startswith("cuml"):
        pytest.importorskip("cuml", reason="RAPIDS cuML is not installed (it needs an NVIDIA GPU)")
    check_reducer(REGISTRY.get("reducers", name).factory)


def _request(renderer, tmp_path):
    """A level of real cells: the tiny model for exemplar-style renderers, EfficientNet-Lite0 where gradients
    in JAX are needed."""
    from atlas_core.gradients import gradients
    if "gradients" not in renderer.requires:
        state = __import__("atlas_core.testing", fromlist=["tiny_build"]).tiny_build(tmp_path / "atlas")
        level = state.levels[-1]
        return IconRequest(model=state.model, layer="conv2", directions=level.directions,
                           members=[c.members for c in level.cells], store=state.store, images=state.source,
                           icon_size=24, receptive_field=state.receptive_field, moment=state.store.moment())
    from atlas_core.models import open_model
    model = open_model(_lite0_path())
    acts = model.activations(_photos(), [EARLY])[EARLY][:, 10:-10, 10:-10].reshape(-1, 24)
    directions = np.stack([acts[k::97].mean(0) for k in range(3)]).astype(np.float32)
    options = {k: v for k, v in {"steps": 2, "attempts": 1, "batch": 3, "view": "icon"}.items()
               if k in renderer.options}
    return IconRequest(model=model, layer=EARLY, directions=directions, icon_size=16, options=options,
                       moment=acts.T @ acts / len(acts), gradients=gradients(model))


@pytest.mark.parametrize("name", _names("renderers"))
def test_renderer(name, tmp_path):
    renderer = REGISTRY.renderer(name)
    check_renderer(renderer, _request(renderer, tmp_path))


@pytest.mark.parametrize("name", _names("exporters"))
def test_exporter(name, tmp_path):
    written = check_exporter(REGISTRY.exporter(name), workdir=tmp_path)
    assert written


@pytest.mark.parametrize("name", _names("gradients"))
def test_gradient_provider(name):
    provider = REGISTRY.create("gradients", name)
    assert isinstance(provider, GradientProvider)
    assert provider.can_differentiate(object()) is False
    from atlas_core.models import open_model
    model = open_model(_lite0_path())  # onnxruntime's model: no gradients of its own
    if not provider.can_differentiate(model):
        pytest.skip(f"{name} does not differentiate ONNX models")
    check_gradients(provider.differentiate(model), model, _photos()[:1], EARLY)


@pytest.mark.parametrize("name", _names("sources"))
def test_source(name):
    source = REGISTRY.create("sources", name)
    assert isinstance(source, ImageSource) and len(source) > 0
    image = source.load(0, (32, 32))
    assert image.shape == (32, 32, 3) and image.dtype == np.float32 and 0 <= image.min() <= image.max() <= 1
    assert isinstance(source.identity(), str) and source.identity() == REGISTRY.create("sources", name).identity()


@pytest.mark.parametrize("name", _names("commands"))
def test_command(name):
    command = REGISTRY.create("commands", name)
    assert isinstance(command, Command)
    parser = argparse.ArgumentParser(prog=f"atlas {name}")
    command.add_arguments(parser)
    assert parser.format_help() and callable(command.run)


@pytest.mark.parametrize("name", _names("executors"))
def test_executor(name, tmp_path):
    from atlas_core.contracts import Executor
    from atlas_core.testing import tiny_build
    executor = REGISTRY.create("executors", name)
    assert isinstance(executor, Executor) and isinstance(dict(executor.options), dict)
    if name != "local":
        pytest.skip(f"{name} runs its own tests")
    state = tiny_build(tmp_path / "a", executor=name)
    assert state.store.complete() and len(state.store) == 96


def test_numpy_model_conforms():
    """The kit's own tiny model meets the Model contract, its gradients included."""
    from atlas_core.testing import check_model
    model = check_model(NumpyModel(), images=tiny_images(3), layers=["conv2", "logits"])
    grads = model.gradients()
    assert grads.supports("conv2", ["logits"]) is None and grads.supports("logits", ["conv1"])
    check_gradients(grads, model, tiny_images(1), "conv2")
    a = model.activations(tiny_images(2), ["conv2"])["conv2"]
    value, derivative = grads.jvp("conv2", ["logits"], a, a)["logits"]
    np.testing.assert_allclose(derivative, value - model.params["b3"], rtol=1e-4, atol=1e-5)  # ReLU is homogeneous
    assert INPUT.startswith("@")
