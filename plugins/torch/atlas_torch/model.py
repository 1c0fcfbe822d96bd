"""A ``torch.nn.Module`` as an atlas Model: layers from one dry run, activations from forward hooks."""

from __future__ import annotations

import contextlib
import difflib
import io
import logging
import sys
import warnings
from functools import partial
from typing import Optional

import numpy as np
import torch

from atlas_core import InputSpec, Layer, UsageError
from atlas_core.models import parse_size

from .backend import _one_line

DEFAULT_SIZE = 224
ROOT_NAME = "output"  # the layer name of the whole module's output


class _Stop(Exception):
    """Raised from a hook once every requested layer is captured: the rest of the forward is skipped."""


def pick_device(device: Optional[str]) -> "torch.device":
    """``device`` as a torch.device; None means CUDA when available, else CPU."""
    if device in (None, "", "auto"):
        return torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() \
            else torch.device("cpu")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        raise UsageError(f"unknown device {device!r}; use cpu, cuda or cuda:N") from None
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError(f"device {device!r} asked for, but torch {torch.__version__} sees no CUDA GPU")
        if dev.index is None:
            dev = torch.device("cuda", torch.cuda.current_device())
        elif dev.index >= torch.cuda.device_count():
            raise UsageError(f"device {device!r}: only {torch.cuda.device_count()} CUDA device(s) visible")
    return dev


def _has_4d_params(module) -> bool:
    return any(p.ndim == 4 for p in module.parameters())


def _bounds(module) -> Optional[tuple]:
    """(low, high) that a bounded activation module limits its output to (None for an open side)."""
    nn = torch.nn
    if isinstance(module, nn.ReLU6):
        return (0.0, 6.0)
    if isinstance(module, nn.Hardtanh):  # ReLU6 is a Hardtanh too, caught above
        return (float(module.min_val), float(module.max_val))
    if isinstance(module, nn.ReLU):
        return (0.0, None)
    if isinstance(module, (nn.Sigmoid, nn.Hardsigmoid)):
        return (0.0, 1.0)
    if isinstance(module, (nn.Tanh, nn.Softsign)):
        return (-1.0, 1.0)
    return None


def _canonical(t: "torch.Tensor") -> np.ndarray:
    """A batch tensor as float32 numpy: NCHW to NHWC, NC as is (a view; callers copy it)."""
    t = t.detach()
    if t.dtype != torch.float32:
        t = t.float()
    if t.ndim == 4:
        t = t.permute(0, 2, 3, 1)
    return t.cpu().numpy()


def _identity(module) -> str:
    """A hash of the module's class, its parameters and its buffers: what it computes."""
    from atlas_core.models import array_hash
    tensors = [t.detach().float().cpu().numpy() for t in module.state_dict().values() if t.is_floating_point()]
    return array_hash(tensors, extra=[type(module).__module__, type(module).__qualname__,
                                      list(module.state_dict())])


