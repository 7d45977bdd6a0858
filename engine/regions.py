"""Regional styles: a soft mask chooses, per pixel, which style (or none) paints it.

Each region r has weights m_r(x) ≥ 0 with Σ_r m_r = 1 (hard label masks become soft only at
their resized edges). Its statistics are the content features' moments weighted by m_r over
the whole image (:func:`stylize.engine.wct.tile_moments` with weights), its map is WCT from
those moments to its style's (identity for "keep the photo"), and a feature becomes
Σ_r m_r (A_r f + b_r). The mask reaches
each level's feature grid by averaging over the level's stride cells; tile boxes sit on that
grid, so tiled and whole-image runs average the same cells and agree exactly.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .store import Store
from .tiles import Box


@dataclass
class Regions:
    """(R, H, W) region weights in a store, and each region's style index (None: the photo)."""

    weights: Store
    styles: list[int | None]

    def pooled(self, box: Box, stride: int, device) -> torch.Tensor:
        """(R, h/stride, w/stride) mean weights over each stride cell of ``box`` (image coords)."""
        m = self.weights.read(box)
        r, h, w = m.shape
        m = m.reshape(r, h // stride, stride, w // stride, stride).mean(axis=(2, 4), dtype=np.float32)
        return torch.from_numpy(np.ascontiguousarray(m)).to(device)


def blend_maps(features: torch.Tensor, weights: torch.Tensor, maps, transform) -> torch.Tensor:
    """Σ_r m_r · transform(f, A_r, b_r) for (1, C, h, w) features and (R, h, w) weights."""
    out = None
    for r, (a, b) in enumerate(maps):
        if not bool((weights[r] > 0).any()):
            continue
        term = transform(features, a, b) * weights[r]
        out = term if out is None else out + term
    return out if out is not None else torch.zeros_like(features)
