"""Graph work without running anything: loading safely, finding tappable tensors, rewriting outputs.

A tensor can be tapped when a node produces it, its values depend on the image
input (not only on its shape), it is floating point, and it keeps a batch axis
of one sample per image (rank 2, 3 or 4). Rank-4 tensors carry a layout
(channels first or last) found by propagating the input's layout through the
graph: ONNX's convolution family is channels-first by definition, and a
Transpose moves the channel axis.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Optional

import onnx
from onnx import TensorProto

from atlas_core import UsageError

FLOAT_TYPES = {TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.DOUBLE, TensorProto.BFLOAT16}
# ops whose output carries only the input's shape, not its values
SHAPE_ONLY_OPS = {"Shape", "Size"}
# ops defined on channels-first tensors: their rank-4 output is NCHW whatever came in
CHANNELS_FIRST_OPS = {
    "Conv", "ConvTranspose", "ConvInteger", "QLinearConv", "MaxPool", "AveragePool", "LpPool", "GlobalMaxPool",
    "GlobalAveragePool", "GlobalLpPool", "BatchNormalization", "InstanceNormalization", "LRN", "MaxRoiPool",
    "RoiAlign", "DepthToSpace", "SpaceToDepth", "MaxUnpool", "DeformConv", "GroupNormalization",
    "FusedConv",
}
FUSABLE_PRODUCERS = {"Conv", "ConvTranspose", "Gemm", "MatMul", "BatchNormalization"}
FUSABLE_READERS = {"Add", "Sum", "Sub", "Mul", "Div", "BatchNormalization"}
NHWC_TO_NCHW = (0, 3, 1, 2)
NCHW_TO_NHWC = (0, 2, 3, 1)


# -- loading -------------------------------------------------------------------------------------
def load_graph(path: Path) -> onnx.ModelProto:
    """The model without its external weights (they stay on disk), after checking it is ONNX at all."""
    if not path.exists():
        raise UsageError(f"model file {str(path)!r} not found")
    if path.is_dir():
        raise UsageError(f"{str(path)!r} is a folder: give the .onnx file inside it")
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # protobuf's DecodeError and friends
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise UsageError(f"{str(path)!r} is not an ONNX model (cannot parse it: {reason})") from None
    if model.ir_version <= 0 or not model.graph.node or not model.opset_import:
        raise UsageError(f"{str(path)!r} is not an ONNX model (no graph in it)")
    check_external_data(model, path.parent)
    return model


def all_tensors(graph: onnx.GraphProto) -> Iterator[TensorProto]:
    """Every TensorProto of a graph: initializers, sparse values, node attributes, subgraphs."""
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield sparse.values
        yield sparse.indices
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
            if attr.HasField("g"):
                yield from all_tensors(attr.g)
            for sub in attr.graphs:
                yield from all_tensors(sub)


def check_external_data(model: onnx.ModelProto, folder: Path) -> None:
    """Refuse external-data locations outside the model's folder, damaged entries, missing or short files."""
    from atlas_core.models import external_data_file
    for tensor in all_tensors(model.graph):
        if tensor.data_location == TensorProto.EXTERNAL:
            info = {entry.key: entry.value for entry in tensor.external_data}
            external_data_file(folder, info.get("location", ""), info.get("offset", "0"), info.get("length", "0"),
                               tensor.name)


def external_files(model: onnx.ModelProto, folder: Path) -> list:
    """The external-data files the model's tensors name (checked by ``check_external_data``), sorted."""
    files = set()
    for tensor in all_tensors(model.graph):
        if tensor.data_location == TensorProto.EXTERNAL:
            location = {entry.key: entry.value for entry in tensor.external_data}.get("location", "")
            files.add(os.path.realpath(os.path.join(os.path.realpath(folder), location)))
    return sorted(files)


# -- analysis ------------------------------------------------------------------------------------
@dataclass
class Tensor:
    """One node output: what produces it and, once known, its type and shape (batch of one)."""

    name: str
    op_type: str
    order: int  # position of the producing node in the file
    elem_type: int = 0
    dims: Optional[tuple] = None  # None: rank unknown; entries None where unknown
    layout: str = ""  # "NCHW" or "NHWC" for rank-4 tensors
    depends: bool = False  # its values depend on the image input's values