class TorchModel:
    """An opened torch module. The module is put in eval mode and moved to ``provider`` (in place).

    Layers are the named submodules that return one 4-D (N, C, H, W) or 2-D (N, C) tensor, in the
    order their forward calls finish, plus ``output`` for the module itself. A module called more
    than once per forward (a shared activation) gives one layer per call: ``name#0``, ``name#1``...
    """

    def __init__(self, module, name: str = "", *, size=None, mean=None, std=None, scale=None,
                 layout=None, batch_size=None, threads=None, device=None, **_ignored):
        if threads:
            torch.set_num_threads(int(threads))
        self.device = pick_device(device)
        self.provider = str(self.device)
        self.module = module.eval().to(self.device)
        self.name = name or type(module).__name__
        self.dtype = next((p.dtype for p in module.parameters() if p.is_floating_point()), torch.float32)
        h, w = parse_size(size) if size is not None else (DEFAULT_SIZE, DEFAULT_SIZE)
        self.size_given = size is not None
        if mean is None and std is None and scale is None:
            print(f"atlas: note: {self.name} sees pixels in [0, 1] at {h} x {w}, unnormalized (no --preset, --mean, "
                  "--std or --scale); ImageNet models want --preset imagenet", file=sys.stderr)
        elif size is None:
            print(f"atlas: note: {self.name} gets {h} x {w} images (no --size given)", file=sys.stderr)
        self.input_spec = InputSpec(
            layout=layout or "NCHW", channels=3, height=h, width=w,
            mean=tuple(mean) if mean is not None else (0.0, 0.0, 0.0),
            std=tuple(std) if std is not None else (1.0, 1.0, 1.0),
            scale=float(scale) if scale is not None else 1.0, batch=None)
        self.batch_size = max(1, int(batch_size or 32))
        self.identity = _identity(module)
        self._submodules = dict(module.named_modules())
        self._root = ROOT_NAME if ROOT_NAME not in self._submodules else f"({ROOT_NAME})"
        self._onnx: dict = {}
        # channels_last runs depthwise-heavy CNNs about 2x faster on CPU; a model whose forward cannot
        # take it (a .view() over channels) is run in its own format instead.
        self.channels_last = self.input_spec.layout == "NCHW" and _has_4d_params(module)
        if self.channels_last:
            self.module.to(memory_format=torch.channels_last)
            try:
                self._dry_run()
                return
            except UsageError:
                self.module.to(memory_format=torch.contiguous_format)
                self.channels_last = False
        self._dry_run()

    def _prepare(self, x: "torch.Tensor") -> "torch.Tensor":
        x = x.to(device=self.device, dtype=self.dtype)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last and x.ndim == 4 else x

    # -- layers -------------------------------------------------------------
    def _dry_run(self) -> None:
        """Run a batch of two zero images once with a hook on every submodule."""
        calls: list = []  # (module name, call index, output) in the order calls finish
        counts: dict = {}

        def hook(mname, _mod, _inp, out):
            k = counts.get(mname, 0)
            counts[mname] = k + 1
            calls.append((mname, k, tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__))

        handles = [m.register_forward_hook(partial(hook, n)) for n, m in self._submodules.items()]
        x = self._dummy(2)
        try:
            with torch.inference_mode():
                self.module(x)
        except Exception as exc:
            hint = "" if self.size_given else f" (no --size given, so {DEFAULT_SIZE} was used)"
            raise UsageError(f"{self.name} fails on an input of shape {tuple(x.shape)}{hint}: "
                             f"{_one_line(exc)}") from None
        finally:
            for h in handles:
                h.remove()
        self._layers: list[Layer] = []
        self._taps: dict = {}  # layer name -> (module name, call index)
        self._untappable: dict = {}  # name -> why it is not a layer
        for mname, k, out in calls:
            label = self._root if mname == "" else mname
            name = label if counts[mname] == 1 else f"{label}#{k}"
            op = type(self._submodules[mname]).__name__
            if not isinstance(out, tuple):
                self._untappable[name] = f"module {name!r} returns a {out}, not a tensor"
            elif len(out) not in (2, 4):
                self._untappable[name] = (f"module {name!r} returns a tensor of shape {out}; only (N, C, H, W) "
                                          "and (N, C) outputs are layers")
            else:
                shape = (out[2], out[3], out[1]) if len(out) == 4 else (out[1],)
                self._layers.append(Layer(name, op, shape, _bounds(self._submodules[mname])))
                self._taps[name] = (mname, k)
        self.output = self._root if self._root in self._taps else None
        self._counts = counts

    def _dummy(self, n: int) -> "torch.Tensor":
        h, w = self.input_spec.size
        shape = (n, self.input_spec.channels, h, w) if self.input_spec.layout == "NCHW" \
            else (n, h, w, self.input_spec.channels)
        return self._prepare(torch.zeros(shape))

    def layers(self) -> list[Layer]:
        return list(self._layers)

    def _tap(self, name: str) -> tuple:
        if name in self._taps:
            return self._taps[name]
        if name in self._untappable:
            raise UsageError(self._untappable[name])
        if name in self._submodules and name in self._counts:  # called several times
            n = self._counts[name]
            raise UsageError(f"module {name!r} runs {n} times per forward: name one call, "
                             f"{name}#0 ... {name}#{n - 1}")
        if name in self._submodules:
            raise UsageError(f"module {name!r} of {self.name} does not run in forward (a container?); "
                             "see atlas layers")
        near = difflib.get_close_matches(name, list(self._taps), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(near)}?" if near else "; see atlas layers"
        raise UsageError(f"unknown layer {name!r} in {self.name}{hint}")

    # -- activations ------------------------------------------------------------
    def activations(self, images, layers) -> dict:
        """Canonical activations (float32 NHWC or NC) of ``layers`` for NHWC [0, 1] ``images``."""
        wanted = list(dict.fromkeys(layers))
        keys = {self._tap(name): name for name in wanted}
        images = np.asarray(images, dtype=np.float32)
        if images.ndim != 4:
            raise UsageError(f"images must be a batch N x H x W x C, got shape {images.shape}")
        n = len(images)
        by_name = {layer.name: layer for layer in self._layers}
        if n == 0:
            return {name: np.zeros((0, *by_name[name].shape), np.float32) for name in wanted}
        out: dict = {}
        state = {"start": 0, "stop": 0}
        got: set = set()  # names captured from the current batch
        counts: dict = {}

        def hook(mname, _mod, _inp, output):
            k = counts.get(mname, 0)
            counts[mname] = k + 1
            name = keys.get((mname, k))
            if name is None:
                return None
            arr = _canonical(output)
            if name not in out:
                out[name] = np.empty((n, *arr.shape[1:]), np.float32)
            out[name][state["start"]:state["stop"]] = arr  # a copy: later in-place ops cannot touch it
            got.add(name)
            if len(got) == len(keys):
                raise _Stop
            return None

        handles = [self._submodules[m].register_forward_hook(partial(hook, m))
                   for m in dict.fromkeys(m for m, _ in keys)]
        try:
            for start in range(0, n, self.batch_size):
                stop = min(n, start + self.batch_size)
                state.update(start=start, stop=stop)
                counts.clear()
                got.clear()
                x = self._prepare(torch.from_numpy(self.input_spec.normalize(images[start:stop])))
                try:
                    with torch.inference_mode():
                        self.module(x)
                except _Stop:
                    pass
                if len(got) < len(keys):
                    missed = [name for name in wanted if name not in got]
                    raise UsageError(f"layer(s) {', '.join(missed)} did not run on images {start}..{stop - 1}")
        finally:
            for h in handles:
                h.remove()
        return {name: out[name] for name in wanted}

    # -- ONNX, for gradient-based renderers ---------------------------------------
    def onnx_model(self, layers=None, exporter: str = "dynamo"):
        """The module exported to ONNX in memory, with every layer (or those in ``layers``) as a graph output.

        By default the outputs are ``output`` (the model's) first, then every other layer in graph order.
        Graph input ``input``: the normalized batch in ``input_spec.layout``, batch dimension dynamic.
        Graph outputs are named by layer name and keep torch's layout (N, C, H, W) or (N, C).
        ``exporter`` is ``dynamo`` (torch.export + onnxscript, falls back to ``legacy`` if it fails) or
        ``legacy`` (TorchScript tracing). The result is cached per layer set.
        """
        if layers is None:  # the model's output first: readers take the first graph output as the model's
            first = [self.output] if self.output else []
            layers = first + [lay.name for lay in self._layers if lay.name != self.output]
        names = list(dict.fromkeys(layers))
        keys = [self._tap(name) for name in names]
        cache_key = (tuple(names), exporter)
        if cache_key not in self._onnx:
            self._onnx[cache_key] = _export(self.module, keys, names, self._dummy(2), exporter)
        return self._onnx[cache_key]

    def __repr__(self) -> str:
        return f"TorchModel({self.name!r}, {len(self._layers)} layers, on {self.provider})"


