"""Conformance kit for plugin authors, in the spirit of scikit-learn's ``check_estimator``.

Call ``check_backend``, ``check_reducer`` and ``check_renderer`` from your
plugin's tests; each raises ``AssertionError`` with a precise message when the
object breaks the contract of docs/hooks.md. The pytest fixtures here
(installed as a pytest plugin) give an isolated plugin manager that discovers
nothing.
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Iterable, Optional

import numpy as np
import pytest
from PIL import Image

from .plugins import Registry, load, make_manager
from .types import IconRequest, InputSpec, Layer, UsageError

HEAVY_MODULES = ("onnxruntime", "onnx", "jax", "torch", "sklearn", "umap", "openTSNE", "numba")


# -- fixtures -----------------------------------------------------------------
@pytest.fixture
def atlas_plugin_manager():
    """A pluggy manager with the hookspecs and no plugin at all."""
    return make_manager()


@pytest.fixture
def atlas_registry():
    """Build an isolated registry: built-ins plus the plugins you pass, no entry points.

    Usage: ``registry = atlas_registry(my_plugin_module)``.
    """

    def build(*plugins) -> Registry:
        return load(entry_points=False,
                    extra=tuple((getattr(p, "__name__", repr(p)), p) for p in plugins))

    return build


# -- checks ---------------------------------------------------------------------
def _random_images(spec: InputSpec, n: int, seed: int = 0) -> np.ndarray:
    h, w = spec.size or (64, 64)
    return np.random.default_rng(seed).random((n, h, w, 3), dtype=np.float32)


def check_backend(backend, source, images: Optional[np.ndarray] = None,
                  layers: Optional[Iterable[str]] = None, **options) -> object:
    """Open ``source`` with ``backend`` and check the Model contract; returns the model."""
    assert isinstance(backend.name, str) and backend.name, "backend.name must be a non-empty str"
    assert backend.can_open(source) is True, f"{backend.name} says it cannot open {source!r}"
    assert backend.can_open(object()) is False, "can_open must be False for an arbitrary object"
    model = backend.open(source, **options)
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
    return model


def check_reducer(factory, n_samples: int = 120, n_features: int = 16, **params) -> None:
    """Check a reducer factory against scikit-learn's estimator conventions."""
    est = factory(n_components=2, random_state=0, **params)
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
    """Render ``request`` and check one RGB icon of the right size per direction."""
    assert isinstance(renderer.name, str) and renderer.name, "renderer.name must be a non-empty str"
    icons = renderer.render(request)
    assert isinstance(icons, list) and len(icons) == len(request.directions), \
        f"render must return one icon per direction ({len(request.directions)}), got {len(icons)}"
    for icon in icons:
        assert isinstance(icon, Image.Image), "each icon must be a PIL image"
        assert icon.mode == "RGB", f"icons must be RGB, got {icon.mode}"
        assert icon.size == (request.icon_size, request.icon_size), \
            f"icons must be {request.icon_size}px square, got {icon.size}"
    return icons


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
