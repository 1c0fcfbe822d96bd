"""The ``torch`` backend object: cheap checks here, torch imported only in ``open``."""

from __future__ import annotations

import contextlib
import difflib
import importlib
import os
import re
import sys
from pathlib import Path

from atlas_core import UsageError

_IDENT = r"[A-Za-z_]\w*"
IMPORT_PATH = re.compile(rf"^{_IDENT}(\.{_IDENT})*:{_IDENT}(\.{_IDENT})*$")


def is_torch_module(obj) -> bool:
    """True for a ``torch.nn.Module`` instance; never imports torch."""
    torch = sys.modules.get("torch")
    nn = getattr(torch, "nn", None)
    return nn is not None and isinstance(obj, nn.Module)


def is_import_path(source) -> bool:
    """True for a string ``package.module:function`` that is not an existing file."""
    return isinstance(source, str) and bool(IMPORT_PATH.match(source)) and not Path(source).exists()


def resolve_import_path(path: str):
    """Import ``package.module:attr`` and return the module it names (calling it if it is a function).

    Every failure is a one-line :class:`UsageError`.
    """
    if not IMPORT_PATH.match(path):
        raise UsageError(f"model import path must look like package.module:function, got {path!r}")
    module_name, attr_path = path.split(":", 1)
    if "torch" not in sys.modules:  # torch's OpenMP reads this when it loads; see docs/torch.md
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    if os.getcwd() not in sys.path and "" not in sys.path:  # as uvicorn does: modules in the working folder
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name) and module_name[len(exc.name):][:1] in ("", "."):
            raise UsageError(f"cannot import {module_name!r} from model import path {path!r}: "
                             f"no module named {exc.name!r}") from None
        raise UsageError(f"importing {module_name!r} for {path!r} failed: {_one_line(exc)}") from None
    except Exception as exc:  # the user's module raised while importing
        raise UsageError(f"importing {module_name!r} for {path!r} failed: {_one_line(exc)}") from None
    obj = module
    for part in attr_path.split("."):
        if not hasattr(obj, part):
            public = [n for n in dir(obj) if not n.startswith("_")]
            near = difflib.get_close_matches(part, public, n=3)
            hint = f" (did you mean {', '.join(near)}?)" if near else ""
            raise UsageError(f"{path!r}: {getattr(obj, '__name__', module_name)!r} has no attribute "
                             f"{part!r}{hint}")
        obj = getattr(obj, part)
    if is_torch_module(obj):
        return obj
    if not callable(obj):
        raise UsageError(f"{path!r} is a {type(obj).__name__}, not a function returning a torch.nn.Module")
    try:
        with contextlib.redirect_stdout(sys.stderr):  # keep stdout clean for --json (loaders print)
            result = obj()
    except Exception as exc:
        raise UsageError(f"calling {path}() failed: {_one_line(exc)}") from None
    if not is_torch_module(result):
        raise UsageError(f"{path}() returned {type(result).__module__}.{type(result).__qualname__}, "
                         "not a torch.nn.Module")
    return result


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


class TorchBackend:
    """Opens a ``torch.nn.Module``, or an import path ``package.module:function`` that returns one."""

    name = "torch"

    def can_open(self, source) -> bool:
        return is_torch_module(source) or is_import_path(source)

    def open(self, source, **options):
        if isinstance(source, str):
            module, name = resolve_import_path(source), source
        elif is_torch_module(source):
            module, name = source, type(source).__name__
        else:
            raise UsageError(f"the torch backend opens a torch.nn.Module or an import path "
                             f"package.module:function, not {type(source).__name__}")
        from .model import TorchModel
        return TorchModel(module, name=name, **options)
