"""Reading a region mask: which style paints which part of the photo.

Two kinds of mask, told apart by their colours:

* a **label mask**: as many flat colours as there are styles, or one more. Labels are
  ordered by brightness; with as many labels as styles, the i-th label gets the i-th style;
  with one label more, the darkest label keeps the photo unstyled. With one style, a mask of
  one label is the unmasked run; fewer colours than styles (a style that would never be
  painted) is refused, unless the mask is grey, which makes it a soft mask.
* a **soft mask**: a grayscale image with gradients (more levels than labels could be). White
  is the last style, black the first (or, with a single style, the photo), grays blend them.

A mask with alpha (painted over a transparent layer) counts its fully transparent pixels as
black, whatever colour the editor left under them; partly transparent edges keep their colour.

Masks of any size are resized to the content (edges of a label mask become soft over the
resize, as a painter's would); a mask whose aspect ratio differs from the content's by more
than 1 % (beyond what rounding either to whole pixels explains) is refused, since it would
paint the wrong places.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from stylize.engine.regions import Regions
from stylize.engine.resample import resize_strips
from stylize.engine.store import StoreFactory

from .image_guard import Limits
from .image_rows import band_bytes
from .imageio import ImageError, displayed_rows, probe_image

BLOCK_ROWS = 256  # mask rows classified at a time


def _codes(rgb: np.ndarray) -> np.ndarray:
    """(3, ...) float32 in [0, 1] → (3, ...) uint32 8-bit codes, as the file stored them."""
    return np.round(rgb * 255).astype(np.uint32)


def _visible(rows: np.ndarray) -> np.ndarray:
    """(3 or 4, n, w) rows of a mask → (3, n, w): the colours, black where alpha is 0."""
    if rows.shape[0] == 3:
        return rows
    return np.where(rows[3:4] > 0, rows[:3], np.float32(0))


def _keys(codes: np.ndarray) -> np.ndarray:
    return (codes[0] << 16) | (codes[1] << 8) | codes[2]


@dataclass(frozen=True)
class MaskKind:
    """What a mask says, found in one pass over its rows: a label mask's colours (sorted keys)
    and the region each paints, or a soft mask (``labels`` None); and each region's style."""
    labels: np.ndarray | None
    rank: np.ndarray | None  # region of each label, by brightness
    styles: list

    def weights(self, rgb: np.ndarray) -> np.ndarray:
        """(3, n, w) float32 rows of the mask → (R, n, w) float32 weights of its regions."""
        if self.labels is None:
            white = rgb[0].astype(np.float32)
            return np.stack([1.0 - white, white])
        region = self.rank[np.searchsorted(self.labels, _keys(_codes(rgb)))]
        return (region[None] == np.arange(len(self.styles))[:, None, None]).astype(np.float32)


def _classify(labels: np.ndarray, grey: bool, n_styles: int, path) -> MaskKind:
    """A mask's kind from its distinct colours (sorted keys) and whether it is grey throughout."""
    if n_styles <= len(labels) <= n_styles + 1:  # fewer colours than styles would leave a style unused
        rgb = np.stack([(labels >> 16) & 255, (labels >> 8) & 255, labels & 255]).astype(np.float64)
        order = np.argsort(rgb.T @ np.array([0.299, 0.587, 0.114]), kind="stable")
        rank = np.empty_like(order)
        rank[order] = np.arange(len(order))
        photo = len(labels) == n_styles + 1
        return MaskKind(labels, rank, [None] + list(range(n_styles)) if photo else list(range(len(labels))))
    if not grey:
        raise ImageError(f"{path}: mask has {len(labels)} colours for {n_styles} style(s); use one flat colour per "
                         "style (plus one, the darkest, for the photo) or a grayscale soft mask")
    if n_styles > 2:
        raise ImageError(f"{path}: a soft (grayscale) mask blends two regions; with {n_styles} styles use a label "
                         "mask (one flat colour per style)")
    return MaskKind(None, None, [None, 0] if n_styles == 1 else [0, 1])


