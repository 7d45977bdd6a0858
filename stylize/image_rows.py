"""Decoding by rows: images whose decoded pixels need not fit in RAM.

A 1-gigapixel panorama is 3 GB decoded as 8-bit and 12 GB as floats, before any resize. Where
the format allows it the file is decoded a band of rows at a time, top to bottom, and each band
goes straight through the resampler (:func:`stylize.engine.resample.resize_strips`) into its
destination, so a read holds a few hundred rows whatever the image's size.

- TIFF (tiled or stripped, chunky or planar, any compression tifffile reads): one row of tiles
  or one strip at a time, through tifffile's own segment decoder, and the samples are mapped to
  [0, 1] by the same function as a whole read (:func:`stylize.tiff_read.tiff_array_bands`).
- JPEG and PNG: libvips (pyvips), as a decoder only, in sequential mode (demand-driven,
  constant memory). Its decode of JPEG and 8-bit PNG is Pillow's bit for bit (both are
  libjpeg-turbo and libpng/zlib; ``tests/unit/test_image_rows.py`` checks it), and the resize
  stays ours, so an image gives the same pixels whether it was read whole or by rows. A 16-bit
  PNG is always read here, whatever its size: Pillow would keep only the high byte of its RGB.
  An EXIF orientation is applied to each resized strip (:mod:`stylize.image_orient`). A CMYK
  JPEG (print work) comes from libvips as CMYK, Adobe's inversion undone as Pillow undoes it,
  and is made RGB by Pillow's own formula, so it too gives a whole read's pixels.
- WebP (a still image): libvips too, though libwebp as libvips runs it decodes the frame whole:
  8.3-8.9 bytes a pixel at its peak against Pillow's 16 (whose animation decoder keeps two RGBA
  canvases), and Pillow's pixels bit for bit (the same libwebp decode, checked by the tests). An
  animation is Pillow's, which composes its first frame.
- Anything else (GIF, BMP, ...; all of these where libvips is absent): no decoder by rows
  exists, so Pillow decodes it whole, its cost checked first (:mod:`stylize.pil_decode`), and the
  decode is served a band of rows at a time: held once in Pillow's bytes (1 a pixel for a GIF's
  palette), never as floats (a 110-MP WebP to 1k peaked at 2.20 GiB when it was, 1.89 GiB
  served from Pillow's decode).
"""
from __future__ import annotations

from pathlib import Path
from typing import BinaryIO, Callable, Iterator

import numpy as np

from stylize.engine.resample import BAND_BYTES, ForwardRows, resize_strips

from .image_guard import ImageError, Limits, describe_error, is_tiff
from .image_orient import displayed_size, exif_orientation, file_orientation, oriented_writer
from .pil_decode import decode_bytes, decoded, full_scale, has_alpha, pil_bands, pil_errors, pil_header
from .tiff_read import TiffLayout, segment_grid, tiff_array_bands, tiff_errors, tiff_header

STREAM_ABOVE = 16_000_000  # source pixels past which a read into RAM decodes by rows (where it can)
MIN_BAND = 8 << 20  # the least band of rows a resize spans, however small the budget left
CHUNK_ROWS = 256  # rows libvips decodes per request
VIPS_LOADERS = ("jpegload", "pngload", "webpload")
# What libvips holds decoding a WebP whole, per pixel, at its peak: 8.3-8.9 measured from 21 to
# 52 MP, RGB or RGBA (Pillow: 16, :data:`stylize.pil_decode.DECODER_EXTRA`).
WEBP_BYTES = 9


class RowReader(ForwardRows):
    """Rows of one image as stored, top to bottom: ``rows(a, b)`` is (C, b - a, W) float32,
    C = 3, or 4 with alpha last, scaled to [0, 1] as a whole read scales them, one band held at
    a time. ``size`` is the stored (width, height); ``orientation`` the EXIF tag to display it;
    ``held``: bytes the reader keeps for its whole life (an image Pillow decoded whole)."""

    def __init__(self, size: tuple[int, int], has_alpha: bool, blocks: Iterator[np.ndarray], what: str,
                 orientation: int = 1, held: int = 0):
        super().__init__(blocks)
        self.size, self.has_alpha, self._what, self.orientation = size, has_alpha, what, orientation
        self.held = held

    @property
    def displayed_size(self) -> tuple[int, int]:
        return displayed_size(*self.size, self.orientation)

    def rows(self, a: int, b: int) -> np.ndarray:
        try:
            return super().rows(a, b)
        except EOFError as e:
            raise ImageError(f"{self._what}: truncated image ({e})") from None


