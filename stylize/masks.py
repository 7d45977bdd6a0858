"""Reading a region mask: which style paints which part of the photo.

Two kinds of mask, told apart by their colours:

* a **label mask**: a few flat colours (at most one more than there are styles). Labels are
  ordered by brightness; with as many labels as styles, the i-th label gets the i-th style;
  with one label more, the darkest label keeps the photo unstyled. A mask of one label is the
  unmasked run.
* a **soft mask**: a grayscale image with gradients (more levels than labels could be). White
  is the last style, black the first (or, with a single style, the photo), grays blend them.

Masks of any size are resized to the content (edges of a label mask become soft over the
resize, as a painter's would); a mask whose aspect ratio differs from the content's by more
than 1 % is refused, since it would paint the wrong places.
"""
from __future__ import annotations

import os

import numpy as np

from stylize.engine.regions import Regions
from stylize.engine.resample import resize_strips
from stylize.engine.store import StoreFactory

from .imageio import ImageError, read_image


def mask_weights(mask: np.ndarray, n_styles: int, path: str | os.PathLike = "mask") -> tuple[np.ndarray, list]:
    """(R, h, w) float32 weights and each region's style index (None: the photo) from an
    (3, h, w) RGB mask in [0, 1] at its own size."""
    c, h, w = mask.shape
    codes = np.round(mask * 255).astype(np.uint32)
    key = (codes[0] << 16) | (codes[1] << 8) | codes[2]
    labels, inverse = np.unique(key.ravel(), return_inverse=True)
    if len(labels) <= n_styles + 1:
        rgb = np.stack([(labels >> 16) & 255, (labels >> 8) & 255, labels & 255]).astype(np.float64)
        order = np.argsort(rgb.T @ np.array([0.299, 0.587, 0.114]), kind="stable")
        rank = np.empty_like(order)
        rank[order] = np.arange(len(order))
        one_hot = np.zeros((len(labels), h * w), np.float32)
        one_hot[rank[inverse], np.arange(h * w)] = 1.0
        photo = len(labels) == n_styles + 1
        styles = [None] + list(range(n_styles)) if photo else list(range(len(labels)))
        return one_hot.reshape(len(labels), h, w), styles
    if not (np.array_equal(codes[0], codes[1]) and np.array_equal(codes[1], codes[2])):
        raise ImageError(f"{path}: mask has {len(labels)} colours for {n_styles} style(s); use one flat colour per "
                         "style (plus one, the darkest, for the photo) or a grayscale soft mask")
    if n_styles > 2:
        raise ImageError(f"{path}: a soft (grayscale) mask blends two regions; with {n_styles} styles use a label "
                         "mask (one flat colour per style)")
    white = mask[0].astype(np.float32)
    styles = [None, 0] if n_styles == 1 else [0, 1]
    return np.stack([1.0 - white, white]), styles


def read_mask(path: str | os.PathLike, size: tuple[int, int], n_styles: int,
              max_pixels: int) -> tuple[np.ndarray, list]:
    """Every check on the mask, at its own size: (weights (R, h, w), each region's style).
    Cheap, so it runs before any scratch file or model; :func:`mask_regions` then sizes it."""
    mask = read_image(path, None, max_pixels, role="mask").rgb
    mh, mw = mask.shape[1:]
    w, h = size
    if abs((mw / mh) / (w / h) - 1) > 0.01:
        raise ImageError(f"mask {path}: {mw}x{mh} does not have the content's aspect ratio ({w}x{h}); resize or crop it")
    return mask_weights(mask, n_styles, f"mask {path}")


def mask_regions(mask: tuple[np.ndarray, list], size: tuple[int, int], stores: StoreFactory | None = None) -> Regions:
    """A mask from :func:`read_mask` resized to ``size`` (width, height) into a store, strip by strip."""
    weights, styles = mask
    w, h = size
    store = (stores or StoreFactory())(len(styles), h, w)

    def write(y0: int, block: np.ndarray) -> None:
        np.clip(block, 0.0, 1.0, out=block)
        block /= np.maximum(block.sum(axis=0, keepdims=True), 1e-12)
        store.write(y0, 0, block)

    resize_strips(lambda a, b: weights[:, a:b], weights.shape[1:], (h, w), write, kernel="linear")
    return Regions(store, styles)


def load_regions(path: str | os.PathLike, size: tuple[int, int], n_styles: int, max_pixels: int,
                 stores: StoreFactory | None = None) -> Regions:
    """The mask at ``path`` as :class:`Regions` for a content of ``size`` (width, height)."""
    return mask_regions(read_mask(path, size, n_styles, max_pixels), size, stores)
