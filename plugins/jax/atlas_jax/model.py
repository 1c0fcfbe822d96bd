"""The two JAX backends: native JAX models (``jax``) and ONNX graphs lowered to JAX (``onnx-jax``).

This module imports no framework at import time: ``JaxModel`` is a plain container,
so ``can_open`` is an isinstance test. JAX and onnx are imported on ``open``.
"""

from __future__ import annotations

import difflib
import importlib
import re
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np

from atlas_core import INPUT, InputSpec, Layer, UsageError
from atlas_core.types import fit_channels
from atlas_core.models import array_hash, content_hash

from .lowering import Variant


class JaxModel:
    """A native JAX model: ``fn(params, x)`` returns the layers it exposes.

    ``x`` is the model's own input: canonical images mapped by ``input_spec``
    (scale, mean/std, layout; NHWC unless the spec says NCHW). ``fn`` returns a
    dict of named intermediates (nested dicts, lists and tuples are flattened to
    ``a/b/0`` names, so a Flax module's ``capture_intermediates`` collection works
    as is) or a single array (named ``output``). Spatial layers must be NHWC, or
    NCHW with ``layout="NCHW"``. ``layers`` restricts and orders what is exposed;
    ``output`` names the layer that holds the model's final output.
    """

    def __init__(self, fn: Callable, params: Any = None, layers: Optional[Sequence[str]] = None,
                 input_spec: Optional[InputSpec] = None, name: str = "jax-model", output: Optional[str] = None,
                 layout: str = "NHWC"):
        self.fn = fn
        self.params = params
        self.layer_names = list(layers) if layers is not None else None
        self.input_spec = input_spec or InputSpec(layout="NHWC")
        self.name = name
        self.output = output
        self.layout = layout

    def __repr__(self) -> str:
        return f"JaxModel({self.name!r})"


class JaxFunction:
    """A JAX function from a source tensor to target tensors (:class:`atlas_core.contracts.TensorFunction`).

    ``apply(params, x)`` returns ``{target: value}``: ``x`` is canonical images (float32 NHWC in [0, 1]) when
    ``source`` is the input, otherwise the source layer's canonical activations. Jit ``apply`` with
    ``params`` as an argument so that XLA does not fold the weights into the program; ``f(x)`` calls it with
    the function's own ``params``.
    """

    engine = "jax"

    def __init__(self, apply: Callable, params: Any, source: str, targets: Sequence[str],
                 input_size: Optional[tuple] = None):
        self.apply = apply
        self.params = params
        self.source = source
        self.targets = tuple(targets)
        self.input_size = input_size

    def __call__(self, x):
        return self.apply(self.params, x)


