"""Pillow as the decoder of last resort: every format neither tifffile nor libvips reads (GIF,
BMP, ...; a WebP animation, or a WebP under ``STREAM_ABOVE``), and JPEG, PNG and WebP where
libvips is absent.

Pillow decodes these whole, so what a decode costs is declared before it starts, per format as
measured, not guessed: most hold the image in 4 bytes a pixel (1 for palette and grey), but
Pillow's WebP decoder is libwebp's animation decoder, whose two RGBA canvases and the frame's
bytes sit beside the image until the file object goes (a 110-MP WebP's decode peaked 1.64 GiB
over the interpreter's: 16 bytes a pixel). :func:`decoded` lets go of that extra once the pixels
are in.

The mapping to bands (:func:`pil_bands`) is one function for a whole image and for a band of its
rows, so an image gives the same pixels however it was read.
"""
from __future__ import annotations

from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageMode, UnidentifiedImageError

from .image_guard import DECODE_ERRORS, ImageError, Limits, decode_errors, describe_error
from .tiff_read import Bands

# Bytes a pixel a decoder holds beside the image at its peak, by Pillow format name.
DECODER_EXTRA = {"WEBP": 12}
BY_ROWS = ("JPEG", "PNG", "TIFF")  # formats that have a decoder by rows (libvips, tifffile)


def decode_bytes(im: Image.Image) -> int:
    """What decoding ``im`` whole takes at its peak: Pillow keeps multi-band pixels in 4 bytes."""
    mode = ImageMode.getmode(im.mode)
    per_pixel = 4 if len(mode.bands) > 1 else np.dtype(mode.typestr).itemsize
    return im.size[0] * im.size[1] * (per_pixel + DECODER_EXTRA.get(im.format or "", 0))


def pil_header(f: BinaryIO, path: Path, limits: Limits) -> Image.Image:
    """The opened, not yet decoded image, its sizes and decode cost checked."""
    try:
        im = Image.open(f)
    except UnidentifiedImageError:
        raise ImageError(f"{path}: not an image (unrecognised or corrupt file)") from None
    except DECODE_ERRORS as e:
        raise ImageError(f"{path}: unsupported or corrupt image ({describe_error(e)})") from None
    instead = "" if im.format in BY_ROWS else ", or convert the file to PNG, JPEG or TIFF (decoded by rows)"
    limits.check_decode(path, *im.size, decode_bytes(im), f"{im.format} {im.mode}", instead=instead)
    return im


def pil_errors(path: Path):
    """What Pillow raises on a damaged file while decoding or reading its EXIF, as one line."""
    return decode_errors(path, "image")


def decoded(im: Image.Image, path: Path) -> Image.Image:
    """``im`` decoded; where its decoder holds more than the pixels (:data:`DECODER_EXTRA`), a
    copy free of it (the caller drops ``im``)."""
    with pil_errors(path):
        im.load()
    return im.copy() if im.format in DECODER_EXTRA else im


def full_scale(im: Image.Image) -> float:
    """The value of full scale: 32-bit integer images are 16-bit when any sample is over 255,
    decided on the whole image (a band of rows must not decide it for itself)."""
    if im.mode.startswith("I;16"):
        return 65535.0
    if im.mode == "I":
        return 65535.0 if (im.getextrema()[1] or 0) > 255 else 255.0
    return 1.0 if im.mode == "F" else 255.0


def has_alpha(im: Image.Image) -> bool:
    return im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (im.mode == "P" and "transparency" in im.info)


def pil_bands(im: Image.Image, peak: float) -> Bands:
    """Colour bands (one for grey), their full scale ``peak`` (:func:`full_scale` of the whole
    image) and the alpha band, for ``im`` or a crop of it."""
    alpha = None
    if has_alpha(im):
        im = im.convert("RGBA")
        alpha = im.getchannel("A")
    if im.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        return [np.clip(np.asarray(im), 0, peak).astype(np.float32)], peak, alpha
    if im.mode == "F":
        return [np.clip(np.nan_to_num(np.asarray(im, dtype=np.float32)), 0, 1)], 1.0, alpha
    if im.mode in ("L", "1"):
        return [im.convert("L")], 255.0, alpha
    return list(im.convert("RGB").split()), 255.0, alpha
