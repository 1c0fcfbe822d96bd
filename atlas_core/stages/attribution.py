"""Attribution: which classes each sample pushes the model towards, as the reference computes it.

For a sample at position (y, x) of the layer, the attribution to class c is ``a_yx · ∂logit_c/∂a_yx``: the
activation there times the gradient of the logit (before any softmax). One forward-mode pass (a JVP of the
graph's tail from the layer to the logits, with a tangent that is the activation at that position and zero
elsewhere) gives it for every class at once. Activations keep coming from the model's fast inference path; only
the tail runs through the gradient capability. Max-pools in the tail get the average pool's derivative by
default (the reference's relaxation). A pooled sample's tangent is the whole map, a dense layer's the vector.

The stage adds an ``attribution`` column (float16, samples x classes) to the samples store while it is
collected, chunk by chunk, so memory stays flat and a resumed run fills the missing chunks with it.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from .. import gradients
from ..types import UsageError
from .collect import classifier_output
from .state import BuildState, Stage

COLUMN = "attribution"


class Attribution:
    """The per-sample column producer: ``attribution(acts, ys, xs)`` for one batch (see the module)."""

    name = COLUMN

    def __init__(self, grads, layer: str, target: str, relax_maxpool: bool):
        self.grads, self.layer, self.target, self.relax_maxpool = grads, layer, target, relax_maxpool
        self.seconds = 0.0
        self.samples = 0

    def key(self) -> list:
        return [COLUMN, self.target, self.relax_maxpool]

    def __call__(self, acts: np.ndarray, ys: Optional[np.ndarray], xs: Optional[np.ndarray]) -> np.ndarray:
        """``acts``: the batch's activations (B, H, W, C) or (B, C); ``ys``, ``xs``: (B, K) sampled positions,
        or None for pooled or dense samples. Returns (B * K, classes) float16, rows in sample order."""
        import time
        t = time.perf_counter()
        acts = np.asarray(acts, np.float32)
        if ys is None:
            tangent = acts
        else:
            b, k = ys.shape
            tangent = np.zeros((b, k) + acts.shape[1:], np.float32)
            rows = np.repeat(np.arange(b), k)
            ks = np.tile(np.arange(k), b)
            tangent[rows, ks, ys.ravel(), xs.ravel()] = acts[rows, ys.ravel(), xs.ravel()]
        _, derivative = self.grads.jvp(self.layer, [self.target], acts, tangent,
                                       relax_maxpool=self.relax_maxpool)[self.target]
        out = derivative.reshape(-1, derivative.shape[-1])
        self.seconds += time.perf_counter() - t
        self.samples += len(out)
        return out.astype(np.float16)


class AttributionStage(Stage):
    """Decides whether the build has attribution, and gives the collect stage its column producer."""

    name = "attribution"

    def prepare(self, state: BuildState) -> None:
        c = state.config
        state.attribution = None
        if c.attribution is False:
            return
        target = c.attribution_target
        if target is None:
            classifier = classifier_output(state.model, c.layer)
            if classifier is None:
                if c.attribution:
                    raise UsageError("--attribution needs class scores: the model's output is not a vector of "
                                     "classes (name the logits with --attribution-target LAYER)")
                return
            target = classifier.name
        elif target not in {layer.name for layer in state.model.layers()}:
            raise UsageError(f"--attribution-target {target!r} is not a layer of the model (see atlas layers)")
        grads = gradients.gradients(state.model, state.registry)
        reason = "no installed plugin can differentiate this model (pip install ./plugins/jax)" if grads is None \
            else grads.supports(c.layer, [target])
        if reason:
            state.log(f"note: no attribution ({reason}); cells are labelled by the images' predicted classes")
            return
        state.attribution = Attribution(grads, c.layer, target, c.relax_maxpool)
        state.columns[COLUMN] = state.attribution

    def run(self, state: BuildState) -> None:
        a = state.attribution
        if a is None:
            return
        if COLUMN not in state.store.columns():
            raise UsageError("the samples store has no attribution column: rerun atlas build")
        if a.samples:
            state.log(f"attribution: {a.samples} samples in {a.seconds:.1f}s "
                      f"({a.samples / max(a.seconds, 1e-9):.0f} samples/s) to {a.target}")
