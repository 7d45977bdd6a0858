"""Stroke scale: the look of a screen-size painting at any output size, without training.

Why it is needed. The encoders see at most ~156 px (relu5_1), so the strokes WCT paints are
a fixed number of *pixels* wide. At 1280 px a stroke is a visible part of the picture; at 8K
the same stroke is six times smaller relative to it and the result reads as the photo under a
fine texture. The paper's pipeline (``native`` here) has exactly this behaviour.

What is done instead (``auto`` or a factor ``s``): the whole pipeline (levels 5…1) runs on the
content downscaled by ``s`` (to the working size, 1280 px, for ``auto``): that is the
screen-size painting. It is upscaled to the output size, the photo's own high frequencies
(what the downscale removed: ``content - up(down(content))``) are added back, and level 1
runs again at full resolution on it, re-matching the style's finest statistics over sharp
photo detail. Strokes are ``s`` times larger, as at screen size, and the output has detail an
upscale of the screen-size result lacks.

Where the split falls, measured with ``python -m stylize.bench.stroke_scale`` (look kept =
SSIM of the downscaled output against the 1280-px stylization, target ≥ 0.75; detail added =
mean gradient against that stylization upscaled, target ≥ 2.5), sample pair (green_park ×
in1) and a second pair (fullhd × picasso), 8K:

=======================================  ============  ============  =================
at working size | at full resolution     sample 8K     fullhd 8K     fullhd 4K
=======================================  ============  ============  =================
5,4,3 | 2,1                              0.78 / 6.99   0.68 / 5.49   0.80 / 2.91
5,4,3,2,1 | 2,1                          (4K .79/4.18) 0.70 / 5.45   0.83 / 2.89
5,4,3,2,1 | 1   (kept)                   0.89 / 5.79   0.84 / 3.70   0.87 / 2.94
=======================================  ============  ============  =================

Level 2 at full resolution paints its own small strokes again (9 px), which a downscale
averages away, so the look drifts towards ``native``; level 1 alone (radius 2 px) re-matches
colour and grain at pixel scale and keeps the screen-size look. Both targets hold on both
pairs at 4K and 8K only for the kept split, and it is the cheapest (one full-size level).

Everything between the two runs of the tiled engine is a deterministic function of whole
rows (:mod:`stylize.engine.resample`), so tiled ``auto`` equals whole-image ``auto``.
"""
from __future__ import annotations

import numpy as np

from .resample import reduce_strips, resized_strips
from .store import Store, read_rows

# The screen size whose look ``auto`` keeps: the long side at which the paper's models give
# a painting (and the size of the screen-size reference in the bench measure).
WORKING_LONG_SIDE = 1280
FINE_LEVELS = (1,)  # run again at full resolution after the whole pipeline ran at the working size
KERNEL = "bicubic"  # for the working-size layers: smooth, no ringing around strokes
NATIVE, AUTO = "native", "auto"


def parse_stroke_scale(value: str | float | int | None) -> str | float:
    """``native``, ``auto`` or a factor ≥ 1 (how many times larger than native the strokes are)."""
    if value is None:
        return AUTO
    if isinstance(value, str) and value.strip().lower() in (NATIVE, AUTO):
        return value.strip().lower()
    try:
        factor = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"stroke scale must be native, auto or a number >= 1, got '{value}'") from None
    if not np.isfinite(factor) or factor < 1.0:
        raise ValueError(f"stroke scale must be native, auto or a number >= 1, got '{value}'")
    return factor


def stroke_factor(height: int, width: int, stroke_scale: str | float,
                  working: int = WORKING_LONG_SIDE) -> float:
    """How much the coarse levels' input is downscaled: 1 means the native pipeline.

    ``auto`` keeps the look of a ``working``-px stylization: factor long side / working, and
    exactly 1 for images at or below the working size (so they reproduce the paper's outputs).
    """
    scale = parse_stroke_scale(stroke_scale)
    if scale == NATIVE:
        return 1.0
    if scale == AUTO:
        return max(1.0, max(height, width) / working)
    return float(scale)


def split_levels(levels: tuple[int, ...]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(levels run at the working size: all of them, levels run again at full size), in order."""
    return tuple(levels), tuple(k for k in levels if k in FINE_LEVELS)


def working_size(height: int, width: int, factor: float) -> tuple[int, int]:
    return max(1, round(height / factor)), max(1, round(width / factor))


def downscale(source: Store, size: tuple[int, int], kernel: str = KERNEL) -> np.ndarray:
    """An image (or region weights) at the working size, (C, h, w) float32 in RAM (antialiased)."""
    out = np.empty((source.shape[0], *size), np.float32)

    def keep(y0: int, block: np.ndarray) -> None:
        out[:, y0:y0 + block.shape[1]] = block

    reduce_strips(lambda a, b: read_rows(source, a, b), source.shape[1:], size, keep, kernel)
    return out


def compose_base(source: Store, small: np.ndarray, painted: np.ndarray, base: Store, strip: int = 64) -> None:
    """base = clip(source - up(small) + up(painted), 0, 1), strip by strip.

    ``source - up(small)`` is the photo's own high frequencies (what the downscale removed);
    ``up(painted)`` is the coarse levels' painting at full size. ``base`` may be ``source``
    itself: each strip reads only its own rows before writing them. Otherwise ``source`` is
    left as it was: a store's read may be a view of it (a photo of one strip is the caller's
    own array), so the strip is composed in a new array.
    """
    _, h, w = source.shape
    ups = [resized_strips(layer, (h, w), KERNEL, strip) for layer in (small, painted)]
    for (y0, blur), (_, paint) in zip(*ups):
        block = np.subtract(read_rows(source, y0, y0 + blur.shape[1]), blur)
        block += paint
        np.clip(block, 0.0, 1.0, out=block)
        base.write(y0, 0, block)
