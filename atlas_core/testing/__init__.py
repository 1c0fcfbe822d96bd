"""Conformance kit for plugin authors, in the spirit of scikit-learn's ``check_estimator``.

Call ``check_backend``, ``check_reducer``, ``check_renderer`` and ``check_exporter`` from your plugin's tests
(or from any script: this module does not import pytest); each raises ``AssertionError`` with a precise
message when the object breaks its contract (:mod:`atlas_core.contracts`, docs/hooks.md). ``NumpyModel`` is a
tiny real network for tests that need a model but no framework. The pytest fixtures (``atlas_plugin_manager``,
``atlas_registry``, ``atlas_numpy_model``) live in :mod:`atlas_core.testing.fixtures`, installed as a pytest
plugin.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Iterable, Optional

import numpy as np
from PIL import Image

from ..contracts import Differentiable, Exporter, Model, Renderer
from ..types import INPUT, IconRequest, InputSpec, Layer, UsageError
from .numpy_model import NumpyModel

HEAVY_MODULES = ("onnxruntime", "onnx", "jax", "torch", "sklearn", "umap", "openTSNE", "numba", "ray")


# -- checks ---------------------------------------------------------------------
def _random_images(spec: InputSpec, n: int, seed: int = 0) -> np.ndarray:
    h, w = spec.size or (64, 64)
    return np.random.default_rng(seed).random((n, h, w, 3), dtype=np.float32)


def check_backend(backend, source, images: Optional[np.ndarray] = None,
                  layers: Optional[Iterable[str]] = None, **options) -> object:
    """Open ``source`` with ``backend`` and check the Backend and Model contracts; returns the model."""
    assert isinstance(backend.name, str) and backend.name, "backend.name must be a non-empty str"
    assert backend.can_open(source) is True, f"{backend.name} says it cannot open {source!r}"
    assert backend.can_open(object()) is False, "can_open must be False for an arbitrary object"
    model = backend.open(source, **options)
    check_model(model, images, layers)
    batch = getattr(model, "batch_size", None)
    if isinstance(batch, int) and batch >= 1:  # a batch larger than the backend's own
        again = backend.open(source, **dict(options, batch_size=2))
        wanted = list(layers)[:1] if layers else [model.layers()[len(model.layers()) // 2].name]
        x = _random_images(model.input_spec, 5, seed=1)
        whole = again.activations(x, wanted)[wanted[0]]
        one = np.concatenate([again.activations(x[i:i + 1], wanted)[wanted[0]] for i in range(5)])
        assert whole.shape[0] == 5, "a batch larger than batch_size must give one row per image"
        np.testing.assert_allclose(whole, one, rtol=1e-4, atol=1e-4,
                                   err_msg="images must not change each other's activations across batches")
    return model


def check_model(model, images: Optional[np.ndarray] = None, layers: Optional[Iterable[str]] = None) -> object:
    """Check an opened model against the Model contract; returns it."""
    assert isinstance(model, Model), f"{type(model).__name__} lacks part of the Model contract " \
        f"({', '.join(a for a in ('name', 'identity', 'provider', 'input_spec', 'output', 'layers', 'activations') if not hasattr(model, a))})"
    assert isinstance(model.identity, str) and model.identity, "model.identity must be a non-empty str"
    assert isinstance(model.input_spec, InputSpec), "model.input_spec must be an InputSpec"
    assert isinstance(model.provider, str) and model.provider, "model.provider must name what runs"
    found = model.layers()
    assert found and all(isinstance(layer, Layer) for layer in found), "layers() must list Layer objects"
    names = [layer.name for layer in found]
    assert len(set(names)) == len(names), "layer names must be unique"
    by_name = {layer.name: layer for layer in found}
    if model.output is not None:
        assert model.output in by_name, "model.output must be one of its layers"
    wanted = list(layers) if layers else [names[len(names) // 2], names[-1]]
    if images is None:
        images = _random_images(model.input_spec, 2)
    acts = model.activations(images, wanted)
    assert set(acts) == set(wanted), f"activations() returned {sorted(acts)}, asked for {wanted}"
    for name in wanted:
        a = acts[name]
        assert isinstance(a, np.ndarray) and a.dtype == np.float32, f"{name}: must be float32 ndarray"
        assert a.shape[0] == len(images), f"{name}: first axis must be the batch"
        assert a.ndim in (2, 4), f"{name}: must be NHWC or NC, got shape {a.shape}"
        shape = by_name[name].shape
        if shape is not None:  # None marks a dimension the graph leaves open
            assert len(a.shape) - 1 == len(shape) and all(
                want is None or want == got for want, got in zip(shape, a.shape[1:])), \
                f"{name}: layers() says {tuple(shape)}, activations() gave {a.shape[1:]}"
    again = model.activations(images, wanted[:1])
    np.testing.assert_allclose(again[wanted[0]], acts[wanted[0]], rtol=1e-5, atol=1e-5,
                               err_msg="activations must not depend on which other layers are asked for")
    try:
        model.activations(images, ["no-such-layer-xyz"])
    except UsageError:
        pass
    else:
        raise AssertionError("an unknown layer must raise atlas_core.UsageError")
    empty = model.activations(images[:0], wanted[:1])[wanted[0]]
    assert isinstance(empty, np.ndarray) and empty.shape[0] == 0, "an empty batch must give zero rows"
    own = getattr(model, "gradients", None)
    if callable(own) and own() is not None:  # checked on the first layer: the cheapest to differentiate
        check_gradients(own(), model, images[:1], found[0].name)
    return model


def check_gradients(grads, model, images: np.ndarray, layer: str, eps: float = 1e-4) -> None:
    """Check a Differentiable: it supports input -> ``layer``, and its JVP matches a finite difference."""
    assert isinstance(grads, Differentiable), "gradients() must give a Differentiable (atlas_core.contracts)"
    assert isinstance(grads.engine, str) and grads.engine, "Differentiable.engine must name the engine"
    reason = grads.supports(INPUT, [layer])
    assert reason is None, f"gradients from the input to {layer!r} must be supported, got: {reason}"
    assert isinstance(grads.supports(INPUT, ["no-such-layer-xyz"]), str), "an unknown target must give a reason"
    x = np.asarray(images[:1], np.float32)
    tangent = np.random.default_rng(0).standard_normal(x.shape).astype(np.float32)
    value, derivative = grads.jvp(INPUT, [layer], x, tangent)[layer]
    np.testing.assert_allclose(value, model.activations(x, [layer])[layer], rtol=1e-3, atol=1e-3,
                               err_msg="the JVP's value must be the layer's activation")
    plus = model.activations(x + eps * tangent, [layer])[layer]
    minus = model.activations(x - eps * tangent, [layer])[layer]
    estimate = (plus - minus) / (2 * eps)
    corr = np.corrcoef(np.ravel(derivative), np.ravel(estimate))[0, 1]
    assert corr > 0.95, f"the JVP must match a finite difference (correlation {corr:.3f})"
    cotangent = np.random.default_rng(1).standard_normal(value.shape).astype(np.float32)
    gradient = grads.vjp(INPUT, layer, x, cotangent)
    assert gradient.shape == x.shape, f"vjp must give the source's shape {x.shape}, got {gradient.shape}"
    forward = float(np.sum(derivative.astype(np.float64) * cotangent))
    backward = float(np.sum(gradient.astype(np.float64) * tangent))
    assert abs(forward - backward) <= 1e-3 * max(abs(forward), abs(backward), 1e-6), \
        f"<vjp(u), t> must equal <u, jvp(t)> ({backward} vs {forward})"


def check_reducer(factory, n_samples: int = 120, n_features: int = 16, **params) -> None:
    """Check a reducer factory against scikit-learn's estimator conventions."""
    from ..reducers import param_names
    est = factory(n_components=2, random_state=0, **params)
    names = param_names(type(est))
    assert {"n_components", "random_state"} <= set(names), \
        f"__init__ must take n_components and random_state (it takes {names})"
    try:
        factory(n_components=2, random_state=0, no_such_parameter_xyz=1)
    except (TypeError, UsageError):
        pass
    else:
        raise AssertionError("an unknown hyperparameter must be refused (TypeError or UsageError)")
    assert not [k for k in vars(est) if k.endswith("_") and not k.startswith("_")], \
        "__init__ must not set fitted attributes (names ending in _)"
    assert getattr(est, "random_state", "missing") == 0, "__init__ must store random_state as given"
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(3, n_features)) * 4
    X = (centres[rng.integers(0, 3, n_samples)] + rng.normal(size=(n_samples, n_features))).astype(np.float32)
    X = np.abs(X)  # activations after ReLU are non-negative; cosine reducers need non-zero rows
    Y = np.asarray(est.fit_transform(X))
    assert Y.shape == (n_samples, 2), f"fit_transform must return (n_samples, 2), got {Y.shape}"
    assert np.isfinite(Y).all(), "layout must be finite"
    assert np.ptp(Y, axis=0).min() > 0, "layout must not collapse to a line or a point"
    Y2 = np.asarray(factory(n_components=2, random_state=0, **params).fit_transform(X))
    np.testing.assert_allclose(Y, Y2, rtol=1e-4, atol=1e-4,
                               err_msg="the same random_state on the same data must give the same layout")


