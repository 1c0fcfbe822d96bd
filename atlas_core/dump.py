"""`atlas activations`: the full activations of named layers for every image (ONNX issue fills this in)."""

from .types import UsageError


def dump_activations(model, source, layers, output, batch_size=32):
    raise UsageError("atlas activations is not implemented yet")
