"""The activation grids' page: static files that open from file:// (the data as a script, every string as text)."""

from __future__ import annotations

from pathlib import Path

from atlas_core.exporters.viewer import data_script
from atlas_core.store import atomic_write, atomic_write_text

STATIC = Path(__file__).parent / "static"


def write_page(out: Path, result: dict, flows: dict) -> Path:
    """``index.html`` and ``grid/`` (script, style, data) beside grid.json."""
    out = Path(out)
    (out / "grid").mkdir(parents=True, exist_ok=True)
    for name in ("grid.js", "grid.css"):
        atomic_write(out / "grid" / name, lambda f, src=STATIC / name: f.write(src.read_bytes()))
    data = dict(result, flows={str(k): v for k, v in flows.items()})
    for entry in data["layers"]:  # the page links to the atlases by relative path where it can
        atlas = entry.get("atlas")
        if atlas:
            try:
                atlas = dict(atlas, href=str(Path(atlas["dir"]).relative_to(out.resolve(), walk_up=True)))
            except (TypeError, ValueError):  # Python < 3.12 has no walk_up
                import os
                atlas = dict(atlas, href=os.path.relpath(atlas["dir"], out.resolve()))
            entry["atlas"] = atlas
    atomic_write_text(out / "grid" / "grid-data.js", data_script(data, "GRID_DATA"))
    atomic_write(out / "index.html", lambda f: f.write((STATIC / "index.html").read_bytes()))
    return out / "index.html"
