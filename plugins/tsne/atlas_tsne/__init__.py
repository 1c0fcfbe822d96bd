"""t-SNE reducer plugin for actatlas (registered as ``tsne``); openTSNE is imported on first fit."""

__version__ = "0.1.0"