@dataclass
class GraphInfo:
    image_input: str
    inputs: list  # names of the graph's real inputs (not initializers)
    outputs: list  # names of the graph's outputs
    tensors: dict = field(default_factory=dict)  # name -> Tensor, in file order
    consumers: dict = field(default_factory=dict)  # name -> op types of the nodes that read it

    def fusable(self, name: str) -> bool:
        """Likely fused away by onnxruntime (e.g. a Conv's output into the residual Add or the batch
        norm that is its only reader): tapping it directly would change how the rest is computed."""
        t = self.tensors.get(name)
        readers = self.consumers.get(name, [])
        return (t is not None and t.op_type in FUSABLE_PRODUCERS and len(readers) == 1
                and readers[0] in FUSABLE_READERS and name not in self.outputs)


def real_inputs(graph: onnx.GraphProto) -> list:
    inits = {t.name for t in graph.initializer} | {t.values.name for t in graph.sparse_initializer}
    return [i for i in graph.input if i.name not in inits]


MAX_DIM = 1 << 16  # a declared dimension above this (int64's max, say) means "any", as do 0 and negatives


def dims_of(value_info: onnx.ValueInfoProto, symbols: bool = False) -> Optional[tuple]:
    """The declared dimensions: ints, or None where open (a name, -1, 0, a negative or absurd value; some
    exporters write -1 or int64's maximum for "any size")."""
    ttype = value_info.type.tensor_type
    if not ttype.HasField("shape"):
        return None
    return tuple(d.dim_value if d.HasField("dim_value") and 0 < d.dim_value <= MAX_DIM else
                 (d.dim_param or None) if symbols else None for d in ttype.shape.dim)


def subgraph_inputs(node: onnx.NodeProto) -> set:
    """Names a node's subgraphs (If/Loop/Scan bodies) read, including outer-scope ones."""
    names: set = set()
    for attr in node.attribute:
        for sub in ([attr.g] if attr.HasField("g") else []) + list(attr.graphs):
            for inner in sub.node:
                names.update(inner.input)
                names.update(subgraph_inputs(inner))
    return names


def node_inputs(node: onnx.NodeProto) -> list:
    return [n for n in list(node.input) + sorted(subgraph_inputs(node)) if n]


def topological(graph: onnx.GraphProto) -> list:
    """Node indices in an order where producers come first (the file's own order when it is valid)."""
    produced = {out: i for i, node in enumerate(graph.node) for out in node.output if out}
    deps = [{produced[n] for n in node_inputs(node) if n in produced and produced[n] != i}
            for i, node in enumerate(graph.node)]
    if all(d < i for i, ds in enumerate(deps) for d in ds):
        return list(range(len(graph.node)))
    done: set = set()
    order: list = []
    pending = list(range(len(graph.node)))
    while pending:
        ready = [i for i in pending if deps[i] <= done]
        if not ready:  # a cycle: keep the rest in file order, onnxruntime will say what is wrong
            order += pending
            break
        order += ready
        done.update(ready)
        pending = [i for i in pending if i not in done]
    return order


def analyse(model: onnx.ModelProto, image_input: str, input_layout: str) -> GraphInfo:
    """Producers, value dependence on ``image_input`` and per-tensor layout, without shapes yet."""
    graph = model.graph
    info = GraphInfo(image_input=image_input, inputs=[i.name for i in real_inputs(graph)],
                     outputs=[o.name for o in graph.output])
    for i, node in enumerate(graph.node):
        for out in node.output:
            if out and out not in info.tensors:
                info.tensors[out] = Tensor(out, node.op_type, i)
        for name in node_inputs(node):
            info.consumers.setdefault(name, []).append(node.op_type)
    depends = {image_input}
    layouts = {image_input: input_layout}
    for i in topological(graph):
        node = graph.node[i]
        ins = node_inputs(node)
        if node.op_type not in SHAPE_ONLY_OPS and any(n in depends for n in ins):
            depends.update(o for o in node.output if o)
        layout = node_layout(node, layouts)
        if layout:
            for out in node.output:
                if out:
                    layouts[out] = layout
    for t in info.tensors.values():
        t.depends = t.name in depends
        t.layout = layouts.get(t.name, "NCHW")
    return info


def node_layout(node: onnx.NodeProto, layouts: dict) -> str:
    """Layout of a node's rank-4 outputs: fixed by channels-first ops, moved by Transpose, else inherited."""
    if node.op_type in CHANNELS_FIRST_OPS:
        return "NCHW"
    if node.op_type == "Transpose":
        perm = next((tuple(a.ints) for a in node.attribute if a.name == "perm"), ())
        source = layouts.get(node.input[0], "")
        if perm == NCHW_TO_NHWC and source != "NHWC":
            return "NHWC"
        if perm == NHWC_TO_NCHW and source != "NCHW":
            return "NCHW"
        return source if perm == (0, 1, 2, 3) else ""
    for name in node.input:
        if layouts.get(name):
            return layouts[name]
    return ""


