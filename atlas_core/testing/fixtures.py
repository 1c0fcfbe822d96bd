"""pytest fixtures of the conformance kit (installed as the pytest plugin ``atlas_core``)."""

from __future__ import annotations

import pytest

from ..plugins import Registry, load, make_manager
from .numpy_model import NumpyModel


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


@pytest.fixture
def atlas_numpy_model():
    """The conformance kit's tiny numpy network (32 px input)."""
    return NumpyModel()
