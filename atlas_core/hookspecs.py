"""Hook specifications: the whole plugin API of the core.

A plugin is a module (or object) with functions marked ``@atlas_core.hookimpl``
whose names match the specs below. It is found through the entry-point group
``atlas_core``. Every hook here is a ``register`` callback hook: the plugin
calls ``register(name, factory, description="...")`` once per thing it
provides. Registration must be cheap: ``factory`` is called only when the
thing is used, so a plugin imports its framework inside the factory (or inside
the object's methods), never at module import. The objects' contracts are the
protocols of :mod:`atlas_core.contracts`.

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

    Call ``register(name, factory, description="...", priority=0)``.
    ``factory()`` takes no arguments and returns a
    :class:`atlas_core.contracts.Backend`, whose ``open`` returns a
    :class:`atlas_core.contracts.Model`. When the user names no backend, the
    backends that can open the source are tried by descending ``priority``
    (then by name): give the fast inference path of a format a higher priority
    than an alternative one (the ONNX backend is 10, ONNX lowered to JAX 0).

    Collected (not firstresult): every plugin gets the callback.
    """


@hookspec
def atlas_register_reducers(register: Register) -> None:
    """Register reducers: estimators that lay samples out in 2-D.

    Call ``register(name, factory, description="...")``. ``factory(**params)``
    returns a :class:`atlas_core.contracts.Reducer`, an estimator in
    scikit-learn style: ``__init__`` only stores hyperparameters
    (``n_components=2``, ``random_state=None`` and its own),
    ``fit_transform(X) -> ndarray`` of shape ``(n_samples, n_components)`` is
    where the work (and the framework import) happens. The same
    ``random_state`` on the same data must give the same layout. A parameter
    that its ``__init__`` does not take is refused before any work is done.

    Collected (not firstresult): every plugin gets the callback.
    """


@hookspec
def atlas_register_renderers(register: Register) -> None:
    """Register icon renderers: things that draw one icon per grid cell.

    Call ``register(name, factory, description="...")``. ``factory()`` returns
    a :class:`atlas_core.contracts.Renderer`: ``name``, ``options`` (every
    option it takes, with its default), ``requires`` (what it needs from the
    icons stage: ``receptive_field``, ``gradients``) and
    ``render(request) -> list[PIL.Image.Image]``, one RGB icon of
    ``request.icon_size`` pixels per direction in ``request.directions``, in
    order. ``request`` is an :class:`atlas_core.IconRequest`. A renderer that
    cannot work with the given model raises :class:`atlas_core.UsageError`
    with a one-line reason and what to use instead.

    Collected (not firstresult): every plugin gets the callback.
    """


@hookspec
def atlas_register_exporters(register: Register) -> None:
    """Register exporters: things that write files from a built atlas.

    Call ``register(name, factory, description="...")``. ``factory()`` returns
    a :class:`atlas_core.contracts.Exporter`: ``name``, ``order`` and
    ``export(build, out) -> list[str]``. ``atlas build`` runs every registered
    exporter (or those named by ``--exporters``) in ascending ``order`` after
    the other stages; the built-in ones are ``manifest`` (atlas.json and its
    arrays, order 0), ``mosaic`` (atlas.png, 10) and ``viewer`` (index.html,
    20).

    Collected (not firstresult): every plugin gets the callback.
    """


@hookspec
def atlas_register_executors(register: Register) -> None:
    """Register collection executors: things that collect the missing chunks of a samples store.

    Call ``register(name, factory, description="...")``. ``factory()`` returns
    a :class:`atlas_core.contracts.Executor`: ``name``, ``options`` (every
    option it takes, with its default) and ``collect(state, chunks,
    progress)``. The built-in ``local`` executor collects in the build's own
    process; another (``atlas build --executor ray``) may send
    ``atlas_core.stages.collect.CollectTask.from_state(state)`` (plain data) to
    workers, each of which opens it once (``task.open()``) and calls
    ``collect(k)`` for its chunks. Chunks are written atomically and may come
    in any order; a chunk that is not written is collected by the next run.

    Collected (not firstresult): every plugin gets the callback.
    """


@hookspec
def atlas_register_gradients(register: Register) -> None:
    """Register gradient providers: things that give a model a gradient capability it lacks.

    Call ``register(name, factory, description="...", priority=0)``.
    ``factory()`` returns a :class:`atlas_core.contracts.GradientProvider`.
    A model's own ``gradients()`` comes first; otherwise the providers whose
    ``can_differentiate(model)`` is true are tried by descending ``priority``.
    What they give is a :class:`atlas_core.contracts.Differentiable`.

    Collected (not firstresult): every plugin gets the callback.
    """


@hookspec
def atlas_register_sources(register: Register) -> None:
    """Register named image sources, used as ``--images NAME``.

    Call ``register(name, factory, description="...")``. ``factory()`` returns
    an :class:`atlas_core.contracts.ImageSource`. A path that exists on disk
    takes precedence over a registered name.

    Collected (not firstresult): every plugin gets the callback.
    """


@hookspec
def atlas_register_commands(register: Register) -> None:
    """Register subcommands of ``atlas``.

    Call ``register(name, factory, description="...")``. ``factory()`` returns
    an :class:`atlas_core.contracts.Command`: ``add_arguments(parser)`` (an
    argparse parser; import no framework there: every command's arguments are
    declared whenever ``atlas`` starts) and ``run(args) -> int``.

    Collected (not firstresult): every plugin gets the callback.
    """