def open_rows(f: BinaryIO, path: Path, limits: Limits, min_pixels: int = 0) -> RowReader | None:
    """A row reader for the open file ``f``, or None where it must be decoded whole or has
    fewer than ``min_pixels``. Sizes are checked on the header first, as for a whole read (less
    the bytes a whole decode takes)."""
    if is_tiff(f):
        return _tiff_rows(f, path, limits, min_pixels)
    return _vips_rows(f, path, limits, min_pixels) or _pil_rows(f, path, limits, min_pixels)


def rows_size(f: BinaryIO, path: Path, limits: Limits) -> tuple[int, int] | None:
    """The displayed size of a JPEG, PNG or WebP that libvips will decode (past
    ``STREAM_ABOVE``), its header checked as the read checks it; None where Pillow decodes the
    file whole, whose cost a probe must then check (:func:`stylize.pil_decode.pil_header`)."""
    reader = _vips_rows(f, path, limits, STREAM_ABOVE)
    if reader is None:
        return None
    reader.close()
    return reader.displayed_size


def band_bytes(limits: Limits, held: int = 0) -> int:
    """The input rows one strip of a resize may span: ``BAND_BYTES`` (wide images read fastest
    in tall bands), less where little of the memory budget is left beside what the reader
    ``held``. A read holds about four bands (the blocks as decoded, the band joined, the strip
    at work), so a quarter of that."""
    return int(min(BAND_BYTES, max(MIN_BAND, (limits.max_bytes - held) // 4)))


def resample_rows(reader: RowReader, size: tuple[int, int], write: Callable[[int, int, np.ndarray], None],
                  band: int = BAND_BYTES) -> None:
    """Resize the reader's image to ``size`` (width, height, as displayed) strip by strip,
    clamped to [0, 1] (Lanczos overshoots): ``write(y, x, block)`` gets (C, rows, cols) float32
    boxes of the displayed image (rows, or columns where the EXIF orientation turns it); the
    strips' input rows stay within ``band`` bytes (:func:`band_bytes`)."""
    w0, h0 = reader.size
    w1, h1 = displayed_size(*size, reader.orientation)  # the target as stored
    put = oriented_writer(write, h1, reader.orientation)

    def clamped(y0: int, block: np.ndarray) -> None:
        put(y0, np.clip(block, 0.0, 1.0, out=block))

    if (w0, h0) == (w1, h1):
        for y0 in range(0, h0, 64):
            clamped(y0, np.array(reader.rows(y0, min(h0, y0 + 64))))
    else:
        resize_strips(reader.rows, (h0, w0), (h1, w1), clamped, band_bytes=band)


def _to_channels(bands: list, peak: float, alpha) -> np.ndarray:
    """Bands of one block of rows → (3 or 4, n, W) float32, as a whole read maps them."""
    scale = np.float32(1.0 / peak)
    first = np.asarray(bands[0])
    out = np.empty((3 if alpha is None else 4, *first.shape), np.float32)
    for c, band in enumerate(bands[:3]):
        np.multiply(np.asarray(band), scale, out=out[c], dtype=np.float32)
    out[len(bands[:3]):3] = out[0]  # grey: the one band, three times
    if alpha is not None:
        np.multiply(np.asarray(alpha), scale, out=out[3], dtype=np.float32)
    return out


def _tiff_rows(f: BinaryIO, path: Path, limits: Limits, min_pixels: int) -> RowReader | None:
    import tifffile

    with tiff_errors(path):
        tf = tifffile.TiffFile(f)
    try:
        with tiff_errors(path):
            head = tiff_header(tf, path, limits, whole=False)
    except ImageError:
        tf.close()
        raise
    page = head.page
    if not tiff_by_rows(page, min_pixels):
        tf.close()
        return None
    probe = _tiff_channels(np.zeros((1, 1, page.samplesperpixel), page.dtype), head)
    return RowReader((page.imagewidth, page.imagelength), probe.shape[0] == 4, _tiff_blocks(tf, head, path),
                     str(path), head.orientation)


def tiff_by_rows(page, min_pixels: int) -> bool:
    """Whether a TIFF page (its header checked) is read by rows: a 2-D image of ``min_pixels`` or more."""
    return getattr(page, "imagedepth", 1) == 1 and page.imagewidth * page.imagelength >= min_pixels


def _tiff_channels(block: np.ndarray, head: TiffLayout) -> np.ndarray:
    bands, peak, alpha = tiff_array_bands(block, head)
    return _to_channels(bands, peak, alpha)


def _tiff_blocks(tf, head: TiffLayout, path: Path) -> Iterator[np.ndarray]:
    """Bands of rows, top to bottom, decoded and mapped to float channels; the file closed after."""
    try:
        with tiff_errors(path):
            for block in (_raw_blocks if _raw_rows(head) else _segment_blocks)(tf, head, path):
                yield _tiff_channels(block, head)
    finally:
        tf.close()


def _segment_blocks(tf, head: TiffLayout, path: Path) -> Iterator[np.ndarray]:
    """One row of tiles (or one strip) after another, through tifffile's segment decoder."""
    page, fh = head.page, tf.filehandle
    w, h, samples = page.imagewidth, page.imagelength, page.samplesperpixel
    tall, wide, across, down, planes = segment_grid(page, head.planar)
    for r in range(down):
        n = min(tall, h - r * tall)
        block = np.zeros((n, w, samples), page.dtype)
        for p in range(planes):
            for c in range(across):
                i = (p * down + r) * across + c
                data = None
                if page.databytecounts[i] and page.dataoffsets[i]:  # else sparse, as tifffile reads segments
                    fh.seek(page.dataoffsets[i])
                    data = fh.read(page.databytecounts[i])
                seg = page.decode(data, i, jpegtables=page.jpegtables)[0]
                if seg is None:
                    continue  # a sparse segment: zeros, as tifffile fills it
                seg = seg[0, :n, :min(wide, w - c * wide)]
                block[:, c * wide:c * wide + seg.shape[1], p if head.planar else slice(None)] = \
                    seg[..., 0] if head.planar else seg
        yield block


def _raw_rows(head: TiffLayout) -> bool:
    """Uncompressed chunky strips of whole bytes (often one strip for the whole image): rows
    are read straight from the file, not a strip at a time."""
    page = head.page
    return (not page.is_tiled and page.compression == 1 and not head.planar and page.dtype != bool
            and page.bitspersample in (8, 16, 32, 64) and len(page.dataoffsets) > 0)


def _raw_blocks(tf, head: TiffLayout, path: Path) -> Iterator[np.ndarray]:
    """``CHUNK_ROWS`` rows at a time, each a run of reads, one per strip it crosses."""
    page, fh = head.page, tf.filehandle
    w, h, samples = page.imagewidth, page.imagelength, page.samplesperpixel
    stored = page.dtype.newbyteorder(tf.byteorder)
    row_bytes = w * samples * stored.itemsize
    per_strip = segment_grid(page, False).tall
    for y0 in range(0, h, CHUNK_ROWS):
        y1 = min(h, y0 + CHUNK_ROWS)
        block = np.empty((y1 - y0, w, samples), page.dtype)
        y = y0
        while y < y1:
            strip, first = divmod(y, per_strip)
            run = min(y1, (strip + 1) * per_strip) - y
            fh.seek(int(page.dataoffsets[strip]) + first * row_bytes)
            data = fh.read(run * row_bytes)
            if len(data) != run * row_bytes:
                raise ImageError(f"{path}: truncated TIFF (strip {strip} ends early)")
            block[y - y0:y - y0 + run] = np.frombuffer(data, stored).reshape(run, w, samples)
            y += run
        yield block


def _streamed_by_vips(f: BinaryIO) -> bool:
    """Whether the file starts as a JPEG, PNG or WebP: only those are given to libvips, whose
    other loaders would parse the header of files it never streams (a corrupt AVIF's header
    reaches libheif, whose GLib warnings go straight to stderr)."""
    f.seek(0)
    head = f.read(12)
    f.seek(0)
    return head.startswith((b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n")) or (head[:4] == b"RIFF" and head[8:] == b"WEBP")


def _vips_rows(f: BinaryIO, path: Path, limits: Limits, min_pixels: int) -> RowReader | None:
    if not _streamed_by_vips(f):
        return None
    try:
        import pyvips
    except (ImportError, OSError):  # no libvips on this platform: read whole, as before
        return None
    pyvips.cache_set_max(0)  # a pipeline is used once; its cache would hold decoded rows
    try:  # its own descriptor: ours keeps its offset for a whole read if libvips declines
        im = pyvips.Image.new_from_source(pyvips.Source.new_from_file(str(path)), "", access="sequential",
                                          fail_on="error")  # a PNG chunk whose CRC is wrong too, as Pillow
        loader = str(im.get("vips-loader"))
    except pyvips.Error:
        return None  # not a format libvips streams: the whole read says what is wrong with it
    webp = loader.startswith("webpload")
    if webp and im.get_typeof("n-pages") and im.get("n-pages") > 1:
        return None  # an animation: Pillow composes its first frame, the whole read's pixels
    deep = loader.startswith("pngload") and im.format == "ushort" and im.interpretation in ("rgb16", "grey16")
    cmyk = loader.startswith("jpegload") and im.format == "uchar" and im.bands == 4 and im.interpretation == "cmyk"
    if (not loader.startswith(VIPS_LOADERS) or not (deep or im.format == "uchar") or im.bands not in (1, 2, 3, 4)
            or not (deep or cmyk or im.interpretation in ("srgb", "b-w"))):
        return None
    if not deep and im.width * im.height < min_pixels:  # a 16-bit PNG always: Pillow keeps 8 bits of its RGB
        return None
    orientation = file_orientation(f)  # as Pillow (the whole read) reads it: EXIF, XMP, a PNG's after IDAT
    if orientation is None:
        return None
    pixels = im.width * im.height
    held = WEBP_BYTES * pixels if webp else 0  # decoded whole, held until the reader is done
    limits.check_decode(path, im.width, im.height, held or pixels * im.bands * (2 if deep else 1),
                        f"{loader.removesuffix('_source')} {im.bands} x {'uint16' if deep else 'uint8'}", whole=webp,
                        instead=", or convert the file to PNG, JPEG or TIFF (decoded by rows)" if webp else "")
    alpha = im.bands in (2, 4) and not cmyk
    return RowReader((im.width, im.height), alpha, _vips_blocks(im, path, cmyk), str(path), orientation, held)


def _pil_rows(f: BinaryIO, path: Path, limits: Limits, min_pixels: int) -> RowReader | None:
    """Decoded whole by Pillow (:mod:`stylize.pil_decode`, its cost checked first), then served
    a band of rows at a time: the image is held once, in Pillow's bytes, never as floats."""
    f.seek(0)
    im = pil_header(f, path, limits)
    if im.size[0] * im.size[1] < min_pixels:
        return None
    with pil_errors(path):
        orientation = exif_orientation(im)
    im = decoded(im, path)
    return RowReader(im.size, has_alpha(im), _pil_blocks(im, full_scale(im), path), str(path), orientation,
                     held=decode_bytes(im))  # the pixels alone: decoded() dropped any decoder's extra


def _pil_blocks(im, peak: float, path: Path) -> Iterator[np.ndarray]:
    w, h = im.size
    try:
        with pil_errors(path):
            for y0 in range(0, h, CHUNK_ROWS):
                yield _to_channels(*pil_bands(im.crop((0, y0, w, min(h, y0 + CHUNK_ROWS))), peak))
    finally:
        im.close()


def cmyk_to_rgb(cmyk: np.ndarray) -> list[np.ndarray]:
    """(..., 4) uint8 CMYK → three uint8 RGB planes, Pillow's conversion exactly
    (``Image.convert("RGB")``: v = (255 - k) - c·(255 - k)/255, rounded as its integer maths)."""
    nk = 255 - cmyk[..., 3].astype(np.int32)
    out = []
    for c in range(3):
        t = cmyk[..., c].astype(np.int32) * nk + 128
        out.append(np.clip(nk - (((t >> 8) + t) >> 8), 0, 255).astype(np.uint8))
    return out


def _vips_blocks(im, path: Path, cmyk: bool) -> Iterator[np.ndarray]:
    import pyvips

    region = pyvips.Region.new(im)
    colour = 1 if im.bands <= 2 else 3
    dtype, peak = (np.uint16, 65535.0) if im.format == "ushort" else (np.uint8, 255.0)
    try:
        for y0 in range(0, im.height, CHUNK_ROWS):
            n = min(CHUNK_ROWS, im.height - y0)
            a = np.frombuffer(region.fetch(0, y0, im.width, n), dtype).reshape(n, im.width, im.bands)
            if cmyk:
                yield _to_channels(cmyk_to_rgb(a), peak, None)
                continue
            alpha = a[..., colour] if im.bands in (2, 4) else None
            yield _to_channels([a[..., c] for c in range(colour)], peak, alpha)
    except pyvips.Error as e:
        raise ImageError(f"{path}: truncated or corrupt image ({describe_error(e)})") from None
