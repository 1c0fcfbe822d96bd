"""JAX for actatlas: native JAX models, an ONNX-to-JAX lowering, and feature-visualization icons.

Importing this package imports neither JAX nor onnx; they load on first use.
"""

from .model import JaxFunction, JaxModel

__all__ = ["JaxModel", "JaxFunction"]
