"""JAX for actatlas: native JAX models, an ONNX-to-JAX lowering, and feature-visualization icons.

Importing this package imports neither JAX nor onnx; they load on first use.
"""

import os

# XLA:CPU's YNNPACK reduce fusion gave 0 or inf, varying between runs, for the mean after the last
# convolution of onnx's light_squeezenet graph, where eager JAX and onnxruntime agree on 6.8e9. It stays
# off unless XLA_FLAGS chooses the fusion types itself; XLA reads the flag when its CPU client starts.
if "ynn_fusion_type" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_cpu_experimental_ynn_fusion_type=-reduce").strip()

from .model import JaxFunction, JaxModel  # noqa: E402

__all__ = ["JaxModel", "JaxFunction"]
