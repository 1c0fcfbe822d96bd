"""The samples store: activation vectors with their provenance and any per-sample columns, on disk in chunks.

The store of one configuration (model identity, layer, images, positions, seed) lives in its own folder,
``<atlas>/store/<key>/``. Images are cut into fixed chunks of ``chunk_images``; chunk ``k`` holds the samples of
images ``[k * chunk_images, (k + 1) * chunk_images)`` and is written atomically (temporary file, then rename),
so a run killed at any moment leaves only complete chunks. Chunks may be written in any order (by several
workers); a resumed run fills exactly the missing ones. ``consolidate`` then joins them, in image order, into
one memory-mapped array per column.

Columns: ``acts`` (float32 samples x channels) and ``prov`` (int32 samples x 3: image, y, x) always; any other
per-sample column a stage adds (``attribution``, float16 samples x classes) without a new schema; per image,
``pred``/``prob`` (top predicted classes). Opening with ``readonly=True`` never writes or deletes anything.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Optional

import numpy as np

from .types import UsageError

META = "meta.json"
PER_IMAGE = ("pred", "prob")
RESERVED = ("start", "end", "skipped")


def fingerprint(config) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]


def atomic_write(path: Path, write) -> None:
    """Write ``path`` through ``write(file)`` into a temporary file, flushed to disk, then renamed into place."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda f: f.write(text.encode("utf-8")))


