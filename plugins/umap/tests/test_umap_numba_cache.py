"""A later process compiles nothing: the reducer's numba code comes from the persistent cache."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

CHILD = r"""
import json, sys
import numpy as np
from atlas_umap.compile import prepare
prepare()
from numba.core import event
from atlas_umap.reducer import UMAPReducer
X = np.load(sys.argv[1])
with event.install_recorder("numba:compile") as rec:
    UMAPReducer(random_state=0, n_epochs=20).fit_transform(X)
names = sorted({e.data["dispatcher"].py_func.__qualname__ for _, e in rec.buffer if e.is_start})
import os
print(json.dumps({"compiled": names, "cache": os.environ.get("NUMBA_CACHE_DIR")}))
"""


def _fit_in_fresh_process(path):
    out = subprocess.run([sys.executable, "-c", CHILD, str(path)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_second_process_compiles_nothing(tmp_path):
    atlas_demo = pytest.importorskip("atlas_demo")
    # real activations: a few hundred pixels of a real photo at the input scale (the content does not
    # matter for compilation, only dtype and layout do)
    photo = atlas_demo.photo("chelsea")[::8, ::8].reshape(-1, 3)
    X = np.ascontiguousarray(np.concatenate([photo, photo ** 2], axis=1)[:400], dtype=np.float32)
    np.save(tmp_path / "X.npy", X)
    first = _fit_in_fresh_process(tmp_path / "X.npy")  # fills the cache if this machine never did
    second = _fit_in_fresh_process(tmp_path / "X.npy")
    assert second["cache"], "the plugin must point numba at a persistent cache folder"
    assert second["compiled"] == [], f"a later process still compiled {second['compiled']} (first: {first})"
