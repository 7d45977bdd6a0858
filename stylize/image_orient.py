"""EXIF orientation, applied after the resize: the same pixels whole or by rows, in bounded memory.

A phone photo is stored as the sensor saw it, with an EXIF tag (1-8) saying how to turn it
for display. Turning the decoded image first needs it whole in RAM (a 200-MP photo is 600 MB
as 8 bits, several GB on the way to floats). Resampling is separable and each axis has its own
weights, so the image is resized in its stored orientation, to the turned target's sides, and
each strip of the result is turned and written where it lands in the displayed image: rows of
the stored image become rows (tags 1-4) or columns (5-8). The whole read does the same to the
whole result, so a file gives the same pixels read whole or by rows.

The tag is read by Pillow in both paths (libvips clips an invalid tag to 1-8 where Pillow
ignores it, and misses XMP or a PNG's EXIF after the pixels), a PNG's without decoding it
(:func:`png_orientation`), and means what :func:`PIL.ImageOps.exif_transpose` does with it;
a TIFF's Orientation tag (274) likewise, read by tifffile.
"""
from __future__ import annotations

import io
import struct
import zlib
from typing import BinaryIO, Callable

import numpy as np
from PIL import Image

from .image_guard import DECODE_ERRORS

ORIENTATION_TAG = 0x0112
TRANSPOSING = (5, 6, 7, 8)  # width and height swap


def valid_orientation(tag) -> int:
    """An orientation tag's value, 1 (as stored) when it is not an integer 1-8 (as Pillow does)."""
    return tag if isinstance(tag, int) and 1 <= tag <= 8 else 1


def exif_orientation(im: Image.Image) -> int:
    """The EXIF orientation of an opened image, 1 (as stored) when absent or not 1-8. Raises
    what Pillow raises on a corrupt EXIF block (the caller's file error)."""
    return valid_orientation(im.getexif().get(ORIENTATION_TAG, 1))


def file_orientation(f: BinaryIO, im: Image.Image | None = None) -> int | None:
    """:func:`exif_orientation` of the open file ``f`` (left at offset 0; ``im``: Pillow's
    header of it, when the caller has opened one), read without decoding its pixels, or None
    where Pillow cannot read its header or EXIF (the whole read then says what is wrong)."""
    try:
        f.seek(0)
        if f.read(len(PNG_SIGNATURE)) == PNG_SIGNATURE:
            return png_orientation(f)
        if im is not None:
            return exif_orientation(im)
        f.seek(0)
        with Image.open(f) as opened:
            return exif_orientation(opened)
    except DECODE_ERRORS:
        return None
    finally:
        f.seek(0)


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_META = (b"eXIf", b"tEXt", b"zTXt", b"iTXt")


def png_chunk(kind: bytes, data: bytes) -> bytes:
    """One PNG chunk: length, type, data, CRC."""
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_orientation(f: BinaryIO) -> int:
    """A PNG's orientation as Pillow reads it, without decoding it.

    Pillow finds a PNG's EXIF only after decoding the whole image when there is no eXIf chunk
    before the pixels (it may come after them), which for a 32K PNG is gigabytes before any
    check. Here the chunks are walked by their headers, the metadata chunks (eXIf, text: EXIF
    as a raw profile, XMP) wherever they are copied into a 1-pixel PNG, and Pillow reads that:
    the same answer by the same code. A file cut short gives what was found before the cut
    (its decode then fails with the reason).
    """
    f.seek(len(PNG_SIGNATURE))
    meta = []
    while True:
        head = f.read(8)
        if len(head) < 8:
            break
        length, kind = struct.unpack(">I4s", head)
        if kind == b"IEND":
            break
        if kind in _PNG_META:
            body = f.read(length + 4)
            if len(body) < length + 4:
                break
            meta.append(head + body)
        else:
            f.seek(length + 4, 1)
    tiny = (PNG_SIGNATURE + png_chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)) + b"".join(meta)
            + png_chunk(b"IDAT", zlib.compress(b"\0\0")) + png_chunk(b"IEND", b""))
    with Image.open(io.BytesIO(tiny)) as im:
        return exif_orientation(im)


def displayed_size(width: int, height: int, orientation: int) -> tuple[int, int]:
    """(width, height) as displayed, from the stored sides."""
    return (height, width) if orientation in TRANSPOSING else (width, height)


def orient(a: np.ndarray, orientation: int) -> np.ndarray:
    """(..., H, W) as stored → as displayed (a view): what ``exif_transpose`` does to pixels."""
    if orientation == 2:
        return a[..., ::-1]
    if orientation == 3:
        return a[..., ::-1, ::-1]
    if orientation == 4:
        return a[..., ::-1, :]
    if orientation == 5:
        return a.swapaxes(-1, -2)
    if orientation == 6:
        return np.rot90(a, -1, axes=(-2, -1))
    if orientation == 7:
        return a.swapaxes(-1, -2)[..., ::-1, ::-1]
    if orientation == 8:
        return np.rot90(a, 1, axes=(-2, -1))
    return a


def oriented_writer(write: Callable[[int, int, np.ndarray], None], stored_height: int,
                    orientation: int) -> Callable[[int, np.ndarray], None]:
    """``write(y, x, block)`` into the displayed image, as ``write(y0, strip)`` of rows of the
    stored one (of ``stored_height`` rows): each strip is turned and placed where it lands."""
    def turned(y0: int, block: np.ndarray) -> None:
        far = stored_height - y0 - block.shape[-2]  # where the strip lands counted from the other edge
        block = orient(block, orientation)
        if orientation in TRANSPOSING:
            write(0, y0 if orientation in (5, 8) else far, block)
        else:
            write(y0 if orientation in (1, 2) else far, 0, block)
    return turned
