"""An opened ONNX model: its input spec, its tappable layers, and onnxruntime sessions that tap them."""

from __future__ import annotations

import difflib
import hashlib
from collections import OrderedDict
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto

from atlas_core import InputSpec, Layer, UsageError
from atlas_core.images import resize
from atlas_core.types import fit_channels
from atlas_core.models import content_hash

from . import graph as g

CPU = "CPUExecutionProvider"
CUDA = "CUDAExecutionProvider"
EXTERNAL_FOLDER_KEY = "session.model_external_initializers_file_folder_path"
INPUT_DTYPES = {TensorProto.FLOAT: np.float32, TensorProto.FLOAT16: np.float16,
                TensorProto.DOUBLE: np.float64, TensorProto.UINT8: np.uint8}
PROBE_SIZE = 224  # spatial size used to run a graph whose size is open when shapes must be measured
MAX_SESSIONS = 6
MAX_PROBES = 24  # graphs tried when looking for the taps that change a model's outputs


class OnnxModel:
    """A model file (or ``onnx.ModelProto``) opened for tapping; see docs/onnx.md."""

    def __init__(self, source, **options):
        if isinstance(source, (str, Path)):
            self.path: Optional[Path] = Path(source)
            self._graph = g.load_graph(self.path)
            self.name = self.path.name
            self.identity = content_hash([self.path] + g.external_files(self._graph, self.path.parent),
                                         extra="onnx")
        else:
            self.path = None
            self._graph = source
            self.name = source.graph.name or "model.onnx"
            if any(t.data_location == TensorProto.EXTERNAL for t in g.all_tensors(source.graph)):
                raise UsageError("this ModelProto keeps its weights in external files: open the .onnx file "
                                 "by its path so that they can be found")
            self.identity = hashlib.sha256(source.SerializeToString()).hexdigest()[:16]
        self.batch_size = _positive(options.get("batch_size"), "--batch-size") or 32
        self.threads = _positive(options.get("threads"), "--threads")
        self.device = _device(options.get("device"))
        self._input = _image_input(self._graph.graph)
        self.input_spec = _input_spec(self._graph.graph, self._input, options)
        elem = self._input.type.tensor_type.elem_type
        self.input_name = self._input.name
        self._dtype = INPUT_DTYPES[elem]
        self._info = g.analyse(self._graph, self.input_name, self.input_spec.layout)
        self._layers: Optional[list] = None
        self._sessions: OrderedDict = OrderedDict()
        self._rebatch_ok: dict = {}
        self._plans: dict = {}
        self._batch_dims: Optional[dict] = None
        self._provider: Optional[str] = None
        self._full: Optional[onnx.ModelProto] = None
        self._probe_error: Optional[str] = None

    def __repr__(self) -> str:
        return f"OnnxModel({self.name!r}, input={self.input_spec}, provider={self._provider})"

    # -- the Model contract ------------------------------------------------------------------
    @property
    def provider(self) -> str:
        """The execution provider that really runs (read from a created session)."""
        if self._provider is None:
            self._session((tuple(self._info.outputs), ()))
        return self._provider

    @property
    def output(self) -> Optional[str]:
        """The model's first output, when it can be tapped (the classifier's logits)."""
        names = {layer.name for layer in self.layers()}
        return next((o for o in self._info.outputs if o in names), None)

    def layers(self) -> list:
        """Every tappable tensor in graph order, with its op type and per-sample canonical shape."""
        if self._layers is None:
            self._resolve_shapes()
            spec = self.input_spec
            g.sequence_layouts(self._graph, self._info, _layout_dims(spec.layout, 1, spec.channels, spec.height,
                                                                     spec.width), spec.layout)
            masks = g.dropout_masks(self._graph)
            found = [t for t in self._info.tensors.values() if _tappable(t) and t.name not in masks]
            if not found:
                self._session((tuple(self._info.outputs), ()), keep=False)  # onnxruntime's own reason, if it has one
                why = f"onnxruntime cannot run its graph ({self._probe_error})" if self._probe_error else \
                    "no float tensor of its graph depends on its input"
                raise UsageError(f"{self.name} has no layer that can be tapped: {why}")
            self._layers = [Layer(t.name, t.op_type, self._canonical_shape(t),
                                  g.output_bounds(self._graph.graph, t.order)) for t in found]
            self._by_name = {layer.name: layer for layer in self._layers}
        return list(self._layers)

    def activations(self, images: np.ndarray, layers: Sequence[str]) -> dict:
        """Each named layer for ``images`` (float32 NHWC in [0, 1]) as float32 NHWC or NC, in one pass."""
        names = self._check_layers([layers] if isinstance(layers, str) else list(layers))
        images = self._fit_images(images)
        outs = tuple(dict.fromkeys(names))
        result: dict = {}
        n = len(images)
        for start in range(0, n, self.batch_size):
            x = self.prepare(images[start:start + self.batch_size])
            if outs not in self._plans:
                self._plans[outs] = self._plan(outs, x)
            for key, yields in self._plans[outs]:
                for name, value in zip(yields, self._exec(key, x)):
                    if name not in outs:
                        continue
                    a = self._canonical(name, value)
                    if name not in result:
                        result[name] = np.empty((n,) + a.shape[1:], dtype=np.float32)
                    result[name][start:start + len(a)] = a
        if n == 0:
            for name in outs:
                shape = self._by_name[name].shape
                result[name] = np.zeros((0,) + tuple(s or 0 for s in shape), np.float32)
        return result

    def native_activations(self, images: np.ndarray, layers: Sequence[str]) -> dict:
        """Each named layer as the graph lays it out, ``{name: (array, channel axis)}``: the values of
        ``activations`` without its transposing copy, for statistics per channel (atlas health)."""
        names = tuple(dict.fromkeys(self._check_layers([layers] if isinstance(layers, str) else list(layers))))
        images = self._fit_images(images)
        if not len(images):
            return {name: (a, a.ndim - 1) for name, a in self.activations(images, names).items()}
        parts: dict = {name: [] for name in names}
        for start in range(0, len(images), self.batch_size):
            x = self.prepare(images[start:start + self.batch_size])
            if names not in self._plans:
                self._plans[names] = self._plan(names, x)
            for key, yields in self._plans[names]:
                for name, value in zip(yields, self._exec(key, x)):
                    if name in parts:
                        parts[name].append(np.asarray(value, dtype=np.float32))
        result = {}
        for name, pieces in parts.items():
            a = pieces[0] if len(pieces) == 1 else np.concatenate(pieces)
            first = a.ndim == 4 and self._info.tensors[name].layout != "NHWC"
            result[name] = (a, 1 if first else a.ndim - 1)
        return result

    def onnx_model(self) -> onnx.ModelProto:
        """The model as on disk, with its external weights loaded."""
        if self._full is None:
            self._full = onnx.load(str(self.path)) if self.path is not None else self._graph
        return self._full

    # -- more for users, tests and benchmarks ----------------------------------------------------
    def prepare(self, images: np.ndarray) -> np.ndarray:
        """Canonical images to the model's input array: normalized, in its layout and dtype.

        The same float32 arithmetic as ``InputSpec.normalize`` (bit for bit), image by image and in
        place, which keeps the data in cache: several times faster on a batch of 224x224 images."""
        spec = self.input_spec
        images = np.asarray(images, dtype=np.float32)
        n, h, w, c = images.shape
        nchw = spec.layout == "NCHW"
        x = np.empty((n, c, h, w) if nchw else (n, h, w, c), np.float32)
        shape = (c, 1, 1) if nchw else (c,)
        mean = np.asarray(spec.mean, np.float32).reshape(shape)
        std = np.asarray(spec.std, np.float32).reshape(shape)
        scale = np.float32(spec.scale)
        for i in range(n):
            out = x[i]
            np.copyto(out, images[i].transpose(2, 0, 1) if nchw else images[i])
            if scale != 1:
                out *= scale
            np.subtract(out, mean, out=out)
            np.divide(out, std, out=out)
        if self._dtype == np.uint8:
            return np.clip(np.rint(x), 0, 255).astype(np.uint8)
        return x if self._dtype == np.float32 else x.astype(self._dtype)

    def session(self, outputs: Optional[Sequence[str]] = None) -> ort.InferenceSession:
        """An onnxruntime session with these graph outputs (default: the untouched model)."""
        outs = tuple(outputs) if outputs else tuple(self._info.outputs)
        return self._session((outs, ()))

    def layer(self, name: str) -> Layer:
        self._check_layers([name])
        return self._by_name[name]

    # -- internals -----------------------------------------------------------------------------
    def _check_layers(self, names: list) -> list:
        self.layers()
        if not names:
            raise UsageError("name at least one layer (see atlas layers MODEL)")
        for name in names:
            if name not in self._by_name:
                if name in g.dropout_masks(self._graph):
                    raise UsageError(f"{name!r} of {self.name} is a Dropout's mask (ones at inference), not a layer: "
                                     "tap the Dropout's first output")
                raise UsageError(_unknown_layer(name, self._info, list(self._by_name), self.name))
        return names

    def _fit_images(self, images) -> np.ndarray:
        images = np.asarray(images)
        if images.ndim != 4 or images.shape[-1] not in (1, 3):
            raise UsageError(f"images must be float32 N x H x W x 3 in [0, 1]; got shape {images.shape}")
        images = images.astype(np.float32, copy=False)
        channels = self.input_spec.channels
        if images.shape[-1] == 1 and channels == 3:
            images = np.repeat(images, 3, axis=-1)
        elif images.shape[-1] == 3 and channels == 1:
            images = images @ np.array([[0.299], [0.587], [0.114]], np.float32)
        size = self.input_spec.size
        if size is not None and tuple(images.shape[1:3]) != tuple(size):
            images = np.stack([resize(im, size) for im in images]) if len(images) else \
                np.zeros((0,) + tuple(size) + images.shape[3:], np.float32)
        return images

    def _providers(self) -> list:
        available = ort.get_available_providers()
        if self.device == "cpu":
            return [CPU]
        if CUDA in available:
            return [CUDA, CPU]
        if self.device == "cuda":
            raise UsageError("--device cuda needs onnxruntime-gpu (pip install 'actatlas-onnx[gpu]' instead of "
                             "[cpu]: the two cannot be installed together); or use --device cpu")
        return [CPU]

    def _session(self, key: tuple, rebatch: bool = False, keep: bool = True) -> ort.InferenceSession:
        """The session of a graph key ``(outputs, copies)``: the graph with exactly these outputs, where
        the tensors in ``copies`` are computed by a copy of their producer (see ``_plan``)."""
        outputs, copies = key
        cache_key = (outputs, copies, rebatch)
        if cache_key in self._sessions:
            self._sessions.move_to_end(cache_key)
            return self._sessions[cache_key]
        options = ort.SessionOptions()
        if self.threads:
            options.intra_op_num_threads = self.threads
        options.log_severity_level = 4 if rebatch else 3
        if outputs == tuple(self._info.outputs) and not copies and not rebatch and self.path is not None:
            model = str(self.path)  # the untouched model, as onnxruntime would open it
        else:
            renamed = {name: _copy_name(name) for name in copies}
            types = {renamed.get(n, n): self._info.tensors[n].elem_type for n in outputs if n in self._info.tensors}
            tapped = g.tap(self._graph, [renamed.get(n, n) for n in outputs], types, copies=renamed,
                           batch="N" if rebatch else None, image_input=self.input_name)
            model = tapped.SerializeToString()
            if self.path is not None:
                options.add_session_config_entry(EXTERNAL_FOLDER_KEY, str(self.path.parent.resolve()))
        try:
            session = ort.InferenceSession(model, options, providers=self._providers())
        except Exception as exc:
            if rebatch:
                raise
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise UsageError(f"onnxruntime cannot load {self.name}: {first}") from None
        provider = session.get_providers()[0]
        if self.device == "cuda" and provider != CUDA:
            raise UsageError(f"--device cuda: onnxruntime could not start CUDA and runs on {provider}; "
                             "check the GPU and CUDA libraries, or use --device cpu")
        self._provider = self._provider or provider
        if keep:
            self._sessions[cache_key] = session
            while len(self._sessions) > MAX_SESSIONS:
                self._sessions.popitem(last=False)
        return session

    def _plan(self, names: tuple, x: np.ndarray) -> list:
        """How to compute ``names``: a list of (graph key, names it yields).

        Taps alone run a graph cut after them. Taps together with the model's outputs run the whole
        graph with the taps added as outputs, which must leave the model's outputs bit for bit what the
        untouched model gives; but making a tensor an output can stop onnxruntime from fusing it away
        (a Conv into the residual Add after it, a BatchNormalization into its Conv), and fused kernels
        round differently. So this is checked once on the first images: a tap that changes the
        outputs is computed instead by a copy of its producer, which leaves the original chain to be
        fused as before; if the outputs still differ, the untouched model and the taps run apart.
        """
        outputs = tuple(self._info.outputs)
        taps = tuple(n for n in names if n not in outputs)
        if not taps:
            return [((outputs, ()), outputs)]
        if len(taps) == len(names):
            return [((taps, ()), taps)]
        probe = x[:1]  # fusion is decided per graph, not per batch: one image shows it
        want = self._exec((outputs, ()), probe)

        # on CUDA two sessions of the untouched model can already differ in the last bits (cuDNN
        # chooses its convolution algorithms per session): there, equal within rounding is the test
        same = np.array_equal if self.provider == CPU else _close

        def exact(key, keep=True):
            got = self._exec(key, probe, keep=keep)
            return all(same(a, b) for a, b in zip(got, want))

        key = (outputs + taps, ())
        if exact(key):
            return [(key, key[0])]
        likely = tuple(t for t in taps if self._info.fusable(t))
        if likely and exact((outputs + taps, likely)):
            return [((outputs + taps, likely), outputs + taps)]
        # bisect the others: a group whose taps keep the outputs exact holds no culprit
        culprits = list(likely)
        rest = tuple(t for t in taps if t not in likely)
        groups = [rest[len(rest) // 2:], rest[:len(rest) // 2]] if len(rest) > 1 else [rest]
        tries = 0
        while groups and tries < MAX_PROBES:
            group = groups.pop()
            if not group:
                continue
            tries += 1
            if exact((outputs + group, ()), keep=False):
                continue
            if len(group) == 1:
                culprits.append(group[0])
            else:
                groups += [group[len(group) // 2:], group[:len(group) // 2]]
        key = (outputs + taps, tuple(t for t in taps if t in culprits))
        if not groups and key[1] and exact(key):
            return [(key, key[0])]
        return [((outputs, ()), outputs), ((taps, ()), taps)]

    def _exec(self, key: tuple, x: np.ndarray, keep: bool = True) -> list:
        """Run one batch through a graph key; a graph whose batch is fixed runs rewritten to take any
        batch when that is verified to give the same numbers, else in pieces of its own batch."""
        fetch = [_copy_name(n) if n in key[1] else n for n in key[0]]
        fixed = self.input_spec.batch
        if fixed is None:
            session = self._session(key, keep=keep)
            try:
                return session.run(fetch, {self.input_name: x})
            except (ort.capi.onnxruntime_pybind11_state.Fail, ort.capi.onnxruntime_pybind11_state.InvalidArgument,
                    ort.capi.onnxruntime_pybind11_state.RuntimeException) as exc:
                raise UsageError(f"onnxruntime could not run {self.name} on images of {x.shape[1:]}: "
                                 f"{_first_line(exc)}") from None
        if len(x) == fixed:
            return self._run_fixed(key, x, keep)
        if self._rebatch_ok.get(key) is not False and self._may_rebatch(key):
            try:
                values = self._session(key, rebatch=True, keep=keep).run(fetch, {self.input_name: x})
                if any(v.shape[:1] != (len(x),) for v in values):
                    raise ValueError("the batch axis did not survive")
                if key not in self._rebatch_ok:
                    pick = [0, len(x) - 1]
                    reference = self._run_fixed(key, x[pick], keep)
                    self._rebatch_ok[key] = all(_close(v[pick], r) for v, r in zip(values, reference))
                if self._rebatch_ok[key]:
                    return values
            except Exception:
                self._rebatch_ok[key] = False
        return self._run_fixed(key, x, keep)

    def _may_rebatch(self, key: tuple) -> bool:
        """False when shape inference with a symbolic batch gives an output of ``key`` a fixed first
        axis (after a Reshape to a constant (1, -1), say): that graph cannot take a larger batch."""
        if self._batch_dims is None:
            spec = self.input_spec
            info = g.GraphInfo(self.input_name, [], [], {n: g.Tensor(n, t.op_type, t.order)
                                                          for n, t in self._info.tensors.items()})
            dims = _layout_dims(spec.layout, "N", spec.channels, spec.height, spec.width)
            g.infer_shapes(self._graph, self.input_name, dims, info, symbols=True)
            self._batch_dims = {n: (t.dims[0] if t.dims else None) for n, t in info.tensors.items()}
        return not any(isinstance(self._batch_dims.get(n), int) for n in key[0])

    def _run_fixed(self, key: tuple, x: np.ndarray, keep: bool = True) -> list:
        fetch = [_copy_name(n) if n in key[1] else n for n in key[0]]
        fixed = self.input_spec.batch
        session = self._session(key, keep=keep)
        n = len(x)
        pad = -n % fixed
        if pad:
            x = np.concatenate([x, np.zeros((pad,) + x.shape[1:], x.dtype)])
        pieces = [session.run(fetch, {self.input_name: x[i:i + fixed]}) for i in range(0, len(x), fixed)]
        return [np.concatenate([p[k] for p in pieces])[:n] for k in range(len(fetch))]

    def _canonical(self, name: str, value: np.ndarray) -> np.ndarray:
        a = np.asarray(value, dtype=np.float32)
        if a.ndim == 4 and self._info.tensors[name].layout != "NHWC":
            return a.transpose(0, 2, 3, 1)
        if a.ndim == 3:  # (N, 1, L, C): positions along the width (graph.sequence_layouts)
            return (a.transpose(0, 2, 1) if self._info.tensors[name].layout == "NCL" else a)[:, None]
        return a

    def _canonical_shape(self, t: g.Tensor) -> tuple:
        d = t.dims[1:]
        if len(d) == 3 and t.layout != "NHWC":
            return (d[1], d[2], d[0])
        if len(d) == 2:
            return (1, d[1], d[0]) if t.layout == "NCL" else (1, d[0], d[1])
        return tuple(d)

    def _resolve_shapes(self) -> None:
        spec = self.input_spec
        dims = _layout_dims(spec.layout, 1, spec.channels, spec.height, spec.width)
        g.infer_shapes(self._graph, self.input_name, dims, self._info)
        open_size = spec.size is None
        unresolved = [t.name for t in self._info.tensors.values() if t.depends and (
            not t.elem_type or t.dims is None or t.dims[:1] != (1,)
            or (not open_size and None in t.dims))]
        unresolved = [n for n in unresolved if self._info.tensors[n].elem_type in g.FLOAT_TYPES | {0}]
        if unresolved:
            self._probe(unresolved, open_size)

    def _probe(self, names: list, open_size: bool) -> None:
        """Measure shapes that inference could not resolve by running one image through the graph."""
        spec = self.input_spec
        h, w = spec.height or PROBE_SIZE, spec.width or PROBE_SIZE
        x = self.prepare(np.full((1, h, w, 3 if spec.channels == 3 else 1), 0.5, np.float32))
        try:
            values = self._session((tuple(names), ()), keep=False).run(names, {self.input_name: x})
        except Exception as exc:
            self._probe_error = _first_line(exc)
            return  # these tensors stay unlisted; the rest of the graph still works
        for name, value in zip(names, values):
            t = self._info.tensors[name]
            if not isinstance(value, np.ndarray) or value.dtype.kind != "f":
                t.elem_type = t.elem_type or TensorProto.INT64
                continue
            t.elem_type = t.elem_type or onnx.helper.np_dtype_to_tensor_dtype(value.dtype)
            dims = list(value.shape)
            if open_size and len(dims) == 4:  # spatial extent follows the image size
                spatial = (1, 2) if t.layout == "NHWC" else (2, 3)
                for axis in spatial:
                    dims[axis] = None
            t.dims = tuple(dims)


# -- helpers -------------------------------------------------------------------------------------
def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    for marker in ("Status Message: ", "] : ", ": "):  # onnxruntime's messages put the reason last
        if marker in text and marker != ": ":
            text = text.split(marker)[-1]
            break
    line = text.splitlines()[0] if text else type(exc).__name__
    return line[:300]


def _tappable(t: g.Tensor) -> bool:
    return (t.depends and t.elem_type in g.FLOAT_TYPES and t.dims is not None
            and len(t.dims) in (2, 3, 4) and t.dims[0] == 1)


def _copy_name(name: str) -> str:
    return name + "::atlas_tap"


def _close(a: np.ndarray, b: np.ndarray) -> bool:
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    if a.shape != b.shape:
        return False
    scale = max(1.0, float(np.abs(b).max(initial=0.0)))
    return bool(np.allclose(a, b, rtol=1e-3, atol=1e-4 * scale))


def _positive(value, flag: str) -> Optional[int]:
    if value is None:
        return None
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = 0
    if number < 1:
        raise UsageError(f"{flag} must be a positive whole number; got {value!r}")
    return number


def _device(value) -> Optional[str]:
    if value is None:
        return None
    text = str(value).lower()
    if text in ("cpu", "cuda"):
        return text
    if text == "gpu":
        return "cuda"
    raise UsageError(f"--device must be cpu or cuda; got {value!r}")


def _unknown_layer(name: str, info: g.GraphInfo, names: list, model: str) -> str:
    near = difflib.get_close_matches(name, names, n=3, cutoff=0.5)
    if not near:
        lowered = name.lower()
        near = [n for n in names if lowered in n.lower()][:3]
    hint = f"; closest: {', '.join(near)}" if near else ""
    why = ""
    t = info.tensors.get(name)
    if t is not None:
        why = (" (it does not depend on the image)" if not t.depends else
               f" (a {len(t.dims)}-d tensor without one batch axis per image)" if t.dims else
               " (not a floating-point tensor with a batch axis)")
    return f"unknown layer {name!r} in {model}{why}{hint}; list them with: atlas layers {model}"


def _image_input(graph: onnx.GraphProto) -> onnx.ValueInfoProto:
    inputs = g.real_inputs(graph)
    if not inputs:
        raise UsageError("the model has no input to feed images to")
    if len(inputs) > 1:
        names = ", ".join(repr(i.name) for i in inputs)
        raise UsageError(f"the model has {len(inputs)} inputs ({names}); the onnx backend feeds one image input")
    value = inputs[0]
    ttype = value.type.tensor_type
    if not value.type.HasField("tensor_type") or ttype.elem_type not in INPUT_DTYPES:
        raise UsageError(f"input {value.name!r} is not a float or uint8 tensor; the onnx backend feeds images")
    dims = g.dims_of(value)
    if dims is not None and len(dims) != 4:
        raise UsageError(f"input {value.name!r} has rank {len(dims)}; an image input has rank 4 (NCHW or NHWC)")
    return value


def _layout_dims(layout: str, n, c, h, w) -> tuple:
    return (n, c, h, w) if layout == "NCHW" else (n, h, w, c)


def _input_spec(graph: onnx.GraphProto, value: onnx.ValueInfoProto, options: dict) -> InputSpec:
    """Layout, channels and size from the graph; normalization and open sizes from the options."""
    dims = g.dims_of(value) or (None, None, None, None)
    layout = options.get("layout")
    if layout:
        layout = str(layout).upper()
        if layout not in ("NCHW", "NHWC"):
            raise UsageError(f"layout must be NCHW or NHWC; got {options.get('layout')!r}")
    else:
        layout = _guess_layout(graph, value.name, dims)
    c, h, w = (dims[1], dims[2], dims[3]) if layout == "NCHW" else (dims[3], dims[1], dims[2])
    channels = c or _channels_from_consumer(graph, value.name) or 3
    if channels not in (1, 3):
        raise UsageError(f"input {value.name!r} takes {channels} channels; the onnx backend feeds 1 (grey) "
                         "or 3 (RGB) channels (override the layout with a sidecar if it is guessed wrong)")
    size = options.get("size")
    if size is not None:
        sh, sw = (int(size[0]), int(size[1]))
        if (h is not None and h != sh) or (w is not None and w != sw):
            raise UsageError(f"the model's input is fixed to {h or 'any'}x{w or 'any'}; --size {sh},{sw} "
                             "does not fit it (images are resized to the model's size anyway)")
        h, w = sh, sw
    elem = value.type.tensor_type.elem_type
    scale = float(options["scale"]) if options.get("scale") is not None else (
        255.0 if elem == TensorProto.UINT8 else 1.0)
    mean = fit_channels(options.get("mean") or (0.0,) * 3, channels, "--mean")
    std = fit_channels(options.get("std") or (1.0,) * 3, channels, "--std")
    if min(abs(s) for s in std) == 0:
        raise UsageError("--std must not contain 0")
    return InputSpec(layout=layout, channels=channels, height=h, width=w, mean=mean, std=std, scale=scale,
                     batch=dims[0])



def _guess_layout(graph: onnx.GraphProto, name: str, dims: tuple) -> str:
    def channel_like(d):
        return d in (1, 3, 4)

    if channel_like(dims[1]) and not channel_like(dims[3]):
        return "NCHW"
    if channel_like(dims[3]) and not channel_like(dims[1]):
        return "NHWC"
    for node in graph.node:
        if name in node.input:
            if node.op_type == "Transpose":
                perm = next((tuple(a.ints) for a in node.attribute if a.name == "perm"), ())
                if perm == g.NHWC_TO_NCHW:
                    return "NHWC"
            return "NCHW"
    return "NCHW"


def _channels_from_consumer(graph: onnx.GraphProto, name: str) -> Optional[int]:
    """Input channels of the first Conv fed by the input: weight's in-channels times its groups."""
    inits = {t.name: t for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Conv" and node.input and node.input[0] == name and node.input[1] in inits:
            group = next((a.i for a in node.attribute if a.name == "group"), 1) or 1
            weight = inits[node.input[1]]
            if len(weight.dims) >= 2:
                return int(weight.dims[1]) * int(group)
    return None