def check_renderer(renderer, request: IconRequest) -> list:
    """Render ``request`` and check one RGB icon of the right size per direction, its declared options and
    needs, an empty request, and that an unknown option is refused."""
    from ..options import route
    from ..stages.icons import KNOWN_NEEDS
    assert isinstance(renderer, Renderer), f"{type(renderer).__name__} lacks part of the Renderer contract " \
        "(name, options, requires, render)"
    assert isinstance(renderer.name, str) and renderer.name, "renderer.name must be a non-empty str"
    assert set(renderer.requires) <= KNOWN_NEEDS, f"requires must be among {sorted(KNOWN_NEEDS)}"
    try:
        route({"no_such_option_xyz": 1}, {renderer.name: renderer})
    except UsageError:
        pass
    else:
        raise AssertionError("an undeclared option must be refused")
    options = route(request.options or {}, {renderer.name: renderer})[renderer.name]
    request = IconRequest(**dict(vars(request), options=options))
    empty = renderer.render(IconRequest(**dict(vars(request), directions=request.directions[:0], members=[],
                                              progress=None)))
    assert list(empty) == [], "an empty request must give no icons"
    icons = renderer.render(request)
    assert isinstance(icons, list) and len(icons) == len(request.directions), \
        f"render must return one icon per direction ({len(request.directions)}), got {len(icons)}"
    for icon in icons:
        assert isinstance(icon, Image.Image), "each icon must be a PIL image"
        assert icon.mode == "RGB", f"icons must be RGB, got {icon.mode}"
        assert icon.size == (request.icon_size, request.icon_size), \
            f"icons must be {request.icon_size}px square, got {icon.size}"
    return icons


