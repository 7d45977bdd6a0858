"""TIFF pages into bands: the layout checked on the header, samples of any type mapped to [0, 1].

Shared by the whole-image reader (:mod:`stylize.imageio`) and the row reader
(:mod:`stylize.image_rows`): the mapping of a sample to a value is one function applied to the
whole image or to a band of its rows, so both give the same pixels.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, NamedTuple

import numpy as np

from .image_guard import ImageError, Limits, decode_errors
from .image_orient import valid_orientation

Bands = tuple[list, float, object]  # (colour bands: 1 or 3, full scale, alpha band or None)


def tiff_errors(path: Path):
    """What tifffile or a codec raises on hostile bytes, as one line naming the file."""
    return decode_errors(path, "TIFF")


@dataclass
class TiffLayout:
    page: object  # tifffile.TiffPage: the first page, the one we read
    shape: tuple
    planar: bool
    photometric: int
    colormap: np.ndarray | None  # (3, 2**bits) for a palette image
    orientation: int = 1  # the Orientation tag (274), as EXIF's: applied after the resize
    ycbcr: tuple | None = None  # uncompressed YCbCr: (luma coefficients, reference black/white or None)


LUMA_601 = (0.299, 0.587, 0.114)  # TIFF's default YCbCrCoefficients


def _rationals(page, code: int, n: int, path: Path) -> list[float] | None:
    """A tag of ``n`` rationals as floats (tifffile gives them flat, numerator and denominator),
    None when the tag is absent; junk in a hostile file is a corrupt TIFF."""
    tag = page.tags.get(code)
    if tag is None:
        return None
    try:
        flat = np.asarray(tag.value, np.float64).ravel()
        values = flat[0::2] / flat[1::2] if flat.size == 2 * n else flat
    except (TypeError, ValueError, ZeroDivisionError):
        values = np.array([])
    if values.size != n or not np.isfinite(values).all():
        raise ImageError(f"{path}: corrupt TIFF (tag {code}: {n} numbers expected)")
    return [float(v) for v in values]


# The compressions tifffile decodes a chroma-subsampled page from (JPEG kinds), whatever its
# photometric: it refuses the others, so the reader by rows must too.
SUBSAMPLED_CODECS = (6, 7, 33007, 34892)


def _ycbcr(page, path: Path) -> tuple | None:
    """What converting an uncompressed YCbCr page to RGB needs (tifffile returns its samples
    as stored; a JPEG-compressed one is decoded to RGB by the codec and needs nothing)."""
    if page.is_subsampled and (page.compression not in SUBSAMPLED_CODECS or page.planarconfig == 2):
        raise ImageError(f"{path}: unsupported TIFF (chroma subsampling {page.subsampling}, not JPEG-compressed)")
    if page.photometric != 6 or page.compression in (6, 7):
        return None
    if page.samplesperpixel < 3:
        raise ImageError(f"{path}: unsupported TIFF (YCbCr with {page.samplesperpixel} samples)")
    luma, ref = _rationals(page, 529, 3, path) or LUMA_601, _rationals(page, 532, 6, path)
    if luma[1] == 0 or (ref is not None and (ref[1] == ref[0] or ref[3] == ref[2] or ref[5] == ref[4])):
        raise ImageError(f"{path}: corrupt TIFF (YCbCr coefficients {luma}, reference {ref})")
    return tuple(luma), ref


def _orientation(page) -> int:
    value = getattr(page.tags.get(274), "value", 1)  # an int (tifffile's enum), or junk in a hostile file
    return valid_orientation(int(value) if isinstance(value, int) else 1)


MAX_TILE_SIDE = 1 << 16  # TIFF tiles are a few hundred pixels; a side past this is a corrupt tag


def tiff_header(tf, path: Path, limits: Limits, whole: bool = True) -> TiffLayout:
    """The first page's layout, sample type and sizes, checked before decoding (``whole``:
    decoded at once, so its bytes count against the limit)."""
    page = tf.pages[0]
    w, h, shape, dtype = page.imagewidth, page.imagelength, tuple(page.shape), page.dtype
    if not all(isinstance(v, (int, np.integer)) and v > 0 for v in (w, h)):
        raise ImageError(f"{path}: corrupt TIFF (image size {w!r} x {h!r})")
    counts = (page.samplesperpixel, page.bitspersample, page.rowsperstrip or 0, page.tilewidth, page.tilelength)
    if not all(isinstance(v, (int, np.integer)) for v in counts) or not all(
            np.asarray(a).dtype.kind in "iu" or not len(a) for a in (page.dataoffsets, page.databytecounts)):
        raise ImageError(f"{path}: corrupt TIFF (a layout tag that must be a whole number is not)")
    if page.is_tiled and not all(0 < v <= MAX_TILE_SIDE for v in (page.tilewidth, page.tilelength)):
        raise ImageError(f"{path}: corrupt TIFF (tiles of {page.tilewidth} x {page.tilelength})")
    ycbcr = _ycbcr(page, path)
    planar, samples = page.planarconfig == 2, page.samplesperpixel
    if dtype is None or dtype.kind not in "buif":
        raise ImageError(f"{path}: unsupported TIFF sample format ({page.sampleformat}, {page.bitspersample} bits)")
    if shape != ((h, w) if samples == 1 else (samples, h, w) if planar else (h, w, samples)) or not 1 <= samples <= 5:
        raise ImageError(f"{path}: unsupported TIFF layout {shape}")
    colormap = page.colormap if page.photometric == 3 else None
    if page.photometric == 3 and not (isinstance(colormap, np.ndarray) and colormap.ndim == 2
                                      and colormap.shape[0] == 3 and colormap.shape[1] > 0):
        raise ImageError(f"{path}: corrupt TIFF palette")
    limits.check_decode(path, w, h, int(np.prod(shape)) * dtype.itemsize, f"{samples} x {dtype}", whole)
    grid = segment_grid(page, planar)
    found = min(len(page.dataoffsets), len(page.databytecounts))
    if found < grid.count:  # tifffile would fill the rest black; by rows, there is nothing to read
        raise ImageError(f"{path}: truncated or corrupt TIFF ({found} of its {grid.count} "
                         f"{'tiles' if page.is_tiled else 'strips'} are in the file)")
    if page.compression == 1 and sum(int(n) for n in page.databytecounts) < _stored_bytes(page, grid):
        raise ImageError(f"{path}: truncated or corrupt TIFF (its strips hold fewer bytes than its pixels)")
    ends = np.asarray(page.dataoffsets, np.uint64) + np.asarray(page.databytecounts, np.uint64)
    if ends.size and int(ends.max()) > limits.file_bytes:  # tifffile would allocate what a strip claims
        raise ImageError(f"{path}: truncated or corrupt TIFF (image data runs past the end of the file)")
    photometric = 2 if page.photometric == 6 and ycbcr is None else int(page.photometric)  # JPEG decodes to RGB
    return TiffLayout(page, shape, planar, photometric, colormap, _orientation(page), ycbcr)


class SegmentGrid(NamedTuple):
    """How a page's pixels are cut: segments of ``tall`` x ``wide`` pixels, ``across`` x ``down``
    of them per plane, ``planes`` planes (the samples, when planar; else 1)."""
    tall: int
    wide: int
    across: int
    down: int
    planes: int

    @property
    def count(self) -> int:
        return self.across * self.down * self.planes


def segment_grid(page, planar: bool) -> SegmentGrid:
    """The tiles, or strips (one across), of a page whose sizes ``tiff_header`` checked."""
    w, h = page.imagewidth, page.imagelength
    tall = page.tilelength if page.is_tiled else min(page.rowsperstrip or h, h)
    wide = page.tilewidth if page.is_tiled else w
    return SegmentGrid(tall, wide, -(-w // wide), -(-h // tall), page.samplesperpixel if planar else 1)


def _stored_bytes(page, grid: SegmentGrid) -> int:
    """Bytes an uncompressed page's pixels take (rows padded to whole bytes; tiles whole, the
    last strip only as tall as the rows left)."""
    per_pixel = 1 if grid.planes > 1 else page.samplesperpixel
    rows = grid.tall * grid.down if page.is_tiled else page.imagelength
    return -(-grid.wide * per_pixel * page.bitspersample // 8) * rows * grid.across * grid.planes


def tiff_bands(f: BinaryIO, path: Path, limits: Limits) -> tuple[Bands, int]:
    """Any TIFF tifffile reads (BigTIFF, 16-bit, signed and float samples, LZW/deflate/JPEG/
    CCITT through imagecodecs), first page: its bands as stored, and its orientation."""
    import tifffile

    with tiff_errors(path), tifffile.TiffFile(f) as tf:
        head = tiff_header(tf, path, limits)
        a = head.page.asarray()
    if a.shape != head.shape:
        raise ImageError(f"{path}: truncated or corrupt TIFF (decoded {a.shape}, header says {head.shape})")
    a = a[..., None] if a.ndim == 2 else np.moveaxis(a, 0, -1) if head.planar else a
    return tiff_array_bands(a, head), head.orientation


def tiff_array_bands(a: np.ndarray, head: TiffLayout) -> Bands:
    """(H, W, S) samples → bands. Signed integers map their whole range onto [0, 1] (so
    int16 -32768 is black, not clipped to it); min-is-white is inverted; a palette applied;
    YCbCr made RGB."""
    photometric, colormap = head.photometric, head.colormap
    bilevel = a.dtype == bool
    a = a.view(np.uint8) if bilevel else a
    if photometric == 3 and colormap is not None and a.shape[2] == 1:  # palette
        a = np.take(colormap.T, a[..., 0], axis=0, mode="clip")
    offset, peak = 0.0, 1.0
    if a.dtype.kind in "ui" and not bilevel:
        info = np.iinfo(a.dtype)
        offset, peak = float(info.min), float(info.max) - float(info.min)
    if photometric == 0 and a.dtype.kind in "ui":  # min-is-white
        a = np.uint8(peak) - a if a.dtype == np.uint8 else peak + offset - a.astype(np.float32)
    bands = [a[..., c] if a.dtype == np.uint8 else
             np.clip(np.nan_to_num(a[..., c].astype(np.float32) - np.float32(offset)), 0, peak)
             for c in range(a.shape[2])]
    if head.ycbcr is not None:
        bands = _ycbcr_to_rgb(bands, peak, *head.ycbcr) + bands[3:]
    if photometric == 5 and len(bands) >= 4:  # CMYK: ink coverage → light, as PIL converts it
        ink = [b.astype(np.float32) / peak for b in bands[:4]]
        bands = [(1 - c) * (1 - ink[3]) * peak for c in ink[:3]] + bands[4:]
    alpha = bands.pop() if len(bands) in (2, 4) else None
    return bands[:3], peak, alpha


def _ycbcr_to_rgb(bands: list, peak: float, luma: tuple, ref: list | None) -> list:
    """TIFF 6.0's YCbCr to RGB (section 21), reference black/white defaulting as libtiff's
    (chroma centred on half the range); float32 bands in [0, peak]."""
    half = (peak + 1) / 2
    rb_y, rw_y, rb_cb, rw_cb, rb_cr, rw_cr = ref or (0.0, peak, half, peak, half, peak)
    y, cb, cr = (np.asarray(b, np.float32) for b in bands[:3])
    y = (y - rb_y) * np.float32(peak / (rw_y - rb_y))
    cb = (cb - rb_cb) * np.float32((half - 1) / (rw_cb - rb_cb))
    cr = (cr - rb_cr) * np.float32((half - 1) / (rw_cr - rb_cr))
    lr, lg, lb = luma
    r = y + cr * np.float32(2 - 2 * lr)
    b = y + cb * np.float32(2 - 2 * lb)
    g = (y - np.float32(lb) * b - np.float32(lr) * r) / np.float32(lg)
    return [np.clip(c, 0, peak) for c in (r, g, b)]