def mask_weights(mask: np.ndarray, n_styles: int, path: str | os.PathLike = "mask") -> tuple[np.ndarray, list]:
    """(R, h, w) float32 weights and each region's style index (None: the photo) from an
    (3, h, w) RGB mask in [0, 1] at its own size."""
    kind = _classify(*_colours([mask]), n_styles, path)
    return kind.weights(mask), kind.styles


@dataclass(frozen=True)
class Mask:
    """A checked mask file: its kind, read again by rows when it is sized to the content."""
    path: str | os.PathLike
    kind: MaskKind
    max_pixels: int
    max_bytes: int | None = None  # what a decode held whole may take (the memory budget left)

    @property
    def styles(self) -> list:
        return self.kind.styles


def same_aspect(a: tuple[int, int], b: tuple[int, int], tolerance: float = 0.01) -> bool:
    """Whether two (width, height) sizes show the same picture: aspect ratios within
    ``tolerance``, plus the most that rounding each side to whole pixels can move a ratio
    (a 160x120 mask fits a 4:3 photo stylized at 15x11)."""
    rounding = sum(0.5 / side for side in (*a, *b))
    return abs((a[0] / a[1]) / (b[0] / b[1]) - 1) <= tolerance + rounding


def read_mask(path: str | os.PathLike, size: tuple[int, int], n_styles: int, max_pixels: int,
              max_bytes: int | None = None) -> Mask:
    """Every check on the mask, in one pass over its rows at its own size (a 16K mask is never
    whole in RAM): its sizes from the header first, then its colours. It runs before any
    scratch file or model; :func:`mask_regions` then reads it again, sized to the content."""
    mw, mh = probe_image(path, max_pixels, role="mask", max_bytes=max_bytes)
    w, h = size
    if not same_aspect((mw, mh), size):
        raise ImageError(f"mask {path}: {mw}x{mh} does not have the content's aspect ratio ({w}x{h}); resize or crop it")
    with displayed_rows(path, max_pixels, role="mask", max_bytes=max_bytes) as reader:
        rows = reader.size[1]
        blocks = (_visible(reader.rows(y, min(rows, y + BLOCK_ROWS))) for y in range(0, rows, BLOCK_ROWS))
        labels, grey = _colours(blocks)
    return Mask(path, _classify(labels, grey, n_styles, f"mask {path}"), max_pixels, max_bytes)


def _colours(blocks) -> tuple[np.ndarray, bool]:
    """The distinct colours (sorted keys) of a mask's blocks of rows, and whether all are grey."""
    labels, grey = np.zeros(0, np.uint32), True
    for rgb in blocks:
        codes = _codes(rgb)
        grey = grey and np.array_equal(codes[0], codes[1]) and np.array_equal(codes[1], codes[2])
        labels = np.union1d(labels, np.unique(_keys(codes)))
    return labels, grey


def mask_regions(mask: Mask, size: tuple[int, int], stores: StoreFactory | None = None) -> Regions:
    """A mask from :func:`read_mask` resized to ``size`` (width, height) into a store, strip by
    strip: its rows are read again and turned into region weights as the resize asks for them,
    in bands of rows sized, as an image read's, to a quarter of the budget left."""
    w, h = size
    store = (stores or StoreFactory())(len(mask.styles), h, w)

    def write(y0: int, block: np.ndarray) -> None:
        np.clip(block, 0.0, 1.0, out=block)
        block /= np.maximum(block.sum(axis=0, keepdims=True), 1e-12)
        store.write(y0, 0, block)

    with displayed_rows(mask.path, mask.max_pixels, role="mask", max_bytes=mask.max_bytes) as reader:
        mw, mh = reader.size
        band = band_bytes(Limits.of(mask.max_pixels, mask.max_bytes, 0), reader.held)  # as an image read's
        resize_strips(lambda a, b: mask.kind.weights(_visible(reader.rows(a, b))), (mh, mw), (h, w), write,
                      kernel="linear", band_bytes=band)
    return Regions(store, mask.styles)


def load_regions(path: str | os.PathLike, size: tuple[int, int], n_styles: int, max_pixels: int,
                 stores: StoreFactory | None = None, max_bytes: int | None = None) -> Regions:
    """The mask at ``path`` as :class:`Regions` for a content of ``size`` (width, height)."""
    return mask_regions(read_mask(path, size, n_styles, max_pixels, max_bytes), size, stores)
