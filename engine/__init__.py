"""Tiled multi-level WCT: exact statistics over any image size, in bounded memory."""
from .stylizer import Stylizer

__all__ = ["Stylizer"]
