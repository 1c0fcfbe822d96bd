"""The demo plugin: the ``demo`` image source and the ``atlas demo`` command (EfficientNet-Lite0 on the
bundled photos). Registration imports neither torch nor onnx."""

from atlas_core import hookimpl

DEMO_LAYER = "add_530"  # EfficientNet-Lite0 (dynamo export): the residual stream of stage 5, 14 x 14 x 112


def _source():
    from .photos import demo_images
    return demo_images()


class DemoCommand:
    """``atlas demo``: builds the demo atlas and prints where it is."""

    def add_arguments(self, parser) -> None:
        parser.add_argument("--out", default="demo-atlas", help="output folder (default demo-atlas)")
        parser.add_argument("--quiet", action="store_true")
        parser.add_argument("--reducer", default="umap")

    def run(self, args) -> int:
        import atlas_core
        from .assets import efficientnet_lite0_onnx
        model = efficientnet_lite0_onnx("dynamo")
        if not args.quiet:
            print(f"demo: EfficientNet-Lite0 (real ImageNet weights) at {model}", flush=True)
        atlas_core.build(str(model), "demo", DEMO_LAYER, args.out, reducer=args.reducer,
                         samples_per_image=2, levels=(10, 20, 40), quiet=args.quiet)
        return 0


@hookimpl
def atlas_register_sources(register):
    register("demo", _source, description="3,450 crops, scales and flips of 23 real photos (skimage, sklearn)")


@hookimpl
def atlas_register_commands(register):
    register("demo", DemoCommand, description="build the demo atlas (EfficientNet-Lite0 on bundled photos)")
