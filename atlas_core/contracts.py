"""The contracts between the core and its plugins, as ``typing.Protocol`` classes.

The conformance kit (:mod:`atlas_core.testing`) checks objects against these, and docs/hooks.md shows their
docstrings. The core depends on these shapes only, never on a plugin's classes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Optional, Protocol, Sequence, runtime_checkable

import numpy as np

from .types import InputSpec, Layer


@runtime_checkable
class Model(Protocol):
    """An opened model whose tensors can be read.

    - ``name``: a short name for people (the file name).
    - ``identity``: what the model computes, as a string that changes when it does: a hash of the model file
      and its external data, or of an object's weights. Samples are reused only for the same identity.
    - ``provider``: what really runs, e.g. ``"CPUExecutionProvider"``.
    - ``input_spec``: how canonical images map to the model's input.
    - ``output``: the layer that holds the model's final output (a classifier's logits), or None.
    - ``layers()``: every tappable tensor in graph order, shapes per sample in canonical layout.
    - ``activations(images, layers)``: float32 NHWC images in [0, 1] at ``input_spec`` size to each named
      layer as float32 NHWC (spatial) or NC (dense); any batch size, an empty batch included. An unknown
      layer raises :class:`atlas_core.UsageError` naming the closest matches.

    Optional: ``class_names()`` (a list of the output's class names, or None), ``gradients()`` (a
    :class:`Differentiable`, or None: the model's own gradient capability; a gradient provider plugin can
    give one to models that lack it), and ``native_activations(images, layers) -> {name: (array,
    channel_axis)}`` (the layers in the graph's own layout, without the copy to NHWC, for statistics that do
    not care about the layout: ``atlas health`` uses it where it exists). A listed ``Layer`` may carry
    ``bounds``, the range its op bounds its output to (for saturation).
    """

    name: str
    identity: str
    provider: str
    input_spec: InputSpec
    output: Optional[str]

    def layers(self) -> list[Layer]: ...

    def activations(self, images: np.ndarray, layers: Sequence[str]) -> dict[str, np.ndarray]: ...


@runtime_checkable
class Backend(Protocol):
    """Opens models of one kind.

    - ``name``: the registered name.
    - ``can_open(source) -> bool``: a cheap test, with no framework import where it can be avoided (a file
      suffix, ``type(source).__module__``).
    - ``open(source, **options) -> Model``: ``options`` are the input options of the command line
      (``mean``, ``std``, ``scale``, ``size``, ``layout``, ``batch_size``, ``threads``, ``device``); unknown
      keys are ignored.
    """

    name: str

    def can_open(self, source: Any) -> bool: ...

    def open(self, source: Any, **options: Any) -> Model: ...


@runtime_checkable
class TensorFunction(Protocol):
    """A differentiable function of one engine: ``apply(params, x)`` returns ``{target: value}``.

    ``x`` is canonical: images (NHWC in [0, 1]) when the source is the input, a layer's canonical
    activations otherwise. ``params`` is what ``apply`` needs besides ``x`` (weights on the engine's device);
    pass it as an argument when compiling so that the weights are not folded into the program.
    ``input_size`` is the (height, width) of images ``apply`` was made for, or None for any size.
    """

    engine: str
    source: str
    targets: tuple
    params: Any
    input_size: Optional[tuple]

    def apply(self, params: Any, x: Any) -> dict: ...


@runtime_checkable
class Differentiable(Protocol):
    """A model's gradient capability: differentiable functions between two of its tensors.

    - ``engine``: what computes the derivatives (``"jax"``, ``"numpy"``).
    - ``supports(source, targets) -> Optional[str]``: None if a function from ``source`` (a layer name, or
      :data:`atlas_core.types.INPUT` for the model's input) to the ``targets`` (layer names) can be given,
      otherwise a one-line reason.
    - ``function(source, targets) -> TensorFunction``: the function itself, in the engine's own terms (for
      renderers written for that engine).
    - ``jvp(source, targets, x, tangent, relax_maxpool=False) -> dict``: forward-mode derivatives in numpy
      terms: ``x`` and ``tangent`` are canonical arrays of the source (one row per item; ``tangent`` may
      instead hold K tangents per row, shape (rows, K, ...), which share the row's evaluation), the result maps
      each target to (value, derivative along each tangent), both numpy with one row per item; ``relax_maxpool``
      gives every max-pool the derivative of an average pool over the same windows (the reference's
      relaxation for attribution). Framework-neutral: the core's stages use this one.
    - ``vjp(source, target, x, cotangent, relax_maxpool=False) -> ndarray``: reverse mode in numpy terms: the
      gradient with respect to ``x`` (canonical rows of the source) of the dot product of ``target`` with
      ``cotangent`` (canonical rows of the target, or (rows, K, ...) for K cotangents per row, which share the
      row's evaluation); the result has ``x``'s shape, or (rows, K) + a row's shape.
    """

    engine: str

    def supports(self, source: str, targets: Sequence[str]) -> Optional[str]: ...

    def function(self, source: str, targets: Sequence[str]) -> TensorFunction: ...

    def jvp(self, source: str, targets: Sequence[str], x: np.ndarray, tangent: np.ndarray,
            relax_maxpool: bool = False) -> dict: ...

    def vjp(self, source: str, target: str, x: np.ndarray, cotangent: np.ndarray,
            relax_maxpool: bool = False) -> np.ndarray: ...


@runtime_checkable
class GradientProvider(Protocol):
    """Gives models that have no gradient capability of their own one (for example by lowering their ONNX
    graph to JAX). ``can_differentiate(model) -> bool`` is cheap; ``differentiate(model) -> Differentiable``
    does the work."""

    name: str

    def can_differentiate(self, model: Model) -> bool: ...

    def differentiate(self, model: Model) -> Differentiable: ...


@runtime_checkable
class Reducer(Protocol):
    """A scikit-learn style estimator: ``__init__`` stores hyperparameters only (``n_components``,
    ``random_state`` and its own); ``fit_transform(X)`` returns ``(n_samples, n_components)``; the same
    ``random_state`` on the same data gives the same layout. Its hyperparameters are the arguments of its
    ``__init__``; any other is refused by name."""

    n_components: int
    random_state: Any

    def fit_transform(self, X: np.ndarray) -> np.ndarray: ...


@runtime_checkable
class AlignedReducer(Protocol):
    """A reducer's optional capability: laying out several sets of the same samples at once, aligned (umap-learn's
    ``AlignedUMAP``). ``fit_transform_aligned(Xs)`` takes a list of ``(n_samples, features_k)`` arrays whose row
    ``i`` is the same sample in every set (the features may differ) and returns one ``(n_samples, n_components)``
    layout per set, all in one coordinate system; the same ``random_state`` gives the same layouts. `atlas compare
    --align` measures it against the joint layout where the reducer has it."""

    def fit_transform_aligned(self, Xs: Sequence[np.ndarray]) -> list: ...


@runtime_checkable
class Renderer(Protocol):
    """Draws one icon per grid cell.

    - ``name``: the registered name.
    - ``options``: every option it takes, with its default (``{"steps": 128, ...}``); any other is refused.
    - ``requires``: what the icons stage must give it, from ``{"receptive_field", "gradients"}``.
    - ``render(request) -> list[PIL.Image.Image]``: one RGB icon of ``request.icon_size`` pixels per
      direction of the :class:`atlas_core.IconRequest`, in order.
    """

    name: str
    options: Mapping[str, Any]
    requires: frozenset

    def render(self, request: Any) -> list: ...


@runtime_checkable
class Exporter(Protocol):
    """Writes files from a built atlas.

    - ``name``: the registered name.
    - ``order``: exporters run in ascending order (the manifest is 0, the mosaic 10, the viewer 20; others
      take 50 unless they need to run earlier).
    - ``export(build, out) -> list[str]``: write into folder ``out`` from ``build`` (the
      :class:`atlas_core.stages.state.BuildState`: config, model, layer, source, store, layout, levels with
      their cells, quality, and ``manifest`` once the manifest exporter ran); return the paths written,
      relative to ``out``.
    """

    name: str
    order: int

    def export(self, build: Any, out: Path) -> list: ...


@runtime_checkable
class Executor(Protocol):
    """Collects the missing chunks of a samples store.

    - ``name``: the registered name; ``options``: every option it takes, with its default (``workers``...).
    - ``collect(state, chunks, progress)``: collect chunks ``chunks`` (indices) of ``state.store`` (the build's
      :class:`atlas_core.stages.state.BuildState`, with ``state.executor_options`` checked and defaults filled
      in), calling ``progress(n_images)`` as chunks complete. It returns when every chunk is written or raises;
      chunks it could not write are collected by the next run.
    """

    name: str
    options: Mapping[str, Any]

    def collect(self, state: Any, chunks: Sequence[int], progress: Any) -> None: ...


@runtime_checkable
class ImageSource(Protocol):
    """A sequence of named images: ``names``, ``len()``, ``load(i, size)`` (float32 HWC RGB in [0, 1] at
    ``size`` or native size), ``native_size(i)``, ``identity()`` (changes when any image does),
    ``describe()``. ``load`` raises :class:`atlas_core.images.BadImage` for an image it cannot decode."""

    names: Sequence[str]

    def __len__(self) -> int: ...

    def load(self, i: int, size: Optional[tuple] = None) -> np.ndarray: ...


@runtime_checkable
class Command(Protocol):
    """A subcommand of ``atlas``: ``add_arguments(parser)`` declares its options (argparse) without importing
    a framework; ``run(args) -> int`` does the work and returns the exit status."""

    def add_arguments(self, parser: Any) -> None: ...

    def run(self, args: Any) -> int: ...
