"""The gradient capability of a model: its own, or one that a gradient provider plugin gives it.

``gradients(model)`` is the one place the core asks; renderers and stages get the answer handed to them.
A model's own ``gradients()`` comes first, then the registered providers by priority (the JAX plugin lowers
an ONNX graph, also a torch model's export, to JAX). The capability is made once per model object.
"""

from __future__ import annotations

import weakref
from typing import Optional

from .contracts import Differentiable
from .types import UsageError

_MADE: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def gradients(model, registry=None) -> Optional[Differentiable]:
    """The model's :class:`~atlas_core.contracts.Differentiable`, or None if nothing installed can give one."""
    try:
        if model in _MADE:
            return _MADE[model]
    except TypeError:  # an unhashable or non-weakref-able model: no caching
        pass
    own = getattr(model, "gradients", None)
    found = own() if callable(own) else None
    if found is None:
        if registry is None:
            from .plugins import get_registry
            registry = get_registry()
        for reg in registry.ordered("gradients"):
            provider = reg.factory()
            if provider.can_differentiate(model):
                found = provider.differentiate(model)
                break
    try:
        _MADE[model] = found
    except TypeError:
        pass
    return found


def require(model, source: str, targets, what: str, instead: str, registry=None) -> Differentiable:
    """The capability, checked to support ``source`` -> ``targets``; otherwise a one-line UsageError saying
    what needs it and what to do instead."""
    found = gradients(model, registry)
    if found is None:
        raise UsageError(f"{what} needs gradients, and no installed plugin can differentiate this "
                         f"{type(model).__name__} (pip install ./plugins/jax gives them to ONNX, torch and JAX "
                         f"models); {instead}")
    reason = found.supports(source, list(targets))
    if reason:
        raise UsageError(f"{what}: {reason}; {instead}")
    return found
