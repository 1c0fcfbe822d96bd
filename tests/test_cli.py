import subprocess
import sys
from pathlib import Path

import atlas_core

ATLAS = str(Path(sys.executable).with_name("atlas"))


def run(*args):
    return subprocess.run([ATLAS, *args], capture_output=True, text=True)


def test_version():
    out = run("--version")
    assert out.returncode == 0 and atlas_core.__version__ in out.stdout


def test_plugins_lists_builtins():
    out = run("plugins")
    assert out.returncode == 0
    line = [x for x in out.stdout.splitlines() if x.startswith("builtins")][0]
    assert "pca" in line and "exemplar" in line and "actatlas" in line


def test_missing_model_is_one_line_error():
    out = run("layers", "/nonexistent/model.onnx")
    assert out.returncode == 2
    assert out.stderr.count("\n") == 1 and "not found" in out.stderr and "Traceback" not in out.stderr


def test_bad_size_is_one_line_error():
    out = run("layers", "/nonexistent/model.onnx", "--size", "abc")
    assert out.returncode == 2 and "--size" in out.stderr or "not found" in out.stderr


def test_layers_into_a_closed_pipe_is_quiet():
    import atlas_demo
    model = atlas_demo.efficientnet_lite0_onnx("dynamo")
    out = subprocess.run(f"'{ATLAS}' layers '{model}' | head -1", shell=True, capture_output=True, text=True)
    assert out.stdout.count("\n") == 1 and "Traceback" not in out.stderr
