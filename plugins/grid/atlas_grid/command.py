"""``atlas grid MODEL IMAGE --layers L1,L2,... --out DIR``: the command's arguments and its call."""

from __future__ import annotations

from atlas_core import UsageError


class GridCommand:
    def add_arguments(self, p) -> None:
        from atlas_core.cli import add_model_arguments
        p.add_argument("model", help="model file or import path package.module:function")
        p.add_argument("image", help="one image file")
        p.add_argument("--layers", required=True, help="layers, comma-separated (graph order is kept)")
        p.add_argument("--out", required=True, help="output folder: index.html, grid.json, a PNG per layer")
        p.add_argument("--atlas", action="append", default=[], metavar="LAYER=DIR",
                       help="a built atlas of a layer (repeat): icons from its cells, or exemplars from its samples")
        p.add_argument("--icons", choices=["atlas", "exemplar", "featureviz"],
                       help="icons per position (default: atlas when --atlas is given, else exemplar)")
        p.add_argument("--icon-option", action="append", default=[], metavar="KEY=VALUE",
                       help="featureviz icon option, e.g. steps=64 or size=48 (repeat; docs/grid.md)")
        p.add_argument("--seed", type=int, default=0, help="seed of the groups and the featureviz icons (default 0)")
        p.add_argument("--images", help="exemplar icons from every position of up to 64 of these images")
        p.add_argument("--atlas-level", type=int, help="the atlas level (grid size) to take cells from "
                                                      "(default: the atlas's default level)")
        p.add_argument("--class", dest="class_name", help="class of the attribution maps (default: the top class)")
        p.add_argument("--groups", type=int, default=6, help="neuron groups (NMF components) per layer (default 6)")
        p.add_argument("--size-mode", choices=["area", "opacity"], default="area",
                       help="an icon's area (default) or opacity follows the activation's magnitude")
        p.add_argument("--no-flow", action="store_true", help="skip the layer-to-layer attribution")
        p.add_argument("--no-attribution", action="store_true",
                       help="skip everything that needs gradients (class maps and flows)")
        p.add_argument("--icon-size", type=int, default=48, help="icon pixels per position in the PNGs (default 48)")
        p.add_argument("--quiet", action="store_true")
        add_model_arguments(p)

    def run(self, args) -> int:
        from atlas_core.cli import input_options
        from atlas_core.options import key_values
        from .grid import grid
        atlases = {}
        for item in args.atlas:
            if "=" not in item:
                raise UsageError(f"--atlas must be LAYER=DIR, got {item!r}")
            layer, folder = item.split("=", 1)
            atlases[layer.strip()] = folder
        layers = [s.strip() for s in args.layers.split(",") if s.strip()]
        grid(args.model, args.image, layers, args.out, atlases=atlases, icons=args.icons, images=args.images,
             class_name=args.class_name, n_groups=args.groups, size_mode=args.size_mode, flows=not args.no_flow,
             icon_size=args.icon_size, atlas_level=args.atlas_level, attribution=not args.no_attribution,
             backend=args.backend, icon_options=key_values(args.icon_option, "--icon-option"), seed=args.seed,
             input_options=input_options(args), quiet=args.quiet)
        return 0
