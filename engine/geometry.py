"""What the tiled engine must know about one level of any model, and nothing of its weights.

The engine plans tiles from these numbers alone; a model family derives them from its layer
specification (:mod:`stylize.models.architecture`), an exported graph carries a copy in its
metadata, so a deployment without the model code still plans exactly.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class LevelGeometry:
    """What the tiled engine needs to know about one level, and nothing of its weights."""

    level: int
    channels: int
    stride: int
    encoder_radius: int
    decoder_radius: int
    macs_per_pixel: float
    peak_bytes_per_pixel: float

    @property
    def radius(self) -> int:
        return self.encoder_radius + self.decoder_radius
