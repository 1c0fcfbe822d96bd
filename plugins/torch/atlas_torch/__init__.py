"""PyTorch backend for actatlas (backend name ``torch``).

Importing this package does not import torch; :func:`open_module` does.
"""

from .backend import TorchBackend, is_import_path, is_torch_module

__all__ = ["TorchBackend", "is_import_path", "is_torch_module"]
