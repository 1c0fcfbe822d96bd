"""The ``atlas`` command."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Optional, Sequence

from . import __version__
from .types import UsageError


def add_model_arguments(p: argparse.ArgumentParser) -> None:
    """The model input options that every command opening a model takes."""
    g = p.add_argument_group("model input")
    g.add_argument("--backend", help="backend to open the model with (default: the first that can)")
    g.add_argument("--preset", help="input normalization preset: imagenet, none, raw255")
    g.add_argument("--mean", help="per-channel mean, e.g. 0.485,0.456,0.406 (on [0,1] pixels)")
    g.add_argument("--std", help="per-channel std, e.g. 0.229,0.224,0.225")
    g.add_argument("--scale", type=float, help="multiply [0,1] pixels by this first (255 for 0..255 models)")
    g.add_argument("--size", help="input size: 224 or height,width (48,192)")
    g.add_argument("--batch-size", type=int, default=32, help="images per batch (default 32)")
    g.add_argument("--threads", type=int, help="CPU threads for the backend (default: all cores)")
    g.add_argument("--device", help="cpu or cuda (default: cuda when available)")


def open_model_from(args, source=None):
    """The model of a command's arguments, opened with its input options."""
    from .models import open_model
    return open_model(args.model if source is None else source, backend=args.backend, **input_options(args))


def cmd_plugins(args) -> int:
    from .plugins import get_registry
    registry = get_registry()
    if args.json:
        print(json.dumps({
            "plugins": [{"name": p.name, "distribution": p.distribution, "version": p.version,
                         "registers": {f: n for f, n in p.registers.items() if n}}
                        for p in registry.plugins.values()],
            "failed": [{"name": f.name, "distribution": f.distribution, "error": f.error}
                       for f in registry.failed],
            "conflicts": [{"family": c.family, "name": c.name, "kept": c.kept, "ignored": c.ignored}
                          for c in registry.conflicts]}, indent=2))
        return 0
    for p in registry.plugins.values():
        what = "; ".join(f"{fam}: {', '.join(names)}" for fam, names in sorted(p.registers.items()) if names)
        print(f"{p.name:<12} {p.distribution} {p.version:<8} {what or 'nothing'}")
    for f in registry.failed:
        print(f"{f.name:<12} {f.distribution} FAILED to load: {f.error}")
    for c in registry.conflicts:
        print(f"CONFLICT: {c}")
    return 0


def cmd_layers(args) -> int:
    model = open_model_from(args)
    layers = model.layers()
    if not layers:
        raise UsageError(f"{args.model} has no layer that can be tapped (no float tensor of 2 to 4 dimensions "
                         "depends on its input)")
    if args.json:
        print(json.dumps([layer.to_dict() for layer in layers], indent=1))
        return 0
    width = max(len(layer.name) for layer in layers)
    for layer in layers:
        shape = "x".join("?" if d is None else str(d) for d in layer.shape) if layer.shape is not None else "?"
        print(f"{layer.name:<{width}}  {layer.op_type:<20} {shape}")
    print(f"# {len(layers)} layers; input {model.input_spec.layout} "
          f"{model.input_spec.size or 'any size'}; running on {model.provider}", file=sys.stderr)
    return 0


def cmd_activations(args) -> int:
    from .dump import dump_activations
    from .images import open_source
    model = open_model_from(args)
    source = open_source(args.images)
    report = dump_activations(model, source, args.layer, args.output, batch_size=args.batch_size)
    print(report)
    return 0


def input_options(args) -> dict:
    """The model input options of the command line, as ``open_model`` takes them."""
    return dict(preset=args.preset, mean=args.mean, std=args.std, scale=args.scale, size=args.size,
                batch_size=args.batch_size, threads=args.threads, device=args.device)


