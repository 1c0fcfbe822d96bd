"""Fashion-MNIST (Debian's ``dataset-fashion-mnist``) and three small CNNs trained on it here, for layer health.

- :func:`fashion_images` reads the idx files with numpy into an :class:`atlas_core.images.ArraySource`;
  :func:`fashion_labels` gives the class indices, :data:`CLASS_NAMES` their names.
- :func:`fashion_models` trains the same small CNN with three strategies (torch, CPU, fixed seeds), exports
  each to ONNX and caches them in ``cache_dir()``: ``healthy`` (Adam, lr 1e-3, one epoch over 20,000 images),
  ``dead`` (the same with lr 0.3, 300 times too high: many ReLUs die), ``memorize`` (a 512-wide dense layer,
  60 epochs over only 256 images, no regularization). ``plugins/demo/scripts/fashion_models.py`` trains them,
  prints their accuracy and runs the worked example of docs/health.md.

The graphs name the tapped tensors plainly: ``relu1`` (28 x 28 x 16), ``relu2`` (14 x 14 x 32), ``relu3``
(7 x 7 x 64), ``relu4`` (the dense layer) and ``logits``.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import tempfile
import time
import warnings
from functools import lru_cache
from pathlib import Path
from typing import Optional

import numpy as np

from atlas_core.images import ArraySource

from .assets import cache_dir

FASHION_DIR = Path(os.environ.get("ATLAS_FASHION_MNIST") or "/usr/share/datasets/fashion-mnist")
FILES = {"train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
         "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")}
CLASS_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
               "Ankle boot")
INSTALL = "apt-get install -y dataset-fashion-mnist"
LAYERS = ("relu1", "relu2", "relu3", "relu4", "logits")
SIDECAR = {"preset": "none", "size": [28, 28]}

# the three training strategies: same seed, same data order, same convolutions
STRATEGIES = {
    "healthy": {"train": [0, 20000], "epochs": 1, "lr": 1e-3, "batch": 64, "hidden": 128},
    "dead": {"train": [0, 20000], "epochs": 1, "lr": 0.3, "batch": 64, "hidden": 128},
    "memorize": {"train": [0, 256], "epochs": 60, "lr": 1e-3, "batch": 32, "hidden": 512},
}
SEED = 0
VERSION = 1  # bump when the training code changes


# -- the data set ------------------------------------------------------------------------------------
def fashion_available() -> bool:
    return all((FASHION_DIR / name).is_file() for pair in FILES.values() for name in pair)


def _read_idx(path: Path, magic: int, dims: int) -> np.ndarray:
    """An idx file: a big-endian header of ``magic`` and ``dims`` sizes, then uint8 values."""
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: Fashion-MNIST comes from Debian ({INSTALL})")
    with gzip.open(path, "rb") as f:
        data = f.read()
    found = int(np.frombuffer(data, ">u4", count=1)[0]) if len(data) >= 4 else None
    if found != magic or len(data) < 4 * (1 + dims):
        raise ValueError(f"{path} is not an idx file of this kind (magic {found}, expected {magic})")
    shape = tuple(int(d) for d in np.frombuffer(data, ">u4", count=dims, offset=4))
    values = np.frombuffer(data, np.uint8, offset=4 * (1 + dims))
    if values.size != int(np.prod(shape)):
        raise ValueError(f"{path} holds {values.size} values; its header says {shape}")
    return values.reshape(shape)


@lru_cache(maxsize=None)
def fashion_arrays(split: str = "train") -> tuple:
    """(images uint8 N x 28 x 28, labels uint8 N) of ``split`` ("train": 60,000; "test": 10,000)."""
    if split not in FILES:
        raise ValueError("split must be 'train' or 'test'")
    images, labels = FILES[split]
    return _read_idx(FASHION_DIR / images, 2051, 3), _read_idx(FASHION_DIR / labels, 2049, 1)


def fashion_images(split: str = "test", start: int = 0, count: Optional[int] = None) -> ArraySource:
    """Images ``start`` .. ``start + count`` of ``split`` as an image source (names like ``fashion-test/00042``)."""
    images, _ = fashion_arrays(split)
    stop = len(images) if count is None else min(len(images), start + count)
    return ArraySource(images[start:stop], names=[f"fashion-{split}/{i:05d}" for i in range(start, stop)])


def fashion_labels(split: str = "test", start: int = 0, count: Optional[int] = None) -> np.ndarray:
    _, labels = fashion_arrays(split)
    return labels[start:None if count is None else start + count].astype(np.int64)


def training_images(name: str) -> ArraySource:
    """The images the model ``name`` was trained on."""
    start, stop = STRATEGIES[name]["train"]
    return fashion_images("train", start, stop - start)


# -- the models --------------------------------------------------------------------------------------
def _network(hidden: int):
    import torch.nn as nn

    class SmallCNN(nn.Module):
        """Three 3x3 convolutions and a dense layer, each with batch norm and a ReLU."""

        def __init__(self):
            super().__init__()
            self.conv1, self.bn1, self.relu1 = nn.Conv2d(1, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU()
            self.conv2, self.bn2, self.relu2 = nn.Conv2d(16, 32, 3, padding=1), nn.BatchNorm2d(32), nn.ReLU()
            self.conv3, self.bn3, self.relu3 = nn.Conv2d(32, 64, 3, padding=1), nn.BatchNorm2d(64), nn.ReLU()
            self.pool = nn.MaxPool2d(2)
            self.fc1, self.bn4, self.relu4 = nn.Linear(64 * 7 * 7, hidden), nn.BatchNorm1d(hidden), nn.ReLU()
            self.fc2 = nn.Linear(hidden, 10)

        def forward(self, x):
            x = self.pool(self.relu1(self.bn1(self.conv1(x))))
            x = self.pool(self.relu2(self.bn2(self.conv2(x))))
            x = self.relu3(self.bn3(self.conv3(x)))
            return self.fc2(self.relu4(self.bn4(self.fc1(x.flatten(1)))))

    return SmallCNN()


def _tensor(images: np.ndarray):
    import torch
    return torch.from_numpy(images.astype(np.float32) / 255.0)[:, None]


def train(name: str):
    """The torch model of strategy ``name``, trained on CPU with fixed seeds (eval mode)."""
    import torch
    import torch.nn.functional as F

    cfg = STRATEGIES[name]
    torch.manual_seed(SEED)
    net = _network(cfg["hidden"])
    opt = torch.optim.Adam(net.parameters(), lr=cfg["lr"])
    images, labels = fashion_arrays("train")
    start, stop = cfg["train"]
    x, y = _tensor(images[start:stop]), torch.from_numpy(labels[start:stop].astype(np.int64))
    order = torch.Generator().manual_seed(SEED)
    net.train()
    for _ in range(cfg["epochs"]):
        perm = torch.randperm(len(x), generator=order)
        for s in range(0, len(x), cfg["batch"]):
            idx = perm[s:s + cfg["batch"]]
            if len(idx) < 2:  # batch norm needs two samples
                continue
            loss = F.cross_entropy(net(x[idx]), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
    return net.eval()


def accuracy(net, split: str, start: int = 0, count: Optional[int] = None) -> float:
    import torch
    images, labels = fashion_arrays(split)
    stop = len(images) if count is None else start + count
    with torch.no_grad():
        pred = torch.cat([net(_tensor(images[i:min(stop, i + 2000)])).argmax(1)
                          for i in range(start, stop, 2000)]).numpy()
    return float((pred == labels[start:stop]).mean())


def export(net, path: Path) -> None:
    """ONNX with a dynamic batch; the ReLU outputs renamed relu1..relu4 and the output ``logits``."""
    import onnx
    import torch
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter is deprecated; it takes a second, dynamo ten
        torch.onnx.export(net, (torch.zeros(2, 1, 28, 28),), str(path), dynamo=False, input_names=["image"],
                          output_names=["logits"], dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}},
                          opset_version=17)
    model = onnx.load(str(path))
    plain = {}
    for node in model.graph.node:  # the legacy exporter names outputs "/relu1/Relu_output_0"
        for out in node.output:
            parts = out.strip("/").split("/")
            if node.op_type == "Relu" and len(parts) == 2 and parts[0] in LAYERS:
                plain[out] = parts[0]
    for node in model.graph.node:
        node.input[:] = [plain.get(n, n) for n in node.input]
        node.output[:] = [plain.get(n, n) for n in node.output]
    missing = set(LAYERS) - set(plain.values()) - {"logits"}
    if missing:
        raise RuntimeError(f"the export lost the tensors {sorted(missing)}")
    model.graph.name = path.stem
    onnx.save(model, str(path))
    path.with_name(path.name + ".input.json").write_text(json.dumps(SIDECAR))


def _folder() -> Path:
    key = hashlib.sha256(json.dumps([VERSION, SEED, STRATEGIES], sort_keys=True).encode()).hexdigest()[:10]
    return cache_dir() / f"fashion-cnn-{key}"


def fashion_models(quiet: bool = True) -> dict:
    """{"healthy", "dead", "memorize"}: paths of the cached ONNX models, trained and exported on first use
    (well under a minute of training on two idle cores; concurrent callers are safe). ``metrics.json`` beside them holds
    each model's training and test accuracy and training time."""
    folder = _folder()
    if (folder / "metrics.json").is_file():
        return {name: folder / f"{name}.onnx" for name in STRATEGIES}
    if not fashion_available():
        raise FileNotFoundError(f"Fashion-MNIST is not installed in {FASHION_DIR}: {INSTALL}")
    import torch
    tmp = Path(tempfile.mkdtemp(dir=cache_dir(), prefix=".fashion-"))
    metrics = {}
    threads = torch.get_num_threads()
    torch.set_num_threads(min(2, os.cpu_count() or 1))
    try:
        for name, cfg in STRATEGIES.items():
            t = time.perf_counter()
            net = train(name)
            seconds = time.perf_counter() - t
            start, stop = cfg["train"]
            metrics[name] = {**cfg, "seconds": round(seconds, 1),
                             "train_accuracy": round(accuracy(net, "train", start, stop - start), 4),
                             "test_accuracy": round(accuracy(net, "test"), 4)}
            export(net, tmp / f"{name}.onnx")
            if not quiet:
                m = metrics[name]
                print(f"{name:9s} trained in {seconds:5.1f} s: train accuracy {m['train_accuracy']:.3f}, "
                      f"test accuracy {m['test_accuracy']:.3f}", flush=True)
    finally:
        torch.set_num_threads(threads)
    (tmp / "metrics.json").write_text(json.dumps(metrics, indent=1))
    try:
        tmp.rename(folder)
    except OSError:  # another process won the race
        shutil.rmtree(tmp, ignore_errors=True)
    return {name: folder / f"{name}.onnx" for name in STRATEGIES}


def fashion_metrics() -> dict:
    fashion_models()
    return json.loads((_folder() / "metrics.json").read_text())