class JaxGradients:
    """The gradient capability of a JAX-backed model (:class:`atlas_core.contracts.Differentiable`)."""

    engine = "jax"

    def __init__(self, model: "_Model"):
        self.model = model
        self._functions: dict = {}
        self._jvps: dict = {}

    def supports(self, source: str, targets: Sequence[str]) -> Optional[str]:
        known = {layer.name for layer in self.model.layers()}
        for name in [source] * (source != INPUT) + list(targets):
            if name not in known:
                return f"{self.model.name} has no layer {name!r}"
        return self.model._tail_problem(source, list(targets))

    def function(self, source: str, targets: Sequence[str], relax_maxpool: bool = False,
                 variant: Optional[Variant] = None) -> JaxFunction:
        """The JAX function, lowered for the fastest gradients (or as ``variant`` says: for JVPs); with
        ``relax_maxpool`` every max-pool has the average-pool's derivative."""
        variant = variant or Variant(relax_maxpool=relax_maxpool)
        key = (source, tuple(targets), variant)
        if key not in self._functions:
            reason = self.supports(source, targets)
            if reason:
                raise UsageError(reason)
            m = self.model
            self._functions[key] = JaxFunction(m._function_apply(source, tuple(targets), variant),
                                               m._device_params, source, targets,
                                               m.input_spec.size if source == INPUT else None)
        return self._functions[key]

    def jvp(self, source: str, targets: Sequence[str], x: np.ndarray, tangent: np.ndarray,
            relax_maxpool: bool = False) -> dict:
        """Forward-mode derivatives along ``tangent`` at ``x`` (numpy in, numpy out), in batches of the
        model's batch size, one compiled program per batch shape. ``tangent`` is one per row of ``x``, or
        (rows, K, ...): K tangents per row, which share one evaluation of the function at that row."""
        import jax
        variant = Variant(forward_mode=True, relax_maxpool=relax_maxpool)
        fn = self.function(source, targets, variant=variant)
        x = np.asarray(x, np.float32)
        tangent = np.asarray(tangent, np.float32)
        many = tangent.ndim == x.ndim + 1
        if not many and tangent.shape != x.shape:
            raise UsageError(f"jvp: tangent shape {tangent.shape} fits neither x {x.shape} nor (rows, K) + x's")
        key = (source, tuple(targets), variant, many)
        if key not in self._jvps:
            self._jvps[key] = jax.jit(_jvp_program(fn.apply, many, transpose=False))
        try:
            return self._jvp_batches(self._jvps[key], fn, targets, x, tangent, many)
        except TypeError as exc:  # a custom VJP inside a native function has no forward mode
            if "custom_vjp" not in str(exc):
                raise
            self._jvps[key] = jax.jit(_jvp_program(fn.apply, many, transpose=True))
            return self._jvp_batches(self._jvps[key], fn, targets, x, tangent, many)

    def vjp(self, source: str, target: str, x: np.ndarray, cotangent: np.ndarray,
            relax_maxpool: bool = False) -> np.ndarray:
        """Reverse mode (numpy in, numpy out): the gradient at ``x`` of ``<target, cotangent>``; ``cotangent``
        is one per row or (rows, K, ...), K per row sharing the row's evaluation. Batched by the model's batch
        size (fewer rows when there are K cotangents per row)."""
        import jax
        fn = self.function(source, [target], relax_maxpool=relax_maxpool)
        x = np.asarray(x, np.float32)
        cotangent = np.asarray(cotangent, np.float32)
        many = cotangent.ndim == x.ndim + 1
        key = ("vjp", source, target, relax_maxpool, many)
        if key not in self._jvps:
            def single(p, a, u):
                _, pull = jax.vjp(lambda v: fn.apply(p, v)[target], a)
                return pull(u)[0]

            def multiple(p, a, u):
                _, pull = jax.vjp(lambda v: fn.apply(p, v)[target], a)
                return jax.vmap(lambda uk: pull(uk)[0], in_axes=1, out_axes=1)(u)

            self._jvps[key] = jax.jit(multiple if many else single)
        run = self._jvps[key]
        step = max(1, self.model.batch_size // (cotangent.shape[1] if many else 1))
        out = []
        for s in range(0, len(x), step):
            a, u = x[s:s + step], cotangent[s:s + step]
            out.append(np.asarray(run(fn.params, jax.device_put(a, self.model.device),
                                      jax.device_put(u, self.model.device)), np.float32))
        return np.concatenate(out) if out else np.zeros(cotangent.shape[:2 if many else 1] + x.shape[1:], np.float32)

    def _jvp_batches(self, run, fn, targets, x, tangent, many) -> dict:
        import jax
        step = max(1, self.model.batch_size // (tangent.shape[1] if many else 1))
        values: dict = {t: [] for t in targets}
        derivs: dict = {t: [] for t in targets}
        for s in range(0, len(x), step):
            a, t = x[s:s + step], tangent[s:s + step]
            n = len(a)
            if n < step and len(x) > step:  # one compiled shape
                a = np.concatenate([a, np.repeat(a[-1:], step - n, axis=0)])
                t = np.concatenate([t, np.zeros((step - n,) + t.shape[1:], np.float32)])
            out, dout = run(fn.params, jax.device_put(a, self.model.device), jax.device_put(t, self.model.device))
            for name in targets:
                values[name].append(np.asarray(out[name], np.float32)[:n])
                derivs[name].append(np.asarray(dout[name], np.float32)[:n])
        return {name: (np.concatenate(values[name]), np.concatenate(derivs[name])) for name in targets}


def _jvp_program(apply, many: bool, transpose: bool):
    """``run(params, a, t) -> (values, derivatives)``; with ``many``, ``t`` holds K tangents per row of ``a``:
    the function is linearized once per row and its linear map applied to each tangent."""
    import jax

    def single(p, a, t):
        f = lambda v: apply(p, v)  # noqa: E731
        return _jvp_by_transpose(f, a, t) if transpose else jax.jvp(f, (a,), (t,))

    def multiple(p, a, t):
        f = lambda v: apply(p, v)  # noqa: E731
        if transpose:
            out, vjp = jax.vjp(f, a)
            linear = jax.linear_transpose(lambda u: vjp(u)[0], out)
            return out, jax.vmap(lambda tk: linear(tk)[0], in_axes=1, out_axes=1)(t)
        out, linear = jax.linearize(f, a)
        return out, jax.vmap(linear, in_axes=1, out_axes=1)(t)

    return multiple if many else single


def _jvp_by_transpose(f, a, t):
    """``jax.jvp(f, (a,), (t,))`` through reverse mode: the transpose of the (linear) VJP applied to ``t``, for
    functions whose custom VJPs have no forward mode."""
    import jax
    out, vjp = jax.vjp(f, a)
    return out, jax.linear_transpose(lambda u: vjp(u)[0], out)(t)[0]


def _flatten(tree, prefix="") -> dict:
    if isinstance(tree, dict):
        out = {}
        for k, v in tree.items():
            out.update(_flatten(v, f"{prefix}{k}/"))
        return out
    if isinstance(tree, (list, tuple)):
        if len(tree) == 1:  # Flax stores each call's output as a 1-tuple
            return _flatten(tree[0], prefix)
        out = {}
        for k, v in enumerate(tree):
            out.update(_flatten(v, f"{prefix}{k}/"))
        return out
    return {prefix.rstrip("/") or "output": tree}


LUMINANCE = (0.299, 0.587, 0.114)  # RGB to grey, as the onnx backend feeds 1-channel models


def _channels(spec: InputSpec, images):
    """Canonical RGB images to the model's channels: grey (luminance) for a 1-channel input, RGB repeated
    from grey for a 3-channel one fed 1-channel images (traced: gradients pass)."""
    import jax.numpy as jnp
    c = images.shape[-1]
    if spec.channels == 1 and c == 3:
        return images @ jnp.asarray(np.asarray(LUMINANCE, np.float32)[:, None])
    if spec.channels == 3 and c == 1:
        return jnp.repeat(images, 3, axis=-1)
    return images


def _normalize(spec: InputSpec, images):
    import jax.numpy as jnp
    x = _channels(spec, images) * np.float32(spec.scale)
    x = (x - jnp.asarray(spec.mean, jnp.float32)) / jnp.asarray(spec.std, jnp.float32)
    if spec.layout == "NCHW":
        x = jnp.transpose(x, (0, 3, 1, 2))
    return x


def _canonical(a, layout: str):
    """A native model's tensor to canonical form: rank 4 NHWC, rank 3 (N, 1, L, C); ``layout="NCHW"``
    means channels first for both (rank 3 then is (N, C, L))."""
    return _to_canonical(a, {4: layout, 3: "NCL" if layout == "NCHW" else "NLC"}.get(a.ndim, ""))


def _device(name: Optional[str]):
    import jax
    if name in (None, "", "auto"):
        return jax.devices()[0]
    kind = {"cuda": "gpu", "gpu": "gpu", "cpu": "cpu", "tpu": "tpu"}.get(str(name).split(":")[0].lower())
    try:
        devices = jax.devices(kind)
    except RuntimeError:
        raise UsageError(f"JAX has no {name} device here (it has {jax.devices()[0].platform})") from None
    index = int(str(name).split(":")[1]) if ":" in str(name) else 0
    return devices[index]


def _provider(device) -> str:
    return f"JAX {device.platform} ({device.device_kind})"


def _spec_from_options(spec: InputSpec, options: dict) -> InputSpec:
    spec = InputSpec(**vars(spec))
    for key in ("mean", "std", "scale", "layout"):
        if options.get(key) is not None:
            setattr(spec, key, options[key])
    if options.get("size") is not None:
        spec.height, spec.width = options["size"]
    spec.mean = fit_channels(spec.mean, spec.channels, "--mean")
    spec.std = fit_channels(spec.std, spec.channels, "--std")
    return spec


def _to_canonical(a, layout: str):
    """A graph tensor in its own layout to the core's canonical form: NHWC for rank 4, (N, 1, L, C) for
    rank 3 (positions along the width, see :meth:`atlas_jax.lowering.OnnxGraph.layouts`)."""
    import jax.numpy as jnp
    if a.ndim == 4 and layout == "NCHW":
        return jnp.transpose(a, (0, 2, 3, 1))
    if a.ndim == 3:
        return (jnp.transpose(a, (0, 2, 1)) if layout == "NCL" else a)[:, None]
    return a


def _from_canonical(x, layout: str):
    """Canonical activations back to a graph tensor's layout (the inverse of :func:`_to_canonical`)."""
    import jax.numpy as jnp
    if layout in ("NCL", "NLC"):
        x = x[:, 0] if x.ndim == 4 else x
        return jnp.transpose(x, (0, 2, 1)) if layout == "NCL" else x
    if x.ndim == 4 and layout == "NCHW":
        return jnp.transpose(x, (0, 3, 1, 2))
    return x


class _Model:
    """What both backends share: layers, batched activations, JAX functions per layer."""

    name: str
    provider: str
    input_spec: InputSpec
    output: Optional[str]

    def __init__(self, batch_size: int = 32):
        self.batch_size = int(batch_size or 32)
        self._jitted: dict = {}
        self._layers: Optional[list] = None

    # subclasses: _apply(params, x_model_input) -> dict of canonical arrays; _probe_layers() -> list[Layer]
    def layers(self) -> list:
        if self._layers is None:
            self._layers = self._probe_layers()
        return list(self._layers)

    def _check_layers(self, names: Sequence[str]) -> None:
        known = {layer.name for layer in self.layers()}
        for name in names:
            if name not in known:
                near = difflib.get_close_matches(name, list(known), n=3, cutoff=0.5)
                hint = f"; closest: {', '.join(near)}" if near else ""
                raise UsageError(f"unknown layer {name!r} of {self.name}{hint} (list them with atlas layers)")

    def _images_apply(self, names: Sequence[str], variant=None):
        names = tuple(names)
        inner = self._apply_for(names, variant=variant)
        spec = self.input_spec

        def apply(params, images):
            return inner(params, _normalize(spec, images))

        return apply

    def activations(self, images: np.ndarray, layers: Sequence[str]) -> dict:
        import jax
        layers = list(layers)
        self._check_layers(layers)
        key = tuple(layers)
        if key not in self._jitted:
            self._jitted[key] = jax.jit(self._images_apply(key))
        fn = self._jitted[key]
        images = self._fit_images(images)
        if len(images) == 0:
            shapes = {layer.name: layer.shape for layer in self.layers()}
            return {name: np.zeros((0,) + tuple(d or 0 for d in shapes[name] or ()), np.float32) for name in layers}
        parts: dict = {name: [] for name in layers}
        for start in range(0, len(images), self.batch_size):
            chunk = images[start:start + self.batch_size]
            n = len(chunk)
            if n < self.batch_size and len(images) > self.batch_size:  # one compiled shape
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], self.batch_size - n, axis=0)])
            out = fn(self._device_params, jax.device_put(chunk, self.device))
            for name in layers:
                parts[name].append(np.asarray(out[name], dtype=np.float32)[:n])
        return {name: np.concatenate(parts[name]) for name in layers}

    def _fit_images(self, images) -> np.ndarray:
        """Canonical images at the model's input size (resized as the onnx backend does); grey images
        (one channel) are taken as they are and mapped to the model's channels with the rest."""
        images = np.asarray(images, dtype=np.float32)
        if images.ndim != 4 or images.shape[-1] not in (1, 3):
            raise UsageError(f"images must be float32 N x H x W x 3 in [0, 1]; got shape {images.shape}")
        size = self.input_spec.size
        if size is not None and len(images) and tuple(images.shape[1:3]) != tuple(size):
            from atlas_core.images import resize
            images = np.stack([resize(im, size) for im in images])
        return images

    def gradients(self) -> JaxGradients:
        """The model's gradient capability (made once)."""
        if getattr(self, "_gradients", None) is None:
            self._gradients = JaxGradients(self)
        return self._gradients

    # subclasses: _tail_problem(source, targets) -> Optional[str]; _function_apply(source, targets, variant)
    def _function_apply(self, source: str, targets: tuple, variant=None):
        if source == INPUT:
            return self._images_apply(targets)
        raise UsageError(f"{self.name}: no function from layer {source!r}")


