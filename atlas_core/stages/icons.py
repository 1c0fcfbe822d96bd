"""Icons: every chosen renderer draws one icon per cell of every level; each icon's fidelity is measured.

A level's icons of one renderer (``icons/<renderer>/<grid>/``, with ``fidelity.json`` and the ``.key`` of what
made them) are reused while the level, the renderer's options, the icon size, the seed and the model are the
same: the published folder is linked into the staging folder; otherwise the icons are drawn there.
"""

from __future__ import annotations

import json

import numpy as np

from .. import gradients
from ..metrics import icon_fidelity
from ..options import route
from ..progress import Progress
from ..receptive import receptive_field
from ..store import atomic_write, atomic_write_text
from ..types import INPUT, IconRequest, UsageError
from .reuse import key
from .state import BuildState, Stage

KNOWN_NEEDS = {"receptive_field", "gradients", "moment"}
FIDELITY_VERSION = 2  # how icon_fidelity measures (2: at the scale an icon stands for); part of the icons key


class IconsStage(Stage):
    name = "icons"

    def prepare(self, state: BuildState) -> None:
        """Make the renderers and check their options and needs, before any work is done."""
        c = state.config
        state.renderers = {name: state.registry.renderer(name) for name in c.icons}
        state.icon_options = route(c.icon_options, state.renderers)
        for name, renderer in state.renderers.items():
            needs = set(getattr(renderer, "requires", ()) or ())
            if needs - KNOWN_NEEDS:
                raise UsageError(f"renderer {name!r} requires {sorted(needs - KNOWN_NEEDS)}, which this version "
                                 f"of atlas_core cannot give (it gives {sorted(KNOWN_NEEDS)})")
            if "gradients" in needs:
                gradients.require(state.model, INPUT, [c.layer], f"renderer {name!r}", "use --icons exemplar",
                                  state.registry)

    def run(self, state: BuildState) -> None:
        c, model = state.config, state.model
        moment = None
        for name, renderer in state.renderers.items():
            needs = set(getattr(renderer, "requires", ()) or ())
            if "receptive_field" in needs and state.receptive_field is None:
                rf_key = key("receptive_field", model.identity, c.layer, model.input_spec.identity())
                state.receptive_field = state.reuse.json("receptive_field.json", rf_key,
                                                         lambda: receptive_field(model, c.layer))
            if "moment" in needs and moment is None:
                moment = state.store.moment()
            grads = gradients.gradients(model, state.registry) if "gradients" in needs else None
            options = state.icon_options[name]
            bar = Progress(f"icons:{name}", sum(len(level.cells) for level in state.levels), quiet=c.quiet)
            scores = []
            for level in state.levels:
                rel = f"icons/{name}/{level.grid}"
                k = key("icons", FIDELITY_VERSION, level.key, name, options, c.icon_size, c.seed, model.identity, c.layer)
                if self._reuse(state, level, name, rel, k):
                    state.publication.reuse(rel)
                    bar.update(len(level.cells))
                else:
                    folder = state.staging / rel
                    folder.mkdir(parents=True, exist_ok=True)
                    request = IconRequest(model=model, layer=c.layer, directions=level.directions,
                                          members=[cell.members for cell in level.cells], store=state.store,
                                          images=state.source, icon_size=c.icon_size, seed=c.seed, moment=moment,
                                          options=dict(options), progress=bar.update,
                                          receptive_field=state.receptive_field, gradients=grads)
                    drawn = renderer.render(request)
                    if len(drawn) != len(level.cells):
                        raise UsageError(f"renderer {name!r} drew {len(drawn)} icons for {len(level.cells)} cells")
                    # measured a slice at a time (the same batches): a level of 25,000 icons as float arrays
                    # at once would take about 2 GB
                    step = c.batch_size * max(1, 2048 // c.batch_size)
                    fid = np.concatenate([icon_fidelity(model, c.layer, drawn[s:s + step], level.directions[s:s + step],
                                                        batch_size=c.batch_size,
                                                        receptive_field=state.receptive_field)
                                          for s in range(0, len(drawn), step)]) if drawn else np.zeros(0, np.float32)
                    for cell, icon, f in zip(level.cells, drawn, fid):
                        path = folder / f"{cell.i}_{cell.j}.png"
                        atomic_write(path, lambda fh, icon=icon: icon.save(fh, format="PNG"))
                        cell.icons[name] = f"{rel}/{path.name}"
                        cell.fidelity[name] = float(f)
                    atomic_write_text(folder / "fidelity.json", json.dumps(
                        {f"{cell.i}_{cell.j}": cell.fidelity[name] for cell in level.cells}))
                    atomic_write_text(folder / ".key", k)
                scores.extend(cell.fidelity[name] for cell in level.cells)
            bar.close()
            state.log(f"icons:{name}: median fidelity {np.median(scores):.3f} over {len(scores)} cells")

    @staticmethod
    def _reuse(state: BuildState, level, name: str, rel: str, k: str) -> bool:
        """True (and the cells given their icons and fidelity) if the published icons of ``rel`` were made for
        key ``k`` and are all there."""
        try:
            if (state.out / rel / ".key").read_text() != k:
                return False
            fid = json.loads((state.out / rel / "fidelity.json").read_text())
        except (OSError, ValueError):
            return False
        for cell in level.cells:
            ij = f"{cell.i}_{cell.j}"
            if ij not in fid or not (state.out / rel / f"{ij}.png").is_file():
                return False
            cell.icons[name] = f"{rel}/{ij}.png"
            cell.fidelity[name] = float(fid[ij])
        return True
