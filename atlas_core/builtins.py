"""Built-in plugin: the PCA reducer, the exemplar renderer, the manifest, mosaic and viewer exporters, and the
local executor."""

from . import hookimpl


def _pca(**params):
    from .reducers import PCA
    return PCA(**params)


def _exemplar():
    from .renderers.exemplar import ExemplarRenderer
    return ExemplarRenderer()


def _manifest():
    from .exporters.manifest import ManifestExporter
    return ManifestExporter()


def _mosaic():
    from .exporters.mosaic import MosaicExporter
    return MosaicExporter()


def _viewer():
    from .exporters.viewer import ViewerExporter
    return ViewerExporter()


def _local():
    from .stages.collect import LocalExecutor
    return LocalExecutor()


@hookimpl
def atlas_register_executors(register):
    register("local", _local, description="collect in the build's own process")


@hookimpl
def atlas_register_reducers(register):
    register("pca", _pca, description="principal components (numpy), deterministic")


@hookimpl
def atlas_register_renderers(register):
    register("exemplar", _exemplar,
             description="receptive-field patch of the member sample nearest the cell's direction")


@hookimpl
def atlas_register_exporters(register):
    register("manifest", _manifest, description="atlas.json, the contract, with its arrays and thumbnails")
    register("mosaic", _mosaic, description="atlas.png: the default level's icons at their cells")
    register("viewer", _viewer, description="index.html: the zoomable viewer, no server needed")
