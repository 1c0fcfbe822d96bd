"""The samples store: activation vectors with provenance, on disk in chunks.

A chunk holds the samples of a contiguous range of images and is written
atomically (temporary file, then rename), so a run killed at any moment leaves
only complete chunks; the next run resumes after the last one. Collection keeps
one chunk in memory at a time. ``consolidate`` then joins the chunks into one
memory-mapped array for the layout stage.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Optional

import numpy as np

CHUNK_GLOB = "chunk-*.npz"


def fingerprint(config: dict) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _atomic_write(path: Path, write) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        write(f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


class SampleStore:
    """Chunked, resumable store of samples under ``root``.

    ``config`` identifies what is collected (model, layer, images, positions,
    seed); a store with another config is discarded and started afresh.
    """

    def __init__(self, root, config: dict):
        self.root = Path(root)
        self.config = config
        self.key = fingerprint(config)
        meta = self.root / "meta.json"
        if meta.is_file():
            try:
                same = json.loads(meta.read_text()).get("key") == self.key
            except ValueError:
                same = False
            if not same:
                shutil.rmtree(self.root)
        self.root.mkdir(parents=True, exist_ok=True)
        if not meta.is_file():
            _atomic_write(meta, lambda f: f.write(json.dumps({"key": self.key, "config": config},
                                                             indent=1, default=str).encode()))
        self._acts: Optional[np.ndarray] = None
        self._prov: Optional[np.ndarray] = None

    # -- writing ----------------------------------------------------------
    def chunks(self) -> list[Path]:
        return sorted(self.root.glob(CHUNK_GLOB))

    def next_image(self) -> int:
        """The first image not covered by a complete chunk."""
        chunks = self.chunks()
        if not chunks:
            return 0
        with np.load(chunks[-1]) as z:
            return int(z["end"])

    def write_chunk(self, start: int, end: int, acts: np.ndarray, prov: np.ndarray,
                    predictions: np.ndarray, probabilities: np.ndarray, skipped: list) -> None:
        path = self.root / f"chunk-{start:09d}.npz"
        skipped_json = np.frombuffer(json.dumps(skipped).encode(), dtype=np.uint8)
        _atomic_write(path, lambda f: np.savez(
            f, start=start, end=end, acts=acts.astype(np.float32), prov=prov.astype(np.int32),
            pred=predictions.astype(np.int32), prob=probabilities.astype(np.float32), skipped=skipped_json))

    # -- reading ----------------------------------------------------------
    def consolidate(self) -> None:
        """Join the chunks into ``acts.npy`` (memory-mapped), ``prov.npy`` and per-image predictions."""
        done = self.root / "consolidated.json"
        chunks = self.chunks()
        if done.is_file() and json.loads(done.read_text()).get("chunks") == len(chunks):
            return
        n, channels, predictions, probabilities, skipped = 0, None, {}, {}, []
        for path in chunks:
            with np.load(path) as z:
                n += len(z["prov"])
                channels = z["acts"].shape[1] if z["acts"].ndim == 2 and len(z["acts"]) else channels
        if channels is None:
            channels = 0
        prov = np.zeros((n, 3), dtype=np.int32)
        offset = 0
        tmp = self.root / ".acts.npy.tmp"
        with open(tmp, "wb") as f:  # streamed chunk by chunk: memory stays at one chunk
            np.lib.format.write_array_header_1_0(
                f, {"descr": np.lib.format.dtype_to_descr(np.dtype(np.float32)), "fortran_order": False,
                    "shape": (n, channels)})
            for path in chunks:
                with np.load(path) as z:
                    k = len(z["prov"])
                    if k:
                        f.write(np.ascontiguousarray(z["acts"], dtype=np.float32).tobytes())
                        prov[offset:offset + k] = z["prov"]
                    offset += k
                    start = int(z["start"])
                    for row, (pred, prob) in enumerate(zip(z["pred"], z["prob"])):
                        if len(pred) and pred[0] >= 0:
                            predictions[start + row] = pred.tolist()
                            probabilities[start + row] = prob.tolist()
                    skipped += json.loads(bytes(z["skipped"]).decode())
        os.replace(tmp, self.root / "acts.npy")
        np.save(self.root / "prov.npy", prov)
        (self.root / "predictions.json").write_text(json.dumps(
            {"classes": {str(k): v for k, v in predictions.items()},
             "probabilities": {str(k): v for k, v in probabilities.items()}, "skipped": skipped}))
        done.write_text(json.dumps({"chunks": len(chunks), "n": n}))
        self._acts = self._prov = None

    def __len__(self) -> int:
        return len(self.provenance())

    def activations(self, ids=None) -> np.ndarray:
        if self._acts is None:
            self._acts = np.load(self.root / "acts.npy", mmap_mode="r")
        return self._acts if ids is None else np.asarray(self._acts[ids])

    def provenance(self, ids=None) -> np.ndarray:
        if self._prov is None:
            self._prov = np.load(self.root / "prov.npy")
        return self._prov if ids is None else self._prov[ids]

    def predictions(self) -> dict:
        return json.loads((self.root / "predictions.json").read_text())

    def moment(self, block: int = 8192) -> np.ndarray:
        """Uncentred second moment A^T A / N, computed in blocks (for whitening objectives)."""
        acts = self.activations()
        out = np.zeros((acts.shape[1], acts.shape[1]), dtype=np.float64)
        for s in range(0, len(acts), block):
            a = np.asarray(acts[s:s + block], dtype=np.float64)
            out += a.T @ a
        return (out / max(1, len(acts))).astype(np.float32)
