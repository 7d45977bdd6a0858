"""Tile planning and tiled evaluation that know nothing of the model.

A predictor is any callable from an image region to an output whose grid is the input's
scaled by ``scale`` (1 for image→image, 1/s for an encoder of stride s). The planner gives
each tile a *core* (the part it owns and writes) and a *read* region (the core grown by a
halo). Three rules make tiled output equal whole-image output for a translation-equivariant
predictor of receptive-field radius ≤ halo:

* origins on the predictor's stride grid (``align``), so pooling sees the same windows;
* a halo at least the receptive-field radius, so the predictor's own edge handling at an
  interior cut never reaches the core;
* at the image border the read region stops exactly at the border, so the predictor's own
  padding (reflection, here) is what it would be on the whole image.

Images whose sides are not multiples of ``align`` are read as if reflect-padded to the next
multiple (``padded_size``); only the real pixels are written back.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np


@dataclass(frozen=True)
class Box:
    y0: int
    y1: int
    x0: int
    x1: int

    @property
    def height(self) -> int:
        return self.y1 - self.y0

    @property
    def width(self) -> int:
        return self.x1 - self.x0

    def shift(self, dy: int, dx: int) -> "Box":
        return Box(self.y0 + dy, self.y1 + dy, self.x0 + dx, self.x1 + dx)

    def scale(self, f: float) -> "Box":
        return Box(round(self.y0 * f), round(self.y1 * f), round(self.x0 * f), round(self.x1 * f))

    def clip(self, height: int, width: int) -> "Box":
        return Box(self.y0, min(self.y1, height), self.x0, min(self.x1, width))


@dataclass(frozen=True)
class Tile:
    read: Box  # region fed to the predictor, in image coordinates
    core: Box  # region this tile owns, in image coordinates

    @property
    def inner(self) -> Box:
        """The core relative to the read region."""
        return self.core.shift(-self.read.y0, -self.read.x0)


def round_up(n: int, m: int) -> int:
    return -(-n // m) * m


def padded_size(height: int, width: int, align: int, minimum: int = 1) -> tuple[int, int]:
    """Smallest multiples of ``align`` covering the image, at least ``minimum`` each."""
    return max(round_up(height, align), minimum), max(round_up(width, align), minimum)


def plan_tiles(height: int, width: int, tile: int | None, halo: int, align: int = 1) -> list[Tile]:
    """Tiles covering a ``height × width`` image (sides multiples of ``align``).

    ``tile`` is the core side (rounded up to ``align``; ``None`` = one tile, no halo).
    ``halo`` is rounded up to ``align``. Row-major order.
    """
    if height % align or width % align:
        raise ValueError(f"image {height}x{width} is not a multiple of align={align}")
    if tile is None or tile >= max(height, width):
        whole = Box(0, height, 0, width)
        return [Tile(whole, whole)]
    tile, halo = round_up(max(tile, align), align), round_up(halo, align)
    tiles = []
    for y0 in range(0, height, tile):
        for x0 in range(0, width, tile):
            core = Box(y0, min(y0 + tile, height), x0, min(x0 + tile, width))
            read = Box(max(0, core.y0 - halo), min(height, core.y1 + halo),
                       max(0, core.x0 - halo), min(width, core.x1 + halo))
            tiles.append(Tile(read, core))
    return tiles


def reflect_index(idx: np.ndarray, n: int) -> np.ndarray:
    """Map indices outside [0, n) by reflection without repeating the edge (as ReflectionPad)."""
    if n == 1:
        return np.zeros_like(idx)
    period = 2 * (n - 1)
    idx = np.mod(idx, period)
    return np.where(idx >= n, period - idx, idx)


def read_region(image: np.ndarray, box: Box) -> np.ndarray:
    """(C, h, w) copy of ``image[:, box]`` for a (C, H, W) array, reflecting past its edges."""
    _, h, w = image.shape
    if box.y0 >= 0 and box.x0 >= 0 and box.y1 <= h and box.x1 <= w:
        return np.ascontiguousarray(image[:, box.y0:box.y1, box.x0:box.x1])
    rows = reflect_index(np.arange(box.y0, box.y1), h)
    cols = reflect_index(np.arange(box.x0, box.x1), w)
    return image[:, rows[:, None], cols[None, :]]


def tiled_map(read: Callable[[Box], object], predictor: Callable[[object], object],
              plan: list[Tile], scale: float = 1.0) -> Iterator[tuple[Tile, object]]:
    """Yield ``(tile, predictor(read(tile.read)) cropped to the tile's core)`` per tile.

    Outputs are (…, h, w) arrays or tensors; ``scale`` maps image coordinates to the
    predictor's output grid (exact when the plan is aligned to 1/scale).
    """
    for t in plan:
        out = predictor(read(t.read))
        inner = t.inner.scale(scale)
        yield t, out[..., inner.y0:inner.y1, inner.x0:inner.x1]
