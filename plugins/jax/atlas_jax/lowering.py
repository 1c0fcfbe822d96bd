"""Lower an ONNX graph to a jit-compilable, differentiable JAX function, up to any tensor.

>>> graph = OnnxGraph("model.onnx")
>>> fn = graph.function(["some_tensor"])     # params, x (the model's own input) -> [tensor]
>>> y, = jax.jit(fn)(graph.params, x)

Float initializers larger than a few numbers become ``params`` (arguments of the
function, so XLA does not fold them into the program); integer and tiny constants
stay numpy and shape arithmetic (Shape, Gather, Concat, Reshape targets ...) is
folded while tracing. Only the nodes needed for the requested tensors are run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np

from atlas_core import UsageError

SMALL = 64  # float constants up to this many elements stay numpy (clip bounds, scales, pad values)


class UnsupportedOp(UsageError):
    """An ONNX op the lowering does not cover (one line: the op and the node)."""


@dataclass(frozen=True)
class Variant:
    """How a graph is lowered: ``forward_mode`` for JVPs (no op may use a custom VJP, which JAX cannot run
    forwards); ``relax_maxpool`` gives every max-pool the average-pool's derivative (the reference's relaxation for
    attribution)."""

    forward_mode: bool = False
    relax_maxpool: bool = False


DEFAULT = Variant()


@dataclass
class _Ctx:
    xp: object
    opset: int
    op_type: str
    n_outputs: int
    variant: Variant = DEFAULT


def _attrs(node) -> dict:
    from onnx import helper, numpy_helper
    out = {}
    for attr in node.attribute:
        v = helper.get_attribute_value(attr)
        if isinstance(v, bytes):
            v = v.decode()
        elif hasattr(v, "data_type") and hasattr(v, "dims"):  # TensorProto
            v = numpy_helper.to_array(v)
        elif isinstance(v, list) and v and isinstance(v[0], bytes):
            v = [s.decode() for s in v]
        out[attr.name] = v
    return out


def node_label(node, index: int) -> str:
    return node.name or f"#{index} ({', '.join(node.output)})"


class OnnxGraph:
    """An ONNX model ready to be traced by JAX."""

    def __init__(self, model: Union[str, Path, "object"]):
        import onnx
        from onnx import numpy_helper
        if isinstance(model, (str, Path)):
            model = onnx.load(str(model))  # loads external data (.onnx.data) from the model's folder
        self.proto = model
        g = model.graph
        self.opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 13)
        self.nodes = list(g.node)
        self.constants: dict[str, np.ndarray] = {}
        self.params: dict[str, np.ndarray] = {}
        for init in g.initializer:
            arr = numpy_helper.to_array(init)
            if arr.dtype.kind == "f" and arr.size > SMALL:
                self.params[init.name] = np.asarray(arr, dtype=np.float32)
            else:
                self.constants[init.name] = arr
        inputs = [i for i in g.input if i.name not in self.constants and i.name not in self.params]
        if not inputs:
            raise UsageError("the ONNX graph has no input that is not an initializer")
        self.input = inputs[0]
        self.input_name = self.input.name
        dims = self.input.type.tensor_type.shape.dim
        self.input_shape = tuple(d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None
                                 for d in dims)
        self.output_names = [o.name for o in g.output]
        # the input's shape after the batch, for tails that read only its shape (the model sets the open sizes)
        self.placeholder_dims = tuple(d or 1 for d in self.input_shape[1:])
        self.producer = {}
        for i, node in enumerate(self.nodes):
            for out in node.output:
                if out:
                    self.producer[out] = i

    # -- graph queries ------------------------------------------------------
    def aliases(self, name: Optional[str]) -> set:
        """``name`` and the tensors it is an Identity of (an exporter that makes an intermediate tensor a graph
        output may rename it through an Identity, while the rest of the graph reads the original)."""
        out = set()
        while name is not None and name not in out:
            out.add(name)
            i = self.producer.get(name)
            node = self.nodes[i] if i is not None else None
            name = node.input[0] if node is not None and node.op_type == "Identity" and node.input else None
        return out

    def needed(self, outputs: Sequence[str], source: Optional[str] = None) -> list[int]:
        """Indices of the nodes needed to compute ``outputs`` (from ``source`` when given), in graph order."""
        stop = self.aliases(source) if source is not None else set()
        want, seen, stack = set(), set(), list(outputs)
        while stack:
            name = stack.pop()
            if name in seen or name in stop:
                continue
            seen.add(name)
            i = self.producer.get(name)
            if i is None:
                continue
            want.add(i)
            stack.extend(n for n in self.nodes[i].input if n)
        return sorted(want)

    def unsupported(self, indices: Optional[Sequence[int]] = None) -> list[tuple[str, str]]:
        from .ops import OPS
        idx = range(len(self.nodes)) if indices is None else indices
        return [(self.nodes[i].op_type, node_label(self.nodes[i], i)) for i in idx
                if self.nodes[i].op_type not in OPS or self.nodes[i].domain not in ("", "ai.onnx")]

    def tail_problem(self, outputs: Sequence[str], source: str) -> Optional[str]:
        """Why ``outputs`` cannot be computed from tensor ``source`` alone (None if they can): they must
        depend on it and on nothing else that comes from the input."""
        nodes = self.needed(outputs, source)
        reads = {n for i in nodes for n in self.nodes[i].input if n}
        if not (self.aliases(source) & (reads | set(outputs))):
            return f"{', '.join(outputs)} does not depend on {source!r}"
        if any(self.input_name in self.nodes[i].input and self.nodes[i].op_type != "Shape" for i in nodes):
            return (f"the graph from {source!r} to {', '.join(outputs)} also reads the model's input by another "
                    "path (a skip connection around it)")
        return None

    def check(self, outputs: Sequence[str], source: Optional[str] = None) -> None:
        missing = [o for o in outputs if o not in self.producer and o != self.input_name]
        if missing:
            raise UsageError(f"no tensor named {missing[0]!r} in the ONNX graph")
        bad = self.unsupported(self.needed(outputs, source))
        if bad:
            op_type, label = bad[0]
            raise UnsupportedOp(f"ONNX op {op_type!r} (node {label}) is not supported by the JAX lowering")

    # -- tracing -------------------------------------------------------------------
    def run(self, params: dict, x, outputs: Sequence[str], strict: bool = True, source: Optional[str] = None,
            variant: Variant = DEFAULT) -> list:
        """Evaluate the graph on ``x`` (the model's own input, or tensor ``source``) up to ``outputs``.

        With ``strict=False`` an unsupported node yields no value (its dependents are
        skipped) instead of raising; missing outputs come back as None.
        """
        import jax.numpy as jnp
        from . import ops
        env: dict = dict(self.constants)
        env.update(params)
        for name in self.aliases(source) if source is not None else [self.input_name]:
            env[name] = x
        if source is not None:  # the tail may read the input's shape (a batch size for a Reshape), never its values
            env[self.input_name] = np.zeros((x.shape[0],) + tuple(self.placeholder_dims), np.float32)
        for i in self.needed(outputs, source):
            node = self.nodes[i]
            fn = ops.OPS.get(node.op_type) if node.domain in ("", "ai.onnx") else None
            if fn is None:
                if strict:
                    raise UnsupportedOp(f"ONNX op {node.op_type!r} (node {node_label(node, i)}) is not "
                                        "supported by the JAX lowering")
                continue
            args = [env.get(n) if n else None for n in node.input]
            if any(n and n not in env for n in node.input):
                if strict:
                    raise UsageError(f"node {node_label(node, i)} reads {node.input} but some are undefined")
                continue
            folded = node.op_type in ops.FOLDABLE and all(a is None or isinstance(a, np.ndarray) for a in args)
            ctx = _Ctx(np if folded else jnp, self.opset, node.op_type, len(node.output), variant)
            try:
                results = fn(ctx, args, _attrs(node))
            except UsageError:
                raise
            except NotImplementedError as exc:
                if not strict:
                    continue
                raise UnsupportedOp(f"ONNX op {node.op_type!r} (node {node_label(node, i)}): {exc}") from None
            except Exception as exc:
                if not strict:
                    continue
                raise UsageError(f"lowering ONNX op {node.op_type!r} (node {node_label(node, i)}) failed: "
                                 f"{type(exc).__name__}: {exc}") from exc
            for name, value in zip(node.output, results):
                if name:
                    if isinstance(value, np.generic):
                        value = np.asarray(value)
                    env[name] = value
        return [env.get(o) for o in outputs]

    def function(self, outputs: Sequence[str], source: Optional[str] = None, variant: Variant = DEFAULT):
        """``f(params, x) -> list`` of the named tensors, ``x`` the model's input (or tensor ``source``);
        jit-able and differentiable in ``x`` (see :class:`Variant`)."""
        outputs = list(outputs)
        self.check(outputs, source)
        if source is not None:
            problem = self.tail_problem(outputs, source)
            if problem:
                raise UsageError(problem)

        def f(params, x):
            import jax.numpy as jnp
            return [jnp.asarray(v) for v in self.run(params, x, outputs, source=source, variant=variant)]

        return f

    def blocked_by(self, name: str) -> Optional[tuple]:
        """(op_type, node label) of the first node on the way to tensor ``name`` that the lowering does not
        cover, or None."""
        bad = self.unsupported(self.needed([name]))
        return bad[0] if bad else None

    def elem_types(self) -> dict:
        """{tensor: numpy dtype} as the graph declares or onnx's type inference gives them (quantized tensors
        are uint8 or int8 there, whatever the lowering computes them in); {} if inference fails."""
        if getattr(self, "_elem_types", None) is None:
            import onnx
            from onnx import helper
            types = {}
            try:
                light = onnx.ModelProto()
                light.CopyFrom(self.proto)
                inferred = onnx.shape_inference.infer_shapes(light, check_type=False, strict_mode=False)
                values = list(inferred.graph.value_info) + list(inferred.graph.output) + list(inferred.graph.input)
            except Exception:  # over 2 GB, or an op inference does not know: no declared types
                values = list(self.proto.graph.value_info) + list(self.proto.graph.output)
            for v in values:
                elem = v.type.tensor_type.elem_type if v.type.HasField("tensor_type") else 0
                if elem:
                    try:
                        types[v.name] = np.dtype(helper.tensor_dtype_to_np_dtype(elem))
                    except Exception:
                        pass
            self._elem_types = types
        return self._elem_types

    def traced_tensors(self, x_shape) -> dict:
        """Shapes, op types and dtypes of every tensor that depends on the input, in graph order.

        Returns {name: (op_type, shape, dtype)}, the dtype as the graph has it where it says (quantized
        tensors are integers there); tensors behind unsupported ops are left out.
        """
        import jax
        import jax.numpy as jnp
        names = [o for node in self.nodes for o in node.output if o]
        kinds = {}

        def probe(params, x):
            env_out = self.run(params, x, names, strict=False)
            return {n: v for n, v in zip(names, env_out) if v is not None and not isinstance(v, np.ndarray)}

        spec = jax.eval_shape(probe, {k: jax.ShapeDtypeStruct(v.shape, v.dtype) for k, v in self.params.items()},
                              jax.ShapeDtypeStruct(x_shape, jnp.float32))
        live = {self.input_name}
        for node in self.nodes:
            if any(n in live for n in node.input):
                live.update(o for o in node.output if o)
        declared = self.elem_types()
        for node in self.nodes:
            for o in node.output:
                if o in spec and o in live:
                    kinds[o] = (node.op_type, tuple(spec[o].shape), declared.get(o, spec[o].dtype))
        return kinds

    def layouts(self, shapes: dict, input_layout: str) -> dict:
        """{tensor: layout} for the rank-3 and rank-4 tensors of ``shapes`` ({name: shape}, batch first).

        Rank 4: ``NCHW`` or ``NHWC``. ONNX's convolution family is channels-first by definition; a Transpose
        (0, 2, 3, 1) or (0, 3, 1, 2) flips the layout; other ops keep their input's. Rank 3: ``NCL``
        (channels first, positions along the last axis: a Conv1d, or a Reshape/Squeeze of an NCHW map that
        keeps the channels on axis 1, a detector head's (N, 84, anchors)) or ``NLC`` (positions, then
        channels: token sequences, a Reshape of an NHWC map); a Transpose (0, 2, 1) flips it, other ops keep
        their input's, and anything else is NLC. The same rule as the onnx backend's.
        """
        out = {self.input_name: input_layout}
        for node in self.nodes:
            ins = [n for n in node.input if n in shapes or n == self.input_name]
            src = ins[0] if ins else None
            for o in node.output:
                if o not in shapes:
                    continue
                rank = len(shapes[o])
                if rank == 4:
                    out[o] = _layout4(node, out.get(src, "") if src else "", input_layout)
                elif rank == 3:
                    out[o] = _layout3(node, src, shapes, out)
        return {k: v for k, v in out.items() if k in shapes}


CHANNELS_FIRST = {"Conv", "ConvTranspose", "ConvInteger", "QLinearConv", "MaxPool", "AveragePool", "LpPool",
                  "GlobalMaxPool", "GlobalAveragePool", "GlobalLpPool", "BatchNormalization",
                  "InstanceNormalization", "LRN", "DepthToSpace", "SpaceToDepth", "GroupNormalization"}


def _perm(node) -> tuple:
    return next((tuple(a.ints) for a in node.attribute if a.name == "perm"), ())


def _layout4(node, source: str, input_layout: str) -> str:
    if node.op_type in CHANNELS_FIRST:
        return "NCHW"
    if node.op_type == "Transpose":
        perm = _perm(node)
        if perm == (0, 2, 3, 1) and source != "NHWC":
            return "NHWC"
        if perm == (0, 3, 1, 2) and source != "NCHW":
            return "NCHW"
        if perm != (0, 1, 2, 3):
            return "NCHW"
    return source if source in ("NCHW", "NHWC") else "NCHW"


def _layout3(node, source: Optional[str], shapes: dict, layouts: dict) -> str:
    if node.op_type in CHANNELS_FIRST:
        return "NCL"
    if source is None:
        return "NLC"
    before, kind = shapes.get(source, ()), layouts.get(source, "")
    if node.op_type == "Transpose" and len(before) == 3:
        perm = _perm(node) or (2, 1, 0)
        if perm == (0, 2, 1):
            return {"NCL": "NLC", "NLC": "NCL"}.get(kind, "NLC")
        return (kind or "NLC") if perm == (0, 1, 2) else "NLC"
    out = next(shapes[o] for o in node.output if o in shapes and len(shapes[o]) == 3)
    if len(before) == 4 and kind == "NCHW" and out[1] == before[1]:
        return "NCL"
    if len(before) == 4 and kind == "NHWC" and out[2] == before[3]:
        return "NLC"
    if len(before) == 3 and kind in ("NCL", "NLC"):
        return kind
    return "NLC"