class _Tapped(torch.nn.Module):
    """Wraps a module so that its forward returns the tapped submodule outputs, in order."""

    def __init__(self, inner, keys):
        super().__init__()
        self.inner = inner
        self.keys = list(keys)

    def forward(self, x):
        got: dict = {}
        counts: dict = {}
        wanted = set(self.keys)

        def hook(mname, _mod, _inp, out):
            k = counts.get(mname, 0)
            counts[mname] = k + 1
            if (mname, k) in wanted:
                got[(mname, k)] = out
            return None

        modules = dict(self.inner.named_modules())
        handles = [modules[m].register_forward_hook(partial(hook, m)) for m in dict.fromkeys(m for m, _ in self.keys)]
        try:
            self.inner(x)
        finally:
            for h in handles:
                h.remove()
        return tuple(got[key] for key in self.keys)


def _export(module, keys, names, dummy, exporter: str):
    wrapper = _Tapped(module, keys).eval()
    errors = []
    quiet = logging.getLogger("torch.onnx")  # the exporter logs optional ops it skips (torchvision)
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        return _export_with(wrapper, names, dummy, exporter, errors)
    finally:
        quiet.setLevel(level)


def _export_with(wrapper, names, dummy, exporter, errors):
    import onnx
    for kind in (["dynamo", "legacy"] if exporter == "dynamo" else [exporter]):
        try:
            with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad(), \
                    contextlib.redirect_stdout(sys.stderr):
                warnings.simplefilter("ignore")
                if kind == "dynamo":
                    program = torch.onnx.export(
                        wrapper, (dummy,), dynamo=True, input_names=["input"], output_names=names,
                        dynamic_shapes=({0: torch.export.Dim("batch", min=1, max=4096)},),
                        optimize=True, verbose=False)
                    return program.model_proto
                if kind == "legacy":
                    buf = io.BytesIO()
                    torch.onnx.export(wrapper, (dummy,), buf, dynamo=False, input_names=["input"],
                                      output_names=names, dynamic_axes={"input": {0: "batch"}},
                                      opset_version=17)
                    return onnx.load_from_string(buf.getvalue())
                raise UsageError(f"unknown ONNX exporter {kind!r}; use dynamo or legacy")
        except UsageError:
            raise
        except Exception as exc:
            errors.append(f"{kind}: {_one_line(exc)}")
    raise UsageError(f"exporting to ONNX failed ({'; '.join(errors)})")
