"""Encoder/decoder architectures, the weights registry and its loader, and training."""
from .architecture import LevelGeometry, VGGAutoencoderLevel, Widths
from .weights import WeightsError, resolve
from .zoo import FAMILIES, ModelFamily, get_family, load_levels

__all__ = [
    "FAMILIES", "LevelGeometry", "ModelFamily", "VGGAutoencoderLevel", "WeightsError", "Widths",
    "get_family", "load_levels", "resolve",
]