def _proto_identity(proto) -> str:
    import hashlib
    try:
        return hashlib.sha256(proto.SerializeToString()).hexdigest()[:16]
    except ValueError:  # over protobuf's 2 GB: the graph's structure and initializer names and shapes
        return array_hash([], extra=[str(proto.graph.node), [(t.name, list(t.dims)) for t in proto.graph.initializer]])


def _file_identity(path: Path) -> str:
    """A hash of the model file and the external-data files it names, each checked to lie inside the model's
    folder before anything reads it."""
    import onnx
    from atlas_core.models import external_data_file
    light = onnx.load(str(path), load_external_data=False)
    files = set()
    for init in light.graph.initializer:
        if init.data_location == onnx.TensorProto.EXTERNAL:
            info = {e.key: e.value for e in init.external_data}
            files.add(external_data_file(path.parent, info.get("location", ""), info.get("offset", "0"),
                                         info.get("length", "0"), init.name))
    return content_hash([path] + sorted(files), extra="onnx")


class OnnxJaxModel(_Model):
    """An ONNX graph lowered to JAX (``atlas_jax.lowering``)."""

    def __init__(self, source, batch_size=32, device=None, **options):
        super().__init__(batch_size)
        import jax
        import onnx
        from .lowering import OnnxGraph
        if isinstance(source, onnx.ModelProto):
            proto, self.name = source, source.graph.name or "onnx-model"
            self.identity = _proto_identity(proto)
        else:
            path = Path(source)
            if not path.is_file():
                raise UsageError(f"model file {str(source)!r} not found")
            try:
                self.identity = _file_identity(path)
                proto = onnx.load(str(path))
            except UsageError:
                raise
            except Exception as exc:
                raise UsageError(f"cannot read ONNX model {path}: {type(exc).__name__}: {exc}") from None
            self.name = path.name
        self.graph = OnnxGraph(proto)
        shape = self.graph.input_shape
        if len(shape) == 4 and shape[1] in (1, 3):
            layout, h, w, c = "NCHW", shape[2], shape[3], shape[1]
        elif len(shape) == 4:
            layout, h, w, c = "NHWC", shape[1], shape[2], shape[3]
        else:
            raise UsageError(f"{self.name}: input {self.graph.input_name!r} has shape {shape}; "
                             "only image inputs (rank 4) are supported")
        base = InputSpec(layout=layout, channels=c or 3, height=h, width=w, batch=shape[0])
        self.input_spec = _spec_from_options(base, options)
        self._set_placeholder()
        self.device = _device(device)
        self.provider = _provider(self.device)
        self._device_params = jax.device_put(self.graph.params, self.device)
        self.output = self.graph.output_names[0] if self.graph.output_names else None

    def _set_placeholder(self) -> None:
        spec = self.input_spec
        h, w = spec.size or (224, 224)
        c = spec.channels or 3
        self.graph.placeholder_dims = (c, h, w) if spec.layout == "NCHW" else (h, w, c)

    def onnx_model(self):
        return self.graph.proto

    def _tail_problem(self, source: str, targets: list) -> Optional[str]:
        if source == INPUT:
            return None
        return self.graph.tail_problem(targets, source)

    def _function_apply(self, source: str, targets: tuple, variant=None):
        if source == INPUT:
            return self._images_apply(targets, variant)
        return self._apply_for(targets, source, variant)

    def _apply_for(self, names, source: Optional[str] = None, variant=None):
        """``run(params, x)``: the named tensors, canonical; ``x`` is the model's input (its own layout) or,
        with ``source``, that layer's canonical activations."""
        import jax
        import jax.numpy as jnp
        graph = self.graph
        fixed = self.input_spec.batch
        f = graph.function(list(names), source, variant or Variant())
        self.layers()
        layouts = self._layouts

        def run(params, x):
            if source is not None:
                x = _from_canonical(x, layouts.get(source, ""))
            return {n: _to_canonical(v, layouts.get(n, "")) for n, v in zip(names, f(params, x))}

        if fixed:  # a graph with a fixed batch (e.g. Reshape to (1, -1)): map it over groups of that size
            def run_fixed(params, x):
                n = x.shape[0]
                pad = (-n) % fixed
                if pad:
                    x = jnp.concatenate([x, jnp.repeat(x[-1:], pad, axis=0)])
                groups = x.reshape((-1, fixed) + x.shape[1:])
                out = jax.vmap(lambda g: run(params, g))(groups)
                return {k: v.reshape((-1,) + v.shape[2:])[:n] for k, v in out.items()}
            return run_fixed
        return run

    def _probe_layers(self) -> list:
        """Every float tensor that depends on the image and keeps one row per image, rank 2, 3 or 4 (rank 3
        as (1, L, C): see :meth:`OnnxGraph.layouts`), in graph order. Dropout's mask is left out (ones at
        inference). None at all is a one-line error naming what stops the lowering."""
        size = self.input_spec.size
        c = self.input_spec.channels
        h, w = size or (224, 224)
        b = self.input_spec.batch or 1
        shape = (b, c, h, w) if self.input_spec.layout == "NCHW" else (b, h, w, c)
        tensors = self.graph.traced_tensors(shape)
        self._layouts = self.graph.layouts({n: s for n, (_, s, _) in tensors.items()}, self.input_spec.layout)
        masks = {node.output[1] for node in self.graph.nodes if node.op_type == "Dropout" and len(node.output) > 1}
        out = []
        for name, (op_type, s, dtype) in tensors.items():
            if np.dtype(dtype).kind != "f" or len(s) not in (2, 3, 4) or name in masks:
                continue
            layout = self._layouts.get(name, "")
            per = tuple(s[1:])
            if len(s) == 4 and layout == "NCHW":
                per = (s[2], s[3], s[1])
            elif len(s) == 3:
                per = (1, s[2], s[1]) if layout == "NCL" else (1, s[1], s[2])
            out.append(Layer(name, op_type, per if size is not None or len(s) == 2 else None))
        if not out:
            blocked = next((self.graph.blocked_by(o) for o in self.graph.output_names
                            if self.graph.blocked_by(o)), None)
            if blocked:
                raise UsageError(f"{self.name}: no layer can be lowered to JAX: ONNX op {blocked[0]!r} (node "
                                 f"{blocked[1]}) is not supported by the JAX lowering; use --backend onnx")
            raise UsageError(f"{self.name}: no floating-point tensor of rank 2 to 4 depends on the input")
        if self.output is not None and self.output not in {layer.name for layer in out}:
            self.output = None
        return out

    def _check_layers(self, names: Sequence[str]) -> None:
        known = {layer.name for layer in self.layers()}
        for name in names:
            if name in known:
                continue
            if name in self.graph.producer:
                node = self.graph.nodes[self.graph.producer[name]]
                if node.op_type == "Dropout" and list(node.output).index(name) == 1:
                    raise UsageError(f"{name!r} of {self.name} is a Dropout's mask (ones at inference), not a "
                                     "layer: tap the Dropout's first output")
                blocked = self.graph.blocked_by(name)
                if blocked:
                    raise UsageError(f"layer {name!r} of {self.name} comes after ONNX op {blocked[0]!r} (node "
                                     f"{blocked[1]}), which the JAX lowering does not support; use --backend onnx")
            super()._check_layers([name])


