"""What a build carries from stage to stage: the user's configuration, and the results as objects."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np

from ..types import Layer

DEFAULT_LEVELS = (10, 20, 40)


@dataclass
class BuildConfig:
    """The options of ``atlas build`` (docs/guide.md), checked before any work."""

    layer: str
    reducer: str = "umap"
    reducer_params: dict = field(default_factory=dict)
    icons: tuple = ("exemplar",)
    icon_size: int = 80
    icon_options: dict = field(default_factory=dict)  # as given: "steps" or "featureviz.steps" -> value
    levels: tuple = DEFAULT_LEVELS
    default_level: Optional[int] = None
    min_count: int = 5
    samples_per_image: int = 1
    pool: bool = False
    seed: int = 0
    batch_size: int = 32
    chunk_images: int = 256
    attribution: Optional[bool] = None       # None: on for a classifier the installed plugins can differentiate
    attribution_target: Optional[str] = None  # the logits layer (default: the model's output)
    relax_maxpool: bool = True               # max-pools get the average pool's derivative (the reference's)
    exporters: Optional[tuple] = None  # None: every registered exporter
    executor: str = "local"                  # who collects the chunks (a plugin's: ray)
    executor_options: dict = field(default_factory=dict)  # e.g. workers=2, address=...
    quiet: bool = False


@dataclass
class Cell:
    """One kept cell of a level: its members (sample ids, most representative first), its direction (row of
    the level's directions), its labels ([name, share] pairs) and, per renderer, its icon and fidelity."""

    i: int  # column (x bin)
    j: int  # row (y bin, 0 at the top)
    members: np.ndarray
    direction: int = 0
    labels: list = field(default_factory=list)     # from the atlas's label source
    label_sets: dict = field(default_factory=dict)  # label source -> [name, share] pairs
    attribution: list = field(default_factory=list)  # top classes by mean attribution: [name, value] pairs
    icons: dict = field(default_factory=dict)     # renderer -> icon path relative to the atlas folder
    fidelity: dict = field(default_factory=dict)  # renderer -> cosine

    @property
    def count(self) -> int:
        return len(self.members)

    @property
    def label(self) -> Optional[str]:
        return self.labels[0][0] if self.labels else None


@dataclass
class Level:
    """One grid level: a ``grid`` x ``grid`` binning of the layout, its kept cells and their directions."""

    grid: int
    min_count: int
    cells: list
    directions: np.ndarray  # cells x channels
    key: str = ""           # what the level was made from (reuse key of its icons)
    attribution: Optional[np.ndarray] = None  # cells x classes: each cell's mean attribution


class Stage:
    """A stage of the build: ``prepare`` checks what it can before any stage runs (options, names,
    capabilities), ``run`` does its work and adds its results to the state."""

    name = "stage"

    def prepare(self, state: "BuildState") -> None:
        pass

    def run(self, state: "BuildState") -> None:
        raise NotImplementedError


class Log:
    """Messages of a build on stdout, silent when quiet."""

    def __init__(self, quiet: bool):
        self.quiet = quiet

    def __call__(self, message: str) -> None:
        if not self.quiet:
            print(message, flush=True)


@dataclass
class BuildState:
    """One build: its inputs (set before the stages run) and what each stage adds."""

    config: BuildConfig
    out: Path
    registry: Any
    model: Any
    layer: Layer
    source: Any
    reuse: Any
    log: Log
    ground_truth: Optional[list] = None
    origin: dict = field(default_factory=dict)        # how to open the model and the images again (paths, options)
    publication: Any = None                           # the staging folder and its commit (stages/publish.py)
    extra: dict = field(default_factory=dict)         # more fields for atlas.json (a derived atlas's class, axis)
    timings: dict = field(default_factory=dict)
    keys: dict = field(default_factory=dict)          # artifact -> reuse key
    # collect (and the per-sample columns other stages add to it, by name)
    executor_options: dict = field(default_factory=dict)
    columns: dict = field(default_factory=dict)
    attribution: Any = None
    store: Any = None
    output: Optional[str] = None                      # the classifier output read beside the layer
    class_names: list = field(default_factory=list)
    # lay out
    layout: Optional[np.ndarray] = None
    # grid
    label_source: Optional[str] = None                # what cell labels come from
    label_sources: list = field(default_factory=list)  # every source a cell has labels from
    quality_labels: Optional[list] = None             # per-sample labels for kNN agreement
    quality_label_source: Optional[str] = None
    levels: list = field(default_factory=list)
    # icons
    renderers: dict = field(default_factory=dict)     # name -> renderer, in --icons order
    icon_options: dict = field(default_factory=dict)  # name -> its options, defaults filled in
    receptive_field: Optional[dict] = None
    # quality and export
    quality: dict = field(default_factory=dict)
    manifest: Optional[dict] = None
    written: list = field(default_factory=list)

    @property
    def staging(self) -> Path:
        """Where this build writes what the atlas shows, until the commit moves it into ``out``."""
        return self.publication.next

    @property
    def default_level(self) -> int:
        d = self.config.default_level
        return d if d is not None else min(1, len(self.levels) - 1)

    def timed(self, name: str):
        return _Timer(self.timings, name)


class _Timer:
    def __init__(self, timings: dict, name: str):
        self.timings, self.name = timings, name

    def __enter__(self):
        self.t = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.timings[self.name] = self.timings.get(self.name, 0.0) + time.perf_counter() - self.t
