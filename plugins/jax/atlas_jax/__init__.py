"""JAX for actatlas: native JAX models, an ONNX-to-JAX lowering, and feature-visualization icons.

Importing this package imports neither JAX nor onnx; they load on first use.
"""

import os
from importlib import metadata


def _avoid_ynn_reduce_fusion() -> None:
    """XLA:CPU's YNNPACK reduce fusion gave 0 or inf, varying between runs, for the mean after the last
    convolution of onnx's light_squeezenet graph, where eager JAX and onnxruntime agree on 6.8e9. Turn it off
    unless XLA_FLAGS chooses the fusion types itself. XLA reads the flag when its CPU client starts, and
    aborts on a flag it does not know, so only jaxlib 0.10 and later get it (seen with 0.10.2)."""
    flags = os.environ.get("XLA_FLAGS", "")
    try:
        major, minor = (int(part) for part in metadata.version("jaxlib").split(".")[:2])
    except (metadata.PackageNotFoundError, ValueError):
        return
    if (major, minor) >= (0, 10) and "ynn_fusion_type" not in flags:
        os.environ["XLA_FLAGS"] = (flags + " --xla_cpu_experimental_ynn_fusion_type=-reduce").strip()


_avoid_ynn_reduce_fusion()

from .model import JaxFunction, JaxGradients, JaxModel  # noqa: E402

__all__ = ["JaxModel", "JaxFunction", "JaxGradients"]
