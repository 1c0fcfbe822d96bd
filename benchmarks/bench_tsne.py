"""t-SNE: openTSNE vs scikit-learn's TSNE on the same real activations (perplexity 50, cosine).

Same data as bench_umap.py (EfficientNet-Lite0 activations of the demo photo views, 480-d).
Both run in this process, interleaved, ``--rounds`` times; reports median seconds, the
ratio, and how well each layout keeps the 10 nearest neighbours of the 480-d space.

    .venv/bin/python benchmarks/bench_tsne.py --n 3000 --rounds 2
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from bench_umap import real_activations  # noqa: E402


def opentsne(X, seed, n_jobs):
    import openTSNE
    return np.asarray(openTSNE.TSNE(n_components=2, perplexity=50, metric="cosine", random_state=seed,
                                    n_jobs=n_jobs, verbose=False).fit(X))


def sklearn_tsne(X, seed, n_jobs):
    from sklearn.manifold import TSNE
    return TSNE(n_components=2, perplexity=50, metric="cosine", init="pca", random_state=seed,
                n_jobs=n_jobs).fit_transform(X)


def neighbour_recall(X, Y, k=10, n_queries=1000, seed=0):
    """Share of each sample's k nearest (cosine) neighbours in X that are among its k nearest in Y."""
    rng = np.random.default_rng(seed)
    q = rng.choice(len(X), size=min(n_queries, len(X)), replace=False)
    Z = X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-12)
    high = np.argsort(-(Z[q] @ Z.T), axis=1)[:, 1:k + 1]
    low = np.argsort(((Y[q][:, None] - Y[None]) ** 2).sum(-1), axis=1)[:, 1:k + 1]
    return float(np.mean([len(set(a) & set(b)) / k for a, b in zip(high, low)]))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=3000)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--n-jobs", type=int, default=2)
    args = ap.parse_args(argv)
    X = real_activations(10_000)[:args.n]
    print(f"data: {X.shape[0]} x {X.shape[1]} real activations, n_jobs={args.n_jobs}", flush=True)
    times = {"openTSNE": [], "sklearn": []}
    layouts = {}
    # import once outside the timing (both are compiled extensions: no per-process compilation)
    import openTSNE  # noqa: F401
    import sklearn.manifold  # noqa: F401
    for r in range(args.rounds):
        for name, fn in (("openTSNE", opentsne), ("sklearn", sklearn_tsne)):
            t = time.perf_counter()
            Y = fn(X, 0, args.n_jobs)
            times[name].append(time.perf_counter() - t)
            same = name in layouts and np.allclose(layouts[name], Y, atol=1e-4)
            layouts.setdefault(name, Y)
            print(f"round {r} {name:8s} {times[name][-1]:6.1f}s" + (f"  same layout as round 0: {same}" if r else ""),
                  flush=True)
    med = {k: float(np.median(v)) for k, v in times.items()}
    for name, Y in layouts.items():
        print(f"{name:8s} median {med[name]:6.1f}s  10-NN recall {neighbour_recall(X, Y):.3f}")
    print(f"sklearn / openTSNE time: {med['sklearn'] / med['openTSNE']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