def _grids(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise UsageError(f"--levels must be comma-separated integers, e.g. 10,20,40; got {text!r}") from None


def _names(text: Optional[str]) -> Optional[list]:
    return None if text is None else [s.strip() for s in text.split(",") if s.strip()]


def add_build_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``atlas build`` (docs/guide.md); other commands that build atlases share them."""
    from .stages.state import DEFAULT_LEVELS
    p.add_argument("--images", help="folder of images (recursive), a .npy array, or a source name (demo)")
    p.add_argument("--layer", help="layer to atlas (see atlas layers MODEL)")
    p.add_argument("--out", default="atlas-out", help="output folder (default atlas-out)")
    p.add_argument("--reducer", default="umap", help="umap (default), tsne, pca, or a plugin's")
    p.add_argument("--reducer-param", action="append", default=[], metavar="KEY=VALUE",
                   help="reducer hyperparameter, e.g. n_neighbors=20 (repeat)")
    p.add_argument("--icons", default="exemplar", help="renderers, comma-separated: exemplar, featureviz")
    p.add_argument("--icon-size", type=int, default=80, help="icon size in pixels (default 80)")
    p.add_argument("--icon-option", action="append", default=[], metavar="KEY=VALUE",
                   help="renderer option, e.g. steps=512 or featureviz.steps=512 for one renderer (repeat)")
    p.add_argument("--levels", default=",".join(map(str, DEFAULT_LEVELS)),
                   help="grid sizes, comma-separated (default 10,20,40; capped by the sample count)")
    p.add_argument("--default-level", type=int, help="index of the level drawn in atlas.png (default 1)")
    p.add_argument("--min-count", type=int, default=5, help="minimum samples for a cell to be kept (default 5)")
    p.add_argument("--samples-per-image", type=int, default=1, help="random positions per image (default 1)")
    p.add_argument("--pool", choices=["none", "mean"], default="none", help="mean: one vector per image")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--labels", help="ground-truth labels: a CSV of file,label rows, or 'folders' (each image's "
                                    "sub-folder name)")
    p.add_argument("--attribution", action=argparse.BooleanOptionalAction, default=None,
                   help="per-sample class attribution (a . dlogit/da) and cell labels from it (default: on for a "
                        "classifier that an installed plugin can differentiate)")
    p.add_argument("--attribution-target", metavar="LAYER", help="the logits to attribute to (default: the output)")
    p.add_argument("--relax-maxpool", action=argparse.BooleanOptionalAction, default=True,
                   help="max-pools get the average pool's derivative in attribution (the reference's; default on)")
    p.add_argument("--chunk-images", type=int, default=256, help="images per store chunk (default 256)")
    p.add_argument("--exporters", help="exporters to run, comma-separated (default: every installed one; "
                                       "the manifest always runs)")
    p.add_argument("--executor", default="local", help="who collects: local (default) or a plugin's (ray)")
    p.add_argument("--executor-option", action="append", default=[], metavar="KEY=VALUE",
                   help="executor option, e.g. threads=1 or retries=0 (repeat)")
    p.add_argument("--workers", type=int, metavar="N", help="parallel workers of the executor (--executor ray)")
    p.add_argument("--address", metavar="ADDR", help="the cluster to run on, e.g. auto or HOST:6379 (--executor ray; "
                                                    "default: start a local one)")
    p.add_argument("--quiet", action="store_true", help="no progress output")


def build_options(args) -> dict:
    """The options of ``add_build_arguments`` as :func:`atlas_core.build` takes them."""
    from .options import key_values
    return dict(reducer=args.reducer, reducer_params=key_values(args.reducer_param, "--reducer-param"),
                icons=_names(args.icons), levels=_grids(args.levels), default_level=args.default_level,
                min_count=args.min_count, samples_per_image=args.samples_per_image, pool=args.pool == "mean",
                seed=args.seed, batch_size=args.batch_size, chunk_images=args.chunk_images,
                icon_size=args.icon_size, icon_options=key_values(args.icon_option, "--icon-option"),
                attribution=args.attribution, attribution_target=args.attribution_target,
                relax_maxpool=args.relax_maxpool, exporters=_names(args.exporters), executor=args.executor,
                executor_options=executor_options(args), quiet=args.quiet)


def executor_options(args) -> dict:
    """``--executor-option KEY=VALUE`` with the shorthands ``--workers`` and ``--address`` folded in; the
    shorthands are refused with the local executor (it runs in this process: its threads are ``--threads``)."""
    from .options import key_values
    options = key_values(args.executor_option, "--executor-option")
    given = {name: value for name, value in (("workers", args.workers), ("address", args.address)) if value is not None}
    if given and args.executor == "local":
        raise UsageError(f"--{' and --'.join(given)} need a parallel executor (--executor ray); the local executor "
                         "collects in this process (its CPU threads: --threads)")
    for name, value in given.items():
        if name in options and options[name] != value:
            raise UsageError(f"--{name} {value} and --executor-option {name}={options[name]} disagree: give one")
        options[name] = value
    return options


def cmd_build(args) -> int:
    from .stages import build
    model = args.model_opt or args.model
    if not model:
        raise UsageError("give a model: atlas build MODEL ... or --model package.module:function")
    if not args.images:
        raise UsageError("give --images: a folder of images, a .npy array, or a source name such as demo")
    if not args.layer:
        raise UsageError(f"give --layer (list them with: atlas layers {model})")
    build(model, args.images, args.layer, args.out, labels=args.labels, backend=args.backend,
          input_options=input_options(args), **build_options(args))
    return 0


def _derived_options(args) -> dict:
    """The layout, grid and icon options of a derived atlas (None where the command's default applies)."""
    from .options import key_values
    return dict(reducer=args.reducer, reducer_params=key_values(args.reducer_param, "--reducer-param") or None,
                levels=tuple(_grids(args.levels)) if args.levels else None, min_count=args.min_count,
                icons=tuple(_names(args.icons)), icon_size=args.icon_size,
                icon_options=key_values(args.icon_option, "--icon-option"), seed=args.seed, quiet=args.quiet)


def _derived_arguments(p: argparse.ArgumentParser, reducer: str, levels: str, min_count: int) -> None:
    p.add_argument("atlas", help="a built atlas folder (with attribution)")
    p.add_argument("--out", required=True, help="output folder: a normal atlas folder")
    p.add_argument("--filter", choices=["winner", "top", "both"], default="both",
                   help="samples whose top attribution is the class (winner), the --top-n with the largest "
                        "positive attribution to it (top), or both (default)")
    p.add_argument("--top-n", type=int, default=2000, help="samples kept by the top filter (default 2000)")
    p.add_argument("--reducer", help=f"default {reducer}")
    p.add_argument("--reducer-param", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--levels", help=f"grid sizes (default {levels})")
    p.add_argument("--min-count", type=int, help=f"minimum samples per cell (default {min_count})")
    p.add_argument("--icons", default="exemplar", help="renderers, comma-separated (default exemplar)")
    p.add_argument("--icon-size", type=int, default=80)
    p.add_argument("--icon-option", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--model", help="the model, if not where the atlas was built from")
    p.add_argument("--images", help="the images, if not where the atlas was built from (the same ones)")
    p.add_argument("--quiet", action="store_true")


def cmd_class_atlas(args) -> int:
    from .classes import class_atlas
    class_atlas(args.atlas, args.class_name, args.out, filter=args.filter, top_n=args.top_n, model=args.model,
                images=args.images, **_derived_options(args))
    return 0


def cmd_compare_classes(args) -> int:
    from .classes import compare_classes
    compare_classes(args.atlas, _names(args.classes), args.out, filter=args.filter, top_n=args.top_n,
                    model=args.model, images=args.images, **_derived_options(args))
    return 0


def cmd_patch_test(args) -> int:
    from .classes.patch import patch_test
    patch_test(args.atlas, args.cell, args.onto, args.target, args.out, renderer=args.icon, size=args.size,
               positions=args.positions, controls=args.controls, max_images=args.max_images, seed=args.seed,
               model=args.model, batch_size=args.batch_size, quiet=args.quiet)
    return 0


def cmd_health(args) -> int:
    from .analysis.health import health, summary_line
    from .images import open_source
    report = health(open_model_from(args), open_source(args.images), args.out, layers=args.layers,
                    holdout=open_source(args.holdout) if args.holdout else None,
                    dormant_threshold=args.dormant_threshold, batch_size=args.batch_size, quiet=args.quiet)
    print(summary_line(report, args.out))
    return 0


def cmd_compare(args) -> int:
    from .analysis.compare import compare, summary_line
    from .images import open_source
    a = open_model_from(args, args.model_a)
    b = open_model_from(args, args.model_b) if args.model_b else None
    report = compare(a, b, open_source(args.images), args.out, layers_a=args.layers_a, layers_b=args.layers_b,
                     knn_pair=args.knn_pair, k=args.knn, batch_size=args.batch_size, cka_batch=args.cka_batch,
                     quiet=args.quiet, align=args.align, align_method=args.align_method, align_grid=args.align_grid,
                     align_reducer=args.align_reducer, labels=args.labels, align_samples=args.align_samples)
    print(summary_line(report, args.out))
    return 0


def cmd_view(args) -> int:
    import webbrowser
    from pathlib import Path
    page = Path(args.dir) / "index.html"
    if not page.is_file():
        raise UsageError(f"{page} not found: run atlas build first")
    print(page.resolve().as_uri())
    if not args.no_browser:
        webbrowser.open(page.resolve().as_uri())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="atlas", description="Activation atlases for any model.")
    parser.add_argument("--version", action="version", version=f"atlas {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("plugins", help="list installed plugins and what they register")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_plugins)

    p = sub.add_parser("layers", help="list the layers of a model")
    p.add_argument("model")
    p.add_argument("--json", action="store_true")
    add_model_arguments(p)
    p.set_defaults(func=cmd_layers)

    p = sub.add_parser("activations", help="save the full activations of layers for a folder of images")
    p.add_argument("model")
    p.add_argument("--images", required=True, help="folder of images, .npy array, or demo")
    p.add_argument("--layer", action="append", required=True, help="layer name (repeat for several)")
    p.add_argument("-o", "--output", required=True, help="output .npz file")
    add_model_arguments(p)
    p.set_defaults(func=cmd_activations)

    p = sub.add_parser("build", help="build an activation atlas")
    p.add_argument("model", nargs="?", help="model file, or use --model")
    p.add_argument("--model", dest="model_opt", help="model file or import path package.module:function")
    add_build_arguments(p)
    add_model_arguments(p)
    p.set_defaults(func=cmd_build)

    p = sub.add_parser("class-atlas", help="an atlas of the samples that push the model towards one class")
    p.add_argument("--class", dest="class_name", required=True, help="class name (or index)")
    _derived_arguments(p, "umap (20 neighbours, min_dist 0.01, cosine)", "8", 4)
    p.set_defaults(func=cmd_class_atlas)

    p = sub.add_parser("compare-classes", help="two classes side by side: x is attribution(B) - attribution(A)")
    p.add_argument("--classes", required=True, help="A,B: class names (or indices); A is drawn on the left")
    _derived_arguments(p, "tsne (1-D, cosine) for y", "10", 4)
    p.set_defaults(func=cmd_compare_classes)

    p = sub.add_parser("patch-test", help="paste a cell's patch onto other images: does the target class rise?")
    p.add_argument("atlas", help="a built atlas folder")
    p.add_argument("--cell", required=True, help="GRID:I,J, a cell of the level with that grid size")
    p.add_argument("--onto", required=True, help="images to paste onto (folder, .npy or source name)")
    p.add_argument("--target", required=True, help="the class whose probability is watched (name or index)")
    p.add_argument("--out", required=True, help="output folder for patch-test.json, patch-test.png, index.html")
    p.add_argument("--icon", help="which renderer's icon to paste (default: the atlas's first)")
    p.add_argument("--size", type=float, default=0.3, help="patch side as a fraction of the image (default 0.3)")
    p.add_argument("--positions", type=int, default=4, help="random places per image (default 4)")
    p.add_argument("--controls", type=int, default=8, help="other cells pasted as the control (default 8)")
    p.add_argument("--max-images", type=int, default=200, help="images used at most (default 200)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--model", help="the model, if not where the atlas was built from")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_patch_test)

    p = sub.add_parser("health", help="dead, dormant and saturated channels of every layer, and holdout "
                                      "separability")
    p.add_argument("model", help="model file or import path package.module:function")
    p.add_argument("--images", required=True, help="folder of images, .npy array, or a source name (demo)")
    p.add_argument("--out", required=True, help="output folder: health.json, health.png, index.html")
    p.add_argument("--layers", default="all", help="all (default) or comma-separated layer names (see atlas layers)")
    p.add_argument("--holdout", help="held-out images (folder, .npy or source name): per-layer kNN two-sample "
                                     "separability of --images against them (0.5 = indistinguishable)")
    p.add_argument("--dormant-threshold", type=float, default=0.025, metavar="TAU",
                   help="dormant when E|h| over the layer's mean E|h| is at most TAU (ReDo; default 0.025)")
    p.add_argument("--quiet", action="store_true")
    add_model_arguments(p)
    p.set_defaults(func=cmd_health)

    p = sub.add_parser("compare", help="linear CKA between the layers of two models (or of one), kNN overlap")
    p.add_argument("model_a", help="model file or import path")
    p.add_argument("model_b", nargs="?", help="second model (default: MODEL_A against itself)")
    p.add_argument("--images", required=True, help="folder of images, .npy array, or a source name (demo)")
    p.add_argument("--out", required=True, help="output folder: compare.json, compare.png, index.html")
    p.add_argument("--layers-a", default="all", help="all (default) or comma-separated layers of MODEL_A")
    p.add_argument("--layers-b", help="all or comma-separated layers of MODEL_B (default: all; --layers-a when "
                                      "MODEL_A is compared with itself)")
    p.add_argument("--knn-pair", metavar="LAYER_A,LAYER_B",
                   help="layers whose per-image kNN overlap is computed (default: the last chosen layer of each)")
    p.add_argument("--knn", type=int, default=10, metavar="K", help="neighbours per image for the overlap (default 10)")
    p.add_argument("--cka-batch", type=int, default=256, help="images per minibatch of the CKA estimator (default 256)")
    p.add_argument("--align", metavar="LAYER_A,LAYER_B",
                   help="also draw aligned atlases of these two layers: aligned.html, aligned.json, aligned*.png")
    p.add_argument("--align-method", choices=("joint", "aligned-umap"),
                   help="the aligned layout drawn (default joint; both are measured)")
    p.add_argument("--align-grid", type=int, metavar="N", help="cells a side of the aligned atlases (default: auto)")
    p.add_argument("--align-reducer", default="umap", help="reducer of the aligned layouts (default umap)")
    p.add_argument("--align-samples", choices=("pool", "position"), default="pool",
                   help="aligned samples: one mean-pooled vector per image (default), or one random inner position "
                        "per image, the same in both layers (two spatial layers of one size)")
    p.add_argument("--labels", help="ground truth for the aligned atlases' cells: a CSV of file,label or 'folders'")
    p.add_argument("--quiet", action="store_true")
    add_model_arguments(p)
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("view", help="open an atlas in the browser")
    p.add_argument("dir")
    p.add_argument("--no-browser", action="store_true", help="only print the page's address")
    p.set_defaults(func=cmd_view)

    _plugin_commands(sub)
    return parser


def _plugin_commands(sub) -> None:
    """The subcommands that plugins register (the demo's ``atlas demo`` among them)."""
    from .plugins import get_registry
    registry = get_registry()
    taken = set(sub.choices)
    for reg in registry.ordered("commands"):
        if reg.name in taken:
            print(f"atlas: note: plugin {reg.plugin!r} registers command {reg.name!r}, which atlas has already; "
                  "ignored", file=sys.stderr)
            continue
        try:
            command = reg.factory()
            p = sub.add_parser(reg.name, help=reg.description or None)
            command.add_arguments(p)
        except Exception as exc:  # a broken plugin command must not break the others
            print(f"atlas: note: command {reg.name!r} of plugin {reg.plugin!r} is skipped: "
                  f"{type(exc).__name__}: {exc}", file=sys.stderr)
            sub.choices.pop(reg.name, None)
            continue
        p.set_defaults(func=command.run)


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except UsageError as exc:
        print(f"atlas: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("atlas: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # e.g. atlas layers MODEL | head
        import os
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:  # the machine's, not the code's: a full disk, a read-only folder
        print(f"atlas: error: {_os_error(exc)}", file=sys.stderr)
        return 1


def _os_error(exc: OSError) -> str:
    """One line for an operating-system error, saying what to do."""
    import errno
    where = f" (writing {exc.filename})" if getattr(exc, "filename", None) else ""
    if exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", -1)):
        return (f"no space left on the device{where}: free some space or write elsewhere; an atlas that was there "
                "before is left as it was")
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"permission denied{where}: {exc.strerror}; choose a folder you can write to"
    return f"{exc.strerror or type(exc).__name__}{where}"


if __name__ == "__main__":
    sys.exit(main())
