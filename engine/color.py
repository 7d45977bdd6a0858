"""Keeping the photo's colours: two pointwise or global-linear maps, exact under tiling.

* ``luminance``: the stylized image's luma (BT.601 Y) with the photo's chroma (Cb, Cr), per
  pixel. Strokes and tones come from the style; hues and saturation stay the photo's.
* ``style``: the style image is recoloured before its statistics are taken, by the affine map
  that gives its RGB mean and covariance the photo's (WCT in colour space: Cc^½ Cs^-½ (s - μs)
  + μc). The whole pipeline then paints with a palette that is the photo's own.

Both need only global RGB moments or per-pixel values, so they are the same tiled or whole.
Shapes: images (3, H, W) float32 in [0, 1]; moments over RGB pixels, fp64.
"""
from __future__ import annotations

import numpy as np
import torch

from .store import DiskStore, RamStore, Store, StoreFactory, read_rows
from .wct import Moments, merge_moments, symmetric_power, tile_moments

MODES = ("off", "luminance", "style")
# ITU-R BT.601 (JPEG) RGB → YCbCr, on [0, 1] values; chroma centred on 0.
_TO_YCC = np.array([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]], np.float32)
_TO_RGB = np.linalg.inv(_TO_YCC.astype(np.float64)).astype(np.float32)


def to_ycbcr(rgb: np.ndarray) -> np.ndarray:
    """(3, ...) RGB → (3, ...) Y, Cb, Cr (Cb and Cr centred on 0)."""
    return np.tensordot(_TO_YCC, rgb, axes=1)


def to_rgb(ycc: np.ndarray) -> np.ndarray:
    return np.tensordot(_TO_RGB, ycc, axes=1)


def keep_luminance(styled: np.ndarray, content: np.ndarray) -> np.ndarray:
    """The styled image's luma with the content's chroma, clamped to [0, 1]; same shape."""
    ycc = to_ycbcr(content)
    ycc[0] = to_ycbcr(styled)[0]
    return np.clip(to_rgb(ycc), 0.0, 1.0).astype(np.float32, copy=False)


def rgb_moments(image: np.ndarray) -> Moments:
    """Moments of the RGB pixels of a (3, h, w) block (merge blocks with ``merge_moments``)."""
    return tile_moments(torch.from_numpy(np.ascontiguousarray(image)).reshape(3, -1))


def recolour(style: np.ndarray | Store, content: Moments, rel_eps: float = 1e-10,
             make: StoreFactory | None = None) -> np.ndarray | Store:
    """``style`` with the RGB mean and covariance of ``content``, clamped to [0, 1]: an array
    for an array; for a store (a style too large for RAM), a store from ``make`` (default: a
    scratch file beside it), strip by strip (the same pixels: arrays take the same strips)."""
    source = RamStore(style) if isinstance(style, np.ndarray) else style
    s = rgb_moments_of(source)
    a = (symmetric_power(content.covariance(), 0.5, rel_eps, floor=content.noise_floor())
         @ symmetric_power(s.covariance(), -0.5, rel_eps, floor=s.noise_floor()))  # a flat style: its mean moved
    b = content.mean - a @ s.mean
    if isinstance(style, np.ndarray):
        out = RamStore.empty(*source.shape)
    else:  # beside the style: a scratch style stays out of RAM recoloured
        folder = style.folder if isinstance(style, DiskStore) else None
        out = (make or StoreFactory(folder, ram_pixels=0))(*source.shape)
    _, h, w = source.shape
    for y0 in range(0, h, 256):
        block = read_rows(source, y0, min(h, y0 + 256))
        flat = torch.from_numpy(np.ascontiguousarray(block).reshape(3, -1)).double()
        out.write(y0, 0, np.clip((a @ flat + b[:, None]).float().numpy().reshape(block.shape), 0.0, 1.0))
    return out.array if isinstance(style, np.ndarray) else out


def rgb_moments_of(image: Store, strip: int = 256) -> Moments:
    """RGB moments of a whole store, strip by strip (fp64 sums per strip and across)."""
    moments = None
    for y0 in range(0, image.shape[1], strip):
        moments = merge_moments(moments, rgb_moments(read_rows(image, y0, min(image.shape[1], y0 + strip))))
    return moments


def keep_luminance_of(styled: Store, content: Store, strip: int = 256) -> None:
    """Replace ``styled``'s chroma with ``content``'s, strip by strip, in place."""
    for y0 in range(0, styled.shape[1], strip):
        y1 = min(styled.shape[1], y0 + strip)
        styled.write(y0, 0, keep_luminance(read_rows(styled, y0, y1), read_rows(content, y0, y1)))
