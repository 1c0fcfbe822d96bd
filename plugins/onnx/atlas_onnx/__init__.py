"""ONNX backend for actatlas: read any intermediate tensor of an exported model.

onnxruntime returns only a graph's declared outputs, so this backend rewrites
the graph to output the tensors asked for (and nothing it does not need).
Importing this package imports neither onnx nor onnxruntime.
"""

__version__ = "0.1.0"