def sequence_layouts(model: onnx.ModelProto, info: GraphInfo, input_dims: tuple, input_layout: str) -> None:
    """Give rank-3 tensors (once their dims are known) a layout: ``NCL`` (channels first, positions along
    the last axis: a Conv1d, or a Reshape/Squeeze of an NCHW map that keeps the channels on axis 1, as a
    detector head's (N, 84, anchors)) or ``NLC`` (positions, then channels: token sequences, a Reshape of
    an NHWC map). A Transpose (0, 2, 1) flips it, other ops keep their input's, anything else is NLC.
    The JAX lowering applies the same rule (``atlas_jax.lowering.OnnxGraph.layouts``)."""
    dims = {info.image_input: tuple(input_dims)}
    layouts = {info.image_input: input_layout}
    for t in info.tensors.values():
        if t.depends and t.dims is not None:
            dims[t.name] = t.dims
            layouts[t.name] = t.layout
    graph = model.graph
    for i in topological(graph):
        node = graph.node[i]
        source = next((n for n in node.input if n in dims), None)
        for out in node.output:
            t = info.tensors.get(out)
            if t is None or t.dims is None or len(t.dims) != 3 or not t.depends:
                continue
            t.layout = layouts[out] = _sequence_layout(node, source, dims, layouts, t.dims)


def _sequence_layout(node: onnx.NodeProto, source: Optional[str], dims: dict, layouts: dict, out: tuple) -> str:
    if node.op_type in CHANNELS_FIRST_OPS:
        return "NCL"
    if source is None:
        return "NLC"
    before, kind = dims.get(source) or (), layouts.get(source, "")
    if node.op_type == "Transpose" and len(before) == 3:
        perm = next((tuple(a.ints) for a in node.attribute if a.name == "perm"), (2, 1, 0))
        if perm == (0, 2, 1):
            return {"NCL": "NLC", "NLC": "NCL"}.get(kind, "NLC")
        return (kind if kind in ("NCL", "NLC") else "NLC") if perm == (0, 1, 2) else "NLC"
    if len(before) == 4 and kind == "NCHW" and out[1] == before[1]:
        return "NCL"
    if len(before) == 4 and kind == "NHWC" and out[2] == before[3]:
        return "NLC"
    if len(before) == 3 and kind in ("NCL", "NLC"):
        return kind
    return "NLC"


def dropout_masks(model: onnx.ModelProto) -> set:
    """The mask outputs of Dropout nodes: ones at inference, never worth an atlas (not listed)."""
    return {node.output[1] for node in model.graph.node
            if node.op_type == "Dropout" and len(node.output) > 1 and node.output[1]}


def infer_shapes(model: onnx.ModelProto, image_input: str, input_dims: tuple, info: GraphInfo,
                 symbols: bool = False) -> None:
    """Fill each tensor's type and dims by onnx shape inference for the given input dims; with
    ``symbols``, symbolic dimensions are kept as their names (else they become None)."""
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    graph = probe.graph
    del graph.value_info[:]
    for value in graph.input:
        if value.name == image_input:
            set_dims(value, input_dims)
    for value in graph.output:  # declared output shapes may pin another batch
        value.type.tensor_type.ClearField("shape")
    try:
        inferred = onnx.shape_inference.infer_shapes(probe, check_type=False, strict_mode=False, data_prop=True)
    except Exception:  # inference gave up on some op: shapes get probed by running instead
        return
    for value in list(inferred.graph.value_info) + list(inferred.graph.output):
        t = info.tensors.get(value.name)
        if t is None or not value.type.HasField("tensor_type"):
            continue
        t.elem_type = value.type.tensor_type.elem_type or t.elem_type
        dims = dims_of(value, symbols)
        if dims is not None:
            t.dims = dims


def set_dims(value: onnx.ValueInfoProto, dims: tuple) -> None:
    """Set a value's shape; an entry that is a str becomes a symbolic dimension, None an unknown one."""
    shape = value.type.tensor_type.shape
    shape.ClearField("dim")
    for d in dims:
        dim = shape.dim.add()
        if isinstance(d, str):
            dim.dim_param = d
        elif d is not None:
            dim.dim_value = int(d)


# -- rewriting -------------------------------------------------------------------------------------
def needed_nodes(graph: onnx.GraphProto, outputs: list) -> list:
    """Indices (file order) of the nodes that the given outputs depend on."""
    producer = {out: i for i, node in enumerate(graph.node) for out in node.output if out}
    keep: set = set()
    stack = [producer[o] for o in outputs if o in producer]
    while stack:
        i = stack.pop()
        if i in keep:
            continue
        keep.add(i)
        stack.extend(producer[n] for n in node_inputs(graph.node[i]) if n in producer)
    return sorted(keep)


