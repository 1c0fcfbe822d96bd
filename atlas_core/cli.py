"""The ``atlas`` command."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Optional, Sequence

from . import __version__
from .types import UsageError


def _model_options(p: argparse.ArgumentParser) -> None:
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


def _open(args):
    from .models import open_model
    return open_model(args.model, backend=args.backend, preset=args.preset, mean=args.mean, std=args.std,
                      scale=args.scale, size=args.size, batch_size=args.batch_size, threads=args.threads,
                      device=args.device)


def cmd_plugins(args) -> int:
    from .plugins import get_registry
    registry = get_registry()
    if args.json:
        print(json.dumps({
            "plugins": [{"name": p.name, "distribution": p.distribution, "version": p.version,
                         "registers": p.registers} for p in registry.plugins.values()],
            "failed": [{"name": f.name, "distribution": f.distribution, "error": f.error}
                       for f in registry.failed]}, indent=2))
        return 0
    for p in registry.plugins.values():
        what = "; ".join(f"{fam}: {', '.join(names)}" for fam, names in sorted(p.registers.items())) or "nothing"
        print(f"{p.name:<12} {p.distribution} {p.version:<8} {what}")
    for f in registry.failed:
        print(f"{f.name:<12} {f.distribution} FAILED to load: {f.error}")
    return 0


def cmd_layers(args) -> int:
    model = _open(args)
    layers = model.layers()
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
    model = _open(args)
    source = open_source(args.images)
    report = dump_activations(model, source, args.layer, args.output, batch_size=args.batch_size)
    print(report)
    return 0


def cmd_build(args) -> int:
    from .pipeline import build_from_args
    return build_from_args(args)


def cmd_demo(args) -> int:
    from .pipeline import demo
    return demo(args)


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
    _model_options(p)
    p.set_defaults(func=cmd_layers)

    p = sub.add_parser("activations", help="save the full activations of layers for a folder of images")
    p.add_argument("model")
    p.add_argument("--images", required=True, help="folder of images, .npy array, or demo")
    p.add_argument("--layer", action="append", required=True, help="layer name (repeat for several)")
    p.add_argument("-o", "--output", required=True, help="output .npz file")
    _model_options(p)
    p.set_defaults(func=cmd_activations)

    from .pipeline import add_build_arguments
    p = sub.add_parser("build", help="build an activation atlas")
    p.add_argument("model", nargs="?", help="model file, or use --model")
    p.add_argument("--model", dest="model_opt", help="model file or import path package.module:function")
    add_build_arguments(p)
    _model_options(p)
    p.set_defaults(func=cmd_build)

    p = sub.add_parser("demo", help="build the demo atlas (EfficientNet-Lite0 on bundled photos)")
    p.add_argument("--out", default="demo-atlas", help="output folder (default demo-atlas)")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--reducer", default="umap")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("view", help="open an atlas in the browser")
    p.add_argument("dir")
    p.add_argument("--no-browser", action="store_true", help="only print the page's address")
    p.set_defaults(func=cmd_view)
    return parser


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


if __name__ == "__main__":
    sys.exit(main())
