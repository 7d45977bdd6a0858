"""Encoder/decoder architectures, the weights registry and its loader (training is a client)."""
from .architecture import VGGAutoencoderLevel, Widths
from .weights import WeightsError, resolve
from .zoo import FAMILIES, ModelFamily, ResolvedModel, get_family, load_levels, resolve_model

__all__ = [
    "FAMILIES", "ModelFamily", "ResolvedModel", "VGGAutoencoderLevel", "WeightsError", "Widths",
    "get_family", "load_levels", "resolve", "resolve_model",
]