def check_exporter(exporter, workdir=None) -> list:
    """Build a tiny atlas (the numpy model, built-in stages), run ``exporter`` on it and check that what it
    says it wrote exists inside the atlas folder; returns those paths."""
    assert isinstance(exporter, Exporter), f"{type(exporter).__name__} lacks part of the Exporter contract " \
        "(name, order, export)"
    assert isinstance(exporter.name, str) and exporter.name and isinstance(exporter.order, int)
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        state = tiny_build(Path(tmp) / "atlas", exporters=("manifest",))
        before = (state.out / "atlas.json").read_bytes()
        written = list(exporter.export(state, state.out) or [])
        for rel in written:
            path = (state.out / rel).resolve()
            assert state.out.resolve() in path.parents, f"{rel} is outside the atlas folder"
            assert path.exists(), f"the exporter says it wrote {rel}, which does not exist"
        if exporter.name != "manifest":
            assert (state.out / "atlas.json").read_bytes() == before, "only the manifest exporter writes atlas.json"
    return written


def tiny_images(n: int = 48, size: int = 32, seed: int = 0) -> np.ndarray:
    """Small images of colour blobs and stripes, for the numpy model."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    out = np.empty((n, size, size, 3), np.float32)
    for i in range(n):
        colour = rng.random(3)
        freq = rng.integers(1, 6)
        angle = rng.random() * np.pi
        stripes = 0.5 + 0.5 * np.sin(2 * np.pi * freq * (np.cos(angle) * xx + np.sin(angle) * yy))
        out[i] = np.clip(colour * stripes[..., None] + 0.1 * rng.random((size, size, 3)), 0, 1)
    return out


def tiny_build(out, model=None, images=None, **options):
    """Build an atlas of the numpy model's ``conv2`` into ``out`` (PCA, exemplar icons, small grids) and return
    the build's state (:class:`atlas_core.stages.state.BuildState`)."""
    from ..stages import build_state
    options = dict(dict(reducer="pca", levels=(2, 4), min_count=2, samples_per_image=2, quiet=True), **options)
    return build_state(model or NumpyModel(), tiny_images() if images is None else images, "conv2", out,
                       **options)


def check_registration_is_lazy(module: str) -> None:
    """Import plugin ``module`` and run its register hooks in a fresh interpreter;
    fail if any framework got imported."""
    code = (
        "import json, sys, importlib\n"
        "from atlas_core.plugins import load\n"
        f"m = importlib.import_module({module!r})\n"
        "load(entry_points=False, extra=(('p', m),))\n"
        f"print(json.dumps([x for x in {list(HEAVY_MODULES)!r} if x in sys.modules]))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    heavy = json.loads(out.stdout.strip().splitlines()[-1])
    assert not heavy, f"registering {module} imported {heavy}: import frameworks on first use"
