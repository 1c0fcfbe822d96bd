"""Keep numba's compiled code for UMAP across processes.

umap-learn compiles its numba functions in every new process. Three things make
a second ``atlas build`` pay that again:

1. ``import umap`` compiles the functions marked ``cache=True`` (about 10-30 s
   cold); numba caches them next to the package or, if that is read-only, not
   at all. :func:`prepare` points ``NUMBA_CACHE_DIR`` at a persistent folder.
2. The functions UMAP's fit calls from Python (``smooth_knn_dist``,
   ``compute_membership_strengths``, the layout epoch) have no ``cache=True``;
   they are cacheable, so :func:`prepare` enables numba's cache on them.
3. pynndescent's ``nn_descent`` takes the distance function as an argument; a
   dispatcher passed as a value is lowered as a process address ("dynamic
   global"), which numba refuses to cache (about 20 s per process). The
   reducer avoids it with an exact neighbour search (:mod:`atlas_umap.knn`) up
   to :data:`atlas_umap.reducer.EXACT_KNN_MAX` samples.

Call :func:`prepare` before anything imports umap (the reducer does).
"""

from __future__ import annotations

import importlib
import os
import sys
import warnings
from pathlib import Path

ENV = "ATLAS_NUMBA_CACHE_DIR"
# umap modules whose numba functions the fit calls from Python without cache=True
MODULES = ("umap.umap_", "umap.layouts", "umap.utils", "umap.spectral", "umap.aligned_umap")

_prepared: list[str] = []


def cache_dir() -> Path:
    """``$ATLAS_NUMBA_CACHE_DIR``, else ``$ATLAS_CACHE/numba``, else ``~/.cache/actatlas/numba``."""
    if os.environ.get(ENV):
        return Path(os.environ[ENV])
    root = Path(os.environ.get("ATLAS_CACHE") or Path.home() / ".cache" / "actatlas")
    return root / "numba"


def use_persistent_cache() -> str:
    """Point numba's cache at :func:`cache_dir` unless the user set ``NUMBA_CACHE_DIR``; returns the folder."""
    folder = os.environ.get("NUMBA_CACHE_DIR")
    if not folder:
        path = cache_dir()
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError:  # read-only home: numba falls back to its own locations
            return ""
        folder = str(path)
        os.environ["NUMBA_CACHE_DIR"] = folder
    if "numba" in sys.modules:  # numba read its config already: tell it too
        from numba.core import config
        config.CACHE_DIR = folder
    return folder


def enable_caching(modules=MODULES) -> int:
    """Turn on numba's on-disk cache for the jitted functions of ``modules`` that lack it; returns how many."""
    from numba.core.caching import NullCache
    from numba.core.dispatcher import Dispatcher
    count = 0
    for name in modules:
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        for obj in vars(module).values():
            if isinstance(obj, Dispatcher) and isinstance(obj._cache, NullCache):
                obj.enable_caching()
                count += 1
    return count


def prepare():
    """Set up the persistent numba cache, import umap and enable caching; idempotent. Returns the umap module."""
    if not _prepared:
        folder = use_persistent_cache()
        with warnings.catch_warnings():
            # umap warns at import that its optional tensorflow/plotting extras are missing
            warnings.filterwarnings("ignore", message=".*requires (Tensorflow|extra plotting)", category=UserWarning)
            import umap  # noqa: F401
        enable_caching()
        _prepared.append(folder)
    import umap
    return umap


def warm_up() -> str:
    """Compile everything a fit on the exact-neighbour path needs, once, into the persistent cache.

    ``python -m atlas_umap.compile`` runs it (e.g. right after installing), so that even the
    first ``atlas build`` fits at warm speed. Returns the cache folder.
    """
    import numpy as np

    from .reducer import UMAPReducer
    prepare()
    # the data's content does not matter for compilation, only dtype and layout do
    grid = np.linspace(0.0, 1.0, 64 * 8, dtype=np.float32).reshape(64, 8)
    UMAPReducer(random_state=0, n_epochs=5).fit_transform(np.abs(np.sin(grid * np.arange(1, 9))))
    return os.environ.get("NUMBA_CACHE_DIR", "")


if __name__ == "__main__":
    import time
    start = time.perf_counter()
    folder = warm_up()
    print(f"umap compiled into {folder or 'numba default cache'} in {time.perf_counter() - start:.1f} s")
