"""docs/hooks.md must carry every hook with its current signature and docstring."""

import inspect
from pathlib import Path

import pytest

from atlas_core import hookspecs

DOC = (Path(__file__).parents[1] / "docs" / "hooks.md").read_text()
HOOKS = [(n, f) for n, f in inspect.getmembers(hookspecs, inspect.isfunction) if n.startswith("atlas_")]


def test_there_are_hooks():
    assert {n for n, _ in HOOKS} == {"atlas_register_backends", "atlas_register_reducers",
                                     "atlas_register_renderers"}


@pytest.mark.parametrize("name,fn", HOOKS)
def test_hook_signature_documented(name, fn):
    heading = f"## `{name}{inspect.signature(fn)}`".replace("'", "")
    assert heading in DOC, f"docs/hooks.md lacks (or has a stale) heading: {heading}"


@pytest.mark.parametrize("name,fn", HOOKS)
def test_hook_docstring_documented(name, fn):
    section = DOC.split(f"## `{name}", 1)[1].split("\n## ", 1)[0]
    assert inspect.getdoc(fn) in section, f"docs/hooks.md: the text of {name} differs from its docstring"