class NativeJaxModel(_Model):
    """A :class:`JaxModel` opened for the atlas."""

    def __init__(self, source: JaxModel, batch_size=32, device=None, **options):
        super().__init__(batch_size)
        import jax
        self.source = source
        self.name = source.name
        self.identity = _params_identity(source)
        self.input_spec = _spec_from_options(source.input_spec, options)
        self.device = _device(device)
        self.provider = _provider(self.device)
        self._device_params = jax.device_put(source.params, self.device)
        self.output = source.output

    def _tail_problem(self, source: str, targets: list) -> Optional[str]:
        if source == INPUT:
            return None
        return f"{self.name} is a JAX function of its input: it gives gradients from the input only"

    def _apply_for(self, names, source: Optional[str] = None, variant=None):
        fn, layout = self.source.fn, self.source.layout

        def run(params, x):
            flat = _flatten(fn(params, x))
            return {n: _canonical(flat[n], layout) for n in names}

        return run

    def _probe_layers(self) -> list:
        import jax
        import jax.numpy as jnp
        spec = self.input_spec
        h, w = spec.size or (224, 224)
        shape = (1, spec.channels, h, w) if spec.layout == "NCHW" else (1, h, w, spec.channels)
        fn, layout = self.source.fn, self.source.layout
        flat = jax.eval_shape(lambda p, x: _flatten(fn(p, x)), self.source.params,
                              jax.ShapeDtypeStruct(shape, jnp.float32))
        names = self.source.layer_names or list(flat)
        missing = [n for n in names if n not in flat]
        if missing:
            raise UsageError(f"{self.name}: layers {missing} are not among what the function returns "
                             f"({', '.join(list(flat)[:8])}...)")
        out = []
        for n in names:
            s = tuple(flat[n].shape)
            if len(s) == 4 and layout == "NCHW":
                s = (s[0], s[2], s[3], s[1])
            elif len(s) == 3:
                s = (s[0], 1, s[2], s[1]) if layout == "NCHW" else (s[0], 1, s[1], s[2])
            per = tuple(s[1:]) if (spec.size is not None or len(s) == 2) else None
            out.append(Layer(n, "jax", per))
        return out


