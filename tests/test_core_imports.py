import json
import subprocess
import sys

from atlas_core.testing import HEAVY_MODULES


def _modules_after(code: str) -> list:
    out = subprocess.run([sys.executable, "-c", code + "\nimport sys, json\n"
                          f"print(json.dumps([m for m in {list(HEAVY_MODULES)!r} if m in sys.modules]))"],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_import_core_imports_no_framework():
    assert _modules_after("import atlas_core") == []


def test_loading_every_installed_plugin_imports_no_framework():
    # registration is lazy: discovering and collecting all plugins imports no framework
    assert _modules_after("from atlas_core.plugins import load\nr = load()\nassert r.names('reducers')") == []


def test_cli_parser_imports_no_framework():
    assert _modules_after("from atlas_core.cli import build_parser\nbuild_parser()") == []