def tap(model: onnx.ModelProto, outputs: list, elem_types: dict, copies: Optional[dict] = None,
        batch: Optional[str] = None, image_input: str = "") -> onnx.ModelProto:
    """A copy of ``model`` whose graph outputs are exactly ``outputs`` (original outputs keep their
    declaration), with nodes nobody needs removed. ``copies`` maps a tensor to a new name computed by
    a copy of its producer, placed right after it. With ``batch``, the image input's first axis
    becomes that symbolic dimension (a graph exported with batch 1 then takes any batch)."""
    tapped = onnx.ModelProto()
    tapped.CopyFrom(model)
    graph = tapped.graph
    for tensor, new_name in (copies or {}).items():
        at, producer = next((i, n) for i, n in enumerate(graph.node) if tensor in n.output)
        twin = onnx.NodeProto()
        twin.CopyFrom(producer)
        twin.name = (producer.name or producer.op_type) + "::atlas_tap"
        del twin.output[:]
        twin.output.extend(new_name if out == tensor else (f"{new_name}::{k}" if out else "")
                           for k, out in enumerate(producer.output))
        graph.node.insert(at + 1, twin)
    declared = {o.name: o for o in model.graph.output}  # the original's, untouched
    del graph.output[:]
    for name in outputs:
        if name in declared:
            graph.output.append(declared[name])
        elif elem_types.get(name):
            graph.output.append(onnx.helper.make_tensor_value_info(name, elem_types[name], None))
        else:  # type unknown: onnxruntime infers it
            graph.output.append(onnx.ValueInfoProto(name=name))
    keep = needed_nodes(graph, outputs)
    if len(keep) < len(graph.node):
        nodes = [graph.node[i] for i in keep]
        del graph.node[:]
        graph.node.extend(nodes)
        used = {n for node in nodes for n in node_inputs(node)} | set(outputs)
        weights = [t for t in graph.initializer if t.name in used]
        unused = {t.name for t in graph.initializer} - used
        del graph.initializer[:]
        graph.initializer.extend(weights)
        inputs = [i for i in graph.input if i.name not in unused]
        del graph.input[:]
        graph.input.extend(inputs)
    if batch:
        for value in graph.input:
            if value.name == image_input:
                dims = dims_of(value) or ()
                set_dims(value, (batch,) + tuple(dims[1:]))
        for value in graph.output:
            value.type.tensor_type.ClearField("shape")
        del graph.value_info[:]
    return tapped


# -- output bounds ---------------------------------------------------------------------------------
FIXED_BOUNDS = {"Relu": (0.0, None), "Sigmoid": (0.0, 1.0), "HardSigmoid": (0.0, 1.0), "Tanh": (-1.0, 1.0),
                "Softsign": (-1.0, 1.0)}
NO_BOUND = 3e38  # Clip's defaults before opset 11 are +-FLT_MAX: no bound at all


def output_bounds(graph: onnx.GraphProto, node_index: int) -> Optional[tuple]:
    """(low, high) that the node at ``node_index`` bounds its first output to, None for a side it
    leaves open; None if the op bounds nothing or its limits are not constants in the file."""
    node = graph.node[node_index]
    if node.op_type in FIXED_BOUNDS:
        return FIXED_BOUNDS[node.op_type]
    if node.op_type != "Clip":
        return None
    attrs = {a.name: a.f for a in node.attribute if a.name in ("min", "max")}
    limits = [attrs.get("min"), attrs.get("max")]
    for k, name in enumerate(list(node.input[1:3])):
        if name:
            limits[k] = _scalar(graph, name)
    limits = [None if v is None or abs(v) >= NO_BOUND else float(v) for v in limits]
    return tuple(limits) if limits != [None, None] else None


def _scalar(graph: onnx.GraphProto, name: str) -> Optional[float]:
    """The value of a one-element constant (an initializer held in the file, or a Constant node)."""
    from onnx import numpy_helper
    tensor = next((t for t in graph.initializer if t.name == name), None)
    if tensor is None:
        node = next((n for n in graph.node if n.op_type == "Constant" and name in n.output), None)
        attr = next((a for a in node.attribute if a.name in ("value", "value_float")), None) if node else None
        if attr is None:
            return None
        if attr.name == "value_float":
            return float(attr.f)
        tensor = attr.t
    if tensor.data_location == TensorProto.EXTERNAL:
        return None
    values = numpy_helper.to_array(tensor).ravel()
    return float(values[0]) if values.size == 1 else None