def _params_identity(model: JaxModel) -> str:
    """A hash of a native model's parameters and the function's qualified name."""
    import jax
    leaves = [np.asarray(leaf) for leaf in jax.tree_util.tree_leaves(model.params)]
    fn = model.fn
    return array_hash(leaves, extra=["jax", getattr(fn, "__module__", ""), getattr(fn, "__qualname__", repr(fn)),
                                     model.layer_names, model.layout])


# -- backends -------------------------------------------------------------------
_IMPORT_PATH = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


def _resolve(source):
    """A JaxModel from ``source``: the object itself, or an import path ``package.module:attribute``."""
    if isinstance(source, JaxModel):
        return source
    if isinstance(source, str) and _IMPORT_PATH.match(source) and not Path(source).exists():
        module, _, attr = source.partition(":")
        obj = importlib.import_module(module)
        for part in attr.split("."):
            obj = getattr(obj, part)
        if isinstance(obj, JaxModel):
            return obj
    return None


class JaxBackend:
    """Backend ``jax``: native JAX models (:class:`atlas_jax.JaxModel`)."""

    name = "jax"

    def can_open(self, source) -> bool:
        if isinstance(source, JaxModel):
            return True
        if isinstance(source, str) and _IMPORT_PATH.match(source):
            try:
                return _resolve(source) is not None
            except Exception:
                return False
        return False

    def open(self, source, **options):
        model = _resolve(source)
        if model is None:
            raise UsageError(f"{source!r} is not an atlas_jax.JaxModel")
        return NativeJaxModel(model, **options)


class OnnxJaxBackend:
    """Backend ``onnx-jax``: an ONNX file lowered to a differentiable JAX function."""

    name = "onnx-jax"

    def can_open(self, source) -> bool:
        if isinstance(source, (str, Path)):
            return str(source).lower().endswith(".onnx")
        return type(source).__name__ == "ModelProto" and type(source).__module__.startswith("onnx")

    def open(self, source, **options):
        return OnnxJaxModel(source, **options)
