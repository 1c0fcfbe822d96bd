"""Built-in plugin: the PCA reducer and the exemplar icon renderer."""

from . import hookimpl


def _pca(**params):
    from .reducers import PCA
    return PCA(**params)


def _exemplar():
    from .icons import ExemplarRenderer
    return ExemplarRenderer()


@hookimpl
def atlas_register_reducers(register):
    register("pca", _pca, description="principal components (numpy), deterministic")


@hookimpl
def atlas_register_renderers(register):
    register("exemplar", _exemplar,
             description="receptive-field patch of the member sample nearest the cell's direction")
