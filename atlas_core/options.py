"""Options that are checked: KEY=VALUE parsing, and renderer options routed to the renderers that declare them."""

from __future__ import annotations

import difflib
import json
from typing import Iterable, Mapping

from .types import UsageError


def key_values(items: Iterable[str], what: str) -> dict:
    """``["steps=512", "whiten=true"]`` to ``{"steps": 512, "whiten": True}`` (values read as JSON where they
    parse, else kept as text)."""
    out = {}
    for item in items:
        if "=" not in item:
            raise UsageError(f"{what} must be KEY=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        try:
            out[key.strip()] = json.loads(value)
        except ValueError:
            out[key.strip()] = value
    return out


def _declared(renderer) -> Mapping:
    return dict(getattr(renderer, "options", None) or {})


def route(given: Mapping, renderers: Mapping[str, object], what: str = "icon option") -> dict:
    """Each renderer's options, defaults filled in, from the user's ``given`` options.

    ``steps=512`` goes to every renderer that declares ``steps``; ``featureviz.steps=512`` to that renderer
    only. An option that no chosen renderer declares is a one-line error naming the valid ones.
    """
    out = {name: _declared(r) for name, r in renderers.items()}
    for key, value in given.items():
        target, _, option = key.rpartition(".")
        names = [target] if target else list(renderers)
        if target and target not in renderers:
            raise UsageError(f"{what} {key!r} names {target!r}, which is not among the chosen ones "
                             f"({', '.join(renderers)})")
        takers = [n for n in names if option in out[n]]
        if not takers:
            valid = sorted({f"{o}" for n in names for o in _declared(renderers[n])})
            near = difflib.get_close_matches(option, valid, n=2)
            hint = f" (did you mean {', '.join(near)}?)" if near else ""
            which = ", ".join(names)
            raise UsageError(f"unknown {what} {option!r}{hint} for {which}; valid: "
                             f"{', '.join(valid) or 'none (it takes no options)'}")
        for n in takers:
            out[n][option] = value
    return out
