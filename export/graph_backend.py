"""What the onnxruntime and TensorRT backends share: the protocol around one ``_run``.

Both run exported graphs, ``{(level, "enc"|"dec"): ExportedFile}``, and differ only in how a
graph is executed on a tile. The WCT transform stays outside the graphs, as the same torch
1x1 convolution the torch backend uses: one implementation of the numerics for every
backend, and A and b (derived in fp64) change per image, so baking them into a graph would
mean a re-export per image.
"""
from __future__ import annotations

import torch

from stylize.engine.wct import apply_affine
from stylize.engine.geometry import LevelGeometry


class GraphBackend:
    """Subclasses set ``device``, ``_levels`` and ``_geometry`` and implement ``_run``."""

    device: torch.device
    _levels: tuple[int, ...]
    _geometry: dict[int, LevelGeometry]

    def levels(self) -> tuple[int, ...]:
        return self._levels

    def geometry(self, level: int) -> LevelGeometry:
        return self._geometry[level]

    def _run(self, key: tuple[int, str], x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    @torch.inference_mode()
    def encode(self, level: int, image: torch.Tensor) -> torch.Tensor:
        return self._run((level, "enc"), image)

    @torch.inference_mode()
    def transform(self, level: int, features: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return apply_affine(features.to(self.device), a.to(self.device), b.to(self.device))

    @torch.inference_mode()
    def decode(self, level: int, features: torch.Tensor) -> torch.Tensor:
        return self._run((level, "dec"), features)
