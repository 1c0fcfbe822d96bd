"""Which samples belong to a class: the reference's filters over per-sample attribution, and class names."""

from __future__ import annotations

import difflib
from typing import Sequence

import numpy as np

from ..types import UsageError

FILTERS = ("winner", "top", "both")


def resolve_class(spec, names: Sequence[str]) -> int:
    """A class index from a name (exact, case-insensitive, or the one name that contains it) or an index."""
    text = str(spec).strip()
    if text.isdigit() and int(text) < len(names):
        return int(text)
    lowered = [n.lower() for n in names]
    if text.lower() in lowered:
        return lowered.index(text.lower())
    hits = [k for k, n in enumerate(lowered) if text.lower() in n]
    if len(hits) == 1:
        return hits[0]
    if hits:
        raise UsageError(f"class {text!r} is ambiguous: {', '.join(repr(names[k]) for k in hits[:6])}"
                         f"{', ...' if len(hits) > 6 else ''}; give the full name or its index")
    near = difflib.get_close_matches(text.lower(), lowered, n=3, cutoff=0.6)
    hint = f" (did you mean {', '.join(repr(names[lowered.index(n)]) for n in near)}?)" if near else ""
    raise UsageError(f"no class {text!r}{hint}; see classes.json in the atlas folder")


def winners(attribution: np.ndarray, c: int, block: int = 65536) -> np.ndarray:
    """Samples whose largest attribution is to class ``c``."""
    out = [s + np.flatnonzero(np.argmax(np.asarray(attribution[s:s + block], np.float32), axis=1) == c)
           for s in range(0, len(attribution), block)]
    return np.concatenate(out) if out else np.zeros(0, np.int64)


def top(attribution: np.ndarray, c: int, n: int) -> np.ndarray:
    """The ``n`` samples with the largest positive attribution to class ``c`` (fewer if fewer are positive)."""
    values = np.asarray(attribution[:, c], np.float32)
    positive = np.flatnonzero(values > 0)
    if len(positive) > n:
        positive = positive[np.argpartition(-values[positive], n - 1)[:n]]
    return np.sort(positive)


def select(attribution: np.ndarray, c: int, how: str = "both", top_n: int = 2000) -> np.ndarray:
    """The samples of class ``c`` by filter ``how`` (``winner``, ``top`` or ``both``, their union), sorted."""
    if how not in FILTERS:
        raise UsageError(f"--filter must be one of {', '.join(FILTERS)}, got {how!r}")
    parts = []
    if how in ("winner", "both"):
        parts.append(winners(attribution, c))
    if how in ("top", "both"):
        parts.append(top(attribution, c, top_n))
    return np.unique(np.concatenate(parts)) if parts else np.zeros(0, np.int64)


def strongest_classes(attribution: np.ndarray, names: Sequence[str], k: int = 8) -> list:
    """The classes that win the most samples, with their counts: what a class atlas can be made of."""
    counts = np.zeros(attribution.shape[1], np.int64)
    for s in range(0, len(attribution), 65536):
        counts += np.bincount(np.argmax(np.asarray(attribution[s:s + 65536], np.float32), axis=1),
                              minlength=attribution.shape[1])
    order = np.argsort(-counts, kind="stable")[:k]
    return [(names[c], int(counts[c])) for c in order if counts[c] > 0]
