"""docs/hooks.md must carry every hook and every contract with its current signature and docstring."""

import inspect
from pathlib import Path

import pytest

from atlas_core import contracts, hookspecs

DOC = (Path(__file__).parents[1] / "docs" / "hooks.md").read_text()
HOOKS = [(n, f) for n, f in inspect.getmembers(hookspecs, inspect.isfunction) if n.startswith("atlas_")]
CONTRACTS = [(n, c) for n, c in inspect.getmembers(contracts, inspect.isclass) if c.__module__ == contracts.__name__]
FAMILIES = {"backends", "reducers", "renderers", "exporters", "executors", "gradients", "sources", "commands"}


def test_there_are_hooks():
    assert {n for n, _ in HOOKS} == {f"atlas_register_{f}" for f in FAMILIES}


def test_every_family_has_a_hook():
    from atlas_core.plugins import FAMILIES as registered
    assert set(registered) == FAMILIES


@pytest.mark.parametrize("name,fn", HOOKS)
def test_hook_signature_documented(name, fn):
    heading = f"## `{name}{inspect.signature(fn)}`".replace("'", "")
    assert heading in DOC, f"docs/hooks.md lacks (or has a stale) heading: {heading}"


@pytest.mark.parametrize("name,fn", HOOKS)
def test_hook_docstring_documented(name, fn):
    section = DOC.split(f"## `{name}", 1)[1].split("\n## ", 1)[0]
    assert inspect.getdoc(fn) in section, f"docs/hooks.md: the text of {name} differs from its docstring"


@pytest.mark.parametrize("name,cls", CONTRACTS)
def test_contract_documented(name, cls):
    assert f"## `{name}`" in DOC, f"docs/hooks.md lacks the contract {name}"
    section = DOC.split(f"## `{name}`", 1)[1].split("\n## ", 1)[0]
    assert inspect.getdoc(cls) in section, f"docs/hooks.md: the text of {name} differs from its docstring"
