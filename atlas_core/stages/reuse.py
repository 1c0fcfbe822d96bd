"""The one reuse policy of a build.

An artifact is reused if and only if the key recorded with it equals the key of the inputs that would make it
now. A stage's key hashes its own settings and the keys of the artifacts it reads, so a change anywhere upstream
reaches every stage below it. Caches (``layout.raw.npy``, ``receptive_field.json``) have their keys in
``<atlas>/keys/``, recorded after the artifact is complete and removed before it is rewritten, so a run killed in
between leaves an artifact without a key: it is made again. Published folders carry their key inside (a level's
icons: ``icons/<renderer>/<grid>/.key``; thumbnails: ``thumbs/.key``), so key and content are published
together. The samples store follows the same rule with its key as its folder name (``store/<key>/``) and reuses
complete chunks within it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import numpy as np

from ..store import atomic_write, atomic_write_text, fingerprint


def key(*parts) -> str:
    """The key of inputs ``parts`` (anything JSON can write, keys of other artifacts included)."""
    return fingerprint(list(parts))


class Reuse:
    """Artifacts of the atlas folder ``out`` and their recorded keys."""

    def __init__(self, out: Path):
        self.out = Path(out)
        self.keys = self.out / "keys"

    def _key_path(self, rel: str) -> Path:
        return self.keys / (rel.strip("/").replace("/", "__") + ".key")

    def fresh(self, rel: str, key: str) -> bool:
        """True if artifact ``rel`` exists and was made from inputs with this key."""
        try:
            recorded = self._key_path(rel).read_text()
        except OSError:
            return False
        return recorded == key and (self.out / rel).exists()

    def forget(self, rel: str) -> None:
        """Drop the key of ``rel`` before it is rewritten."""
        self._key_path(rel).unlink(missing_ok=True)

    def record(self, rel: str, key: str) -> None:
        self.keys.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self._key_path(rel), key)

    def array(self, rel: str, key: str, compute: Callable[[], np.ndarray]) -> tuple[np.ndarray, bool]:
        """The .npy artifact ``rel``: reused if fresh, else computed, written and recorded. Returns
        (array, reused)."""
        if self.fresh(rel, key):
            try:
                return np.load(self.out / rel), True
            except (OSError, ValueError):
                pass  # torn: make it again
        self.forget(rel)
        value = np.asarray(compute())
        atomic_write(self.out / rel, lambda f: np.save(f, value))
        self.record(rel, key)
        return value, False

    def json(self, rel: str, key: str, compute: Callable[[], object]):
        """The JSON artifact ``rel``: reused if fresh, else computed, written and recorded."""
        if self.fresh(rel, key):
            try:
                return json.loads((self.out / rel).read_text())
            except (OSError, ValueError):
                pass
        self.forget(rel)
        value = compute()
        atomic_write_text(self.out / rel, json.dumps(value))
        self.record(rel, key)
        return value
