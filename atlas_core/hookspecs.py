"""Hook specifications: the whole plugin API of the core.

A plugin is a module (or object) with functions marked ``@atlas_core.hookimpl``
whose names match the specs below. It is found through the entry-point group
``atlas_core``. Every hook here is a ``register`` callback hook: the plugin
calls ``register(name, factory)`` once per thing it provides. Registration must
be cheap: ``factory`` is called only when the thing is used, so a plugin
imports its framework inside the factory (or inside the object's methods),
never at module import.

docs/hooks.md repeats these docstrings; a test keeps the two in step.
"""

from __future__ import annotations

from typing import Callable

import pluggy

hookspec = pluggy.HookspecMarker("atlas_core")

Register = Callable[..., None]


@hookspec
def atlas_register_backends(register: Register) -> None:
    """Register model backends: things that open a model and read its layers.

    Call ``register(name, factory, description="...")``. ``factory()`` takes no
    arguments and returns a backend object with:

    - ``name``: str, the same name.
    - ``can_open(source) -> bool``: cheap test, no framework import if it can
      be avoided (look at a file suffix or at ``type(source).__module__``).
    - ``open(source, **options) -> Model``: the model, where ``options`` are
      the input options of the command line (``mean``, ``std``, ``size``,
      ``batch_size``, ``threads``, ``device``); unknown keys are ignored.

    A ``Model`` has ``name`` (str), ``provider`` (what really runs, e.g.
    ``"CPUExecutionProvider"``), ``input_spec`` (:class:`atlas_core.InputSpec`),
    ``layers() -> list[Layer]`` in graph order (:class:`atlas_core.Layer`, shape
    per sample in canonical layout), ``output`` (name of the layer that holds
    the model's final output, or None), and
    ``activations(images, layers) -> dict[str, ndarray]`` that takes float32
    NHWC images in [0, 1] at ``input_spec`` size and returns each named layer as
    float32 NHWC (spatial) or NC (dense). An unknown layer raises
    :class:`atlas_core.UsageError` naming the closest matches.

    Optional, for gradient-based renderers: ``jax_function(layer)`` returns a
    jit-able, differentiable JAX function from float32 NHWC [0, 1] images to
    the layer's canonical activations; ``onnx_model()`` returns an
    ``onnx.ModelProto`` of the model (a renderer can lower it to JAX).

    Collected (not firstresult): every plugin gets the callback.
    """


@hookspec
def atlas_register_reducers(register: Register) -> None:
    """Register reducers: estimators that lay samples out in 2-D.

    Call ``register(name, factory, description="...")``. ``factory(**params)``
    returns an estimator in scikit-learn style: ``__init__`` only stores
    hyperparameters (``n_components=2``, ``random_state=None`` and its own),
    ``fit_transform(X) -> ndarray`` of shape ``(n_samples, n_components)`` is
    where the work (and the framework import) happens. The same
    ``random_state`` on the same data must give the same layout.

    Collected (not firstresult): every plugin gets the callback.
    """


@hookspec
def atlas_register_renderers(register: Register) -> None:
    """Register icon renderers: things that draw one icon per grid cell.

    Call ``register(name, factory, description="...")``. ``factory()`` returns
    a renderer object with ``name`` (str) and
    ``render(request) -> list[PIL.Image.Image]``, one RGB icon of
    ``request.icon_size`` pixels per direction in ``request.directions``, in
    order. ``request`` is an :class:`atlas_core.IconRequest`: the opened model,
    the layer, the cells' directions, their member samples, the samples store
    and the image source, a seed and renderer options. A renderer that cannot
    work with the given model raises :class:`atlas_core.UsageError` with a
    one-line reason and what to use instead.

    Collected (not firstresult): every plugin gets the callback.
    """
