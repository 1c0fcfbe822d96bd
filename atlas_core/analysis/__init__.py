"""Analyses of a model over a set of images, beside the atlas: layer health and representation similarity.

- :func:`atlas_core.analysis.health.health`: dead, dormant and saturated channels of every chosen layer, and
  the holdout separability of each layer (``atlas health``).
- :func:`atlas_core.analysis.compare.compare`: linear CKA between the layers of two models (or of one) and the
  per-sample kNN overlap of a pair of layers (``atlas compare``).

Both run one pass over the images with every chosen layer tapped at once, in memory that does not grow with
the number of images. See docs/health.md. (The package exports no names: ``health`` and ``compare`` are its
modules; import the functions from them.)
"""
