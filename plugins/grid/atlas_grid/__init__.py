"""Activation grids (Olah et al., "The Building Blocks of Interpretability", 2018): for one image, every position of
a layer gets an icon of its activation vector, laid out on the image's own grid and sized by its magnitude, with
the class attribution map, the layer-to-layer attribution and the neuron groups (NMF) beside.

Importing this package imports no framework; ``atlas grid`` is registered through the ``atlas_core`` entry point.
"""


def grid(*args, **kwargs):
    """Activation grids of one image; see :func:`atlas_grid.grid.grid`."""
    from .grid import grid as _grid
    return _grid(*args, **kwargs)


__all__ = ["grid"]