class SampleStore:
    """Chunked, resumable store of the samples of one configuration, in ``root / key``.

    ``config`` identifies what is collected; its fingerprint is the store's ``key``. Stores of other
    configurations beside it are left alone until :meth:`prune_others` (called once this one is complete).
    """

    def __init__(self, root, config: dict, n_images: int, chunk_images: int = 256, readonly: bool = False):
        self.parent = Path(root)
        self.config = config
        self.key = fingerprint(config)
        self.root = self.parent / self.key
        self.readonly = readonly
        meta = self.root / META
        if meta.is_file():
            stored = _read_json(meta) or {}
            chunk_images = int(stored.get("chunk_images", chunk_images))
            n_images = int(stored.get("n_images", n_images))
        elif readonly:
            raise UsageError(f"no samples store for this configuration in {self.parent}: build the atlas first")
        self.chunk_images = max(1, int(chunk_images))
        self.n_images = int(n_images)
        if not readonly and not meta.is_file():
            self.root.mkdir(parents=True, exist_ok=True)
            atomic_write_text(meta, json.dumps({"key": self.key, "config": config, "n_images": self.n_images,
                                                "chunk_images": self.chunk_images}, indent=1, default=str))
        self._cache: dict = {}

    @classmethod
    def open(cls, root, key: str) -> "SampleStore":
        """The complete store ``key`` under ``root``, read-only (for commands that reuse an atlas's samples)."""
        meta = _read_json(Path(root) / key / META)
        if meta is None:
            raise UsageError(f"the samples store {Path(root) / key} is missing: rebuild the atlas")
        store = cls(root, meta["config"], meta["n_images"], meta["chunk_images"], readonly=True)
        if not store.complete():
            raise UsageError(f"the samples store {store.root} is incomplete: rerun atlas build to finish it")
        return store

    # -- writing ----------------------------------------------------------
    @property
    def n_chunks(self) -> int:
        return -(-self.n_images // self.chunk_images)

    def chunk_range(self, k: int) -> tuple[int, int]:
        return k * self.chunk_images, min(self.n_images, (k + 1) * self.chunk_images)

    def _chunk_path(self, k: int) -> Path:
        return self.root / f"chunk-{k:07d}.npz"

    def missing_chunks(self) -> list[int]:
        """Chunks not yet written, in order."""
        return [k for k in range(self.n_chunks) if not self._chunk_path(k).is_file()]

    def write_chunk(self, k: int, columns: dict, skipped: list) -> None:
        """Write chunk ``k``: per-sample ``columns`` (``acts``, ``prov`` and any others, one row per sample)
        and the per-image ones (``pred``, ``prob``: one row per image of the chunk); ``skipped`` lists
        [image, name, reason] for the images that could not be used."""
        if self.readonly:
            raise RuntimeError("this samples store is open read-only")
        start, end = self.chunk_range(k)
        bad = [c for c in columns if c in RESERVED]
        if bad or "acts" not in columns or "prov" not in columns:
            raise ValueError(f"a chunk needs acts and prov and may not name {RESERVED}")
        skipped_json = np.frombuffer(json.dumps(skipped).encode(), dtype=np.uint8)
        arrays = {name: np.asarray(a) for name, a in columns.items()}
        arrays["acts"] = arrays["acts"].astype(np.float32, copy=False)
        arrays["prov"] = arrays["prov"].astype(np.int32, copy=False)
        atomic_write(self._chunk_path(k), lambda f: np.savez(f, start=start, end=end, skipped=skipped_json,
                                                             **arrays))

    def complete(self) -> bool:
        return (self.root / META).is_file() and not self.missing_chunks()

    # -- reading ----------------------------------------------------------
    def consolidate(self) -> None:
        """Join the chunks in image order into ``<column>.npy`` (memory-mapped) and ``predictions.json``."""
        done = self.root / "consolidated.json"
        missing = self.missing_chunks()
        if missing:
            raise RuntimeError(f"cannot consolidate: chunks {missing[:5]} are missing")
        if (_read_json(done) or {}).get("chunks") == self.n_chunks:
            return
        paths = [self._chunk_path(k) for k in range(self.n_chunks)]
        n, shapes = 0, {}
        for path in paths:
            with np.load(path) as z:
                n += len(z["prov"])
                for name in z.files:
                    if name not in RESERVED and name not in PER_IMAGE and (name not in shapes or len(z[name])):
                        shapes[name] = (z[name].shape[1:], z[name].dtype)
        predictions, probabilities, skipped = {}, {}, []
        files = {}
        try:
            for name, (tail, dtype) in shapes.items():
                tmp = self.root / f".{name}.npy.tmp"
                f = open(tmp, "wb")
                np.lib.format.write_array_header_1_0(f, {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)),
                                                         "fortran_order": False, "shape": (n,) + tuple(tail)})
                files[name] = (f, tmp, dtype)
            for path in paths:  # streamed chunk by chunk: memory stays at one chunk
                with np.load(path) as z:
                    for name, (f, _, dtype) in files.items():
                        if name in z.files and len(z[name]):
                            f.write(np.ascontiguousarray(z[name], dtype=dtype).tobytes())
                    start = int(z["start"])
                    if "pred" in z.files:
                        for row, (pred, prob) in enumerate(zip(z["pred"], z["prob"])):
                            if len(pred) and pred[0] >= 0:
                                predictions[start + row] = pred.tolist()
                                probabilities[start + row] = prob.tolist()
                    skipped += json.loads(bytes(z["skipped"]).decode())
            for name, (f, tmp, _) in files.items():
                f.flush()
                os.fsync(f.fileno())
                f.close()
                os.replace(tmp, self.root / f"{name}.npy")
        finally:
            for f, tmp, _ in files.values():
                f.close()
                tmp.unlink(missing_ok=True)
        atomic_write_text(self.root / "predictions.json", json.dumps(
            {"classes": {str(k): v for k, v in predictions.items()},
             "probabilities": {str(k): v for k, v in probabilities.items()}, "skipped": skipped}))
        atomic_write_text(done, json.dumps({"chunks": self.n_chunks, "n": n, "columns": sorted(shapes)}))
        self._cache.clear()

    def prune_others(self) -> None:
        """Delete the stores of other configurations beside this (complete) one."""
        if self.readonly:
            return
        for other in self.parent.iterdir():
            if other.is_dir() and other.name != self.key and (other / META).is_file():
                shutil.rmtree(other, ignore_errors=True)

    def columns(self) -> list[str]:
        return list((_read_json(self.root / "consolidated.json") or {}).get("columns", []))

    def column(self, name: str) -> np.ndarray:
        """A per-sample column, memory-mapped."""
        if name not in self._cache:
            path = self.root / f"{name}.npy"
            if not path.is_file():
                raise KeyError(f"the samples store has no column {name!r}")
            self._cache[name] = np.load(path, mmap_mode="r")
        return self._cache[name]

    def __len__(self) -> int:
        return len(self.provenance())

    def activations(self, ids=None) -> np.ndarray:
        acts = self.column("acts")
        return acts if ids is None else np.asarray(acts[ids])

    def provenance(self, ids=None) -> np.ndarray:
        if "prov!" not in self._cache:
            self._cache["prov!"] = np.load(self.root / "prov.npy")
        prov = self._cache["prov!"]
        return prov if ids is None else prov[ids]

    def predictions(self) -> dict:
        return _read_json(self.root / "predictions.json")

    def moment(self, block: int = 8192) -> np.ndarray:
        """Uncentred second moment A^T A / N, computed in blocks (for whitening objectives)."""
        acts = self.activations()
        out = np.zeros((acts.shape[1], acts.shape[1]), dtype=np.float64)
        for s in range(0, len(acts), block):
            a = np.asarray(acts[s:s + block], dtype=np.float64)
            out += a.T @ a
        return (out / max(1, len(acts))).astype(np.float32)


def _read_json(path: Path) -> Optional[dict]:
    """A JSON file's content, or None if it is missing or torn (a 0-byte or partial write)."""
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
