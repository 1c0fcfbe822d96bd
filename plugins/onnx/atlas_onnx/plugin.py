"""Registration of the ``onnx`` backend; onnx and onnxruntime are imported on first use only."""

from __future__ import annotations

from pathlib import Path

from atlas_core import hookimpl


class OnnxBackend:
    """Opens ``.onnx`` files (or an ``onnx.ModelProto``) and runs them with onnxruntime."""

    name = "onnx"

    def can_open(self, source) -> bool:
        if isinstance(source, (str, Path)):
            return Path(source).suffix.lower() == ".onnx"
        return type(source).__module__.startswith("onnx") and type(source).__name__ == "ModelProto"

    def open(self, source, **options):
        from .model import OnnxModel
        return OnnxModel(source, **options)


@hookimpl
def atlas_register_backends(register):
    register("onnx", OnnxBackend, priority=10,
             description="any .onnx model through onnxruntime (CPU, or CUDA with onnxruntime-gpu); taps any tensor")
