"""Images handed to the Python API as objects, made into what the engine takes.

The engine works on (3, H, W) float32 in [0, 1]. Callers hold images in other shapes: NumPy
arrays (H, W, 3) uint8 from Pillow or imageio, grey (H, W), torch tensors, PIL images, file
paths. :func:`as_rgb` accepts each of these, resizes to the settings' long side as a file
read would (the same Lanczos resampler, clamped), and refuses what it cannot read without
guessing (a float image outside [0, 1], an alpha channel, NaN) with one line naming the
input: an image given as 0–255 floats would otherwise be clipped into a white picture
without a word. An alpha channel that is opaque everywhere carries nothing and is dropped.
"""
from __future__ import annotations

import os

import numpy as np

from stylize.engine.resample import resize

from .image_guard import DECODE_ERRORS, ImageError, Limits, quiet_decoders
from .image_orient import exif_orientation, orient
from .imageio import read_image, target_size

CHANNELS = (1, 3)  # grey or RGB
WITH_ALPHA = (2, 4)  # grey or RGB and alpha: taken when the alpha is opaque throughout, refused otherwise
SCALES = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}


def _channels_first(a: np.ndarray, role: str) -> np.ndarray:
    """(H, W), (C, H, W) or (H, W, C) with C in 1, 3 (or 2, 4 with alpha) → (C, H, W), a view.
    An array that could be either, (3, H, 3), is taken as channels-first, the layout the engine
    documents."""
    if a.ndim == 2:
        return a[None]
    for channels in (CHANNELS, WITH_ALPHA):
        if a.ndim == 3 and a.shape[0] in channels:
            return a
        if a.ndim == 3 and a.shape[-1] in channels:
            return np.moveaxis(a, -1, 0)
    raise ImageError(f"{role}: a {a.shape} array is not an image: use (3, H, W), (H, W, 3) or (H, W)")


def _without_opaque_alpha(chw: np.ndarray, role: str) -> np.ndarray:
    """(2 or 4, H, W) → (1 or 3, H, W) when the alpha is at full scale everywhere (a PNG saved
    as RGBA that has no transparency); one with transparent pixels is refused, never flattened
    onto a colour nobody chose."""
    full = SCALES.get(chw.dtype, 1.0 if chw.dtype.kind == "f" else None)
    if full is None or not (chw[-1] == full).all():
        raise ImageError(f"{role}: the image has an alpha channel with transparent pixels; pass RGB "
                         "(stylize_file passes alpha through)")
    return chw[:-1]


def _to_unit(a: np.ndarray, role: str) -> np.ndarray:
    """uint8 and uint16 scaled to [0, 1]; floats checked to be finite and in [0, 1]."""
    if a.dtype in SCALES:
        return np.multiply(a, np.float32(1.0 / SCALES[a.dtype]), dtype=np.float32)
    if a.dtype.kind != "f":
        raise ImageError(f"{role}: {a.dtype} pixels have no known full scale: pass uint8, uint16 or floats in [0, 1]")
    a = a.astype(np.float32, copy=False)
    if not np.isfinite(a).all():
        raise ImageError(f"{role}: the image has NaN or infinite pixels")
    lo, hi = float(a.min()), float(a.max())
    if lo < 0.0 or hi > 1.0:
        hint = ": divide by 255" if hi > 1.0 and hi <= 255.0 and lo >= 0.0 else ""
        raise ImageError(f"{role}: float pixels must be in [0, 1], got [{lo:g}, {hi:g}]{hint}")
    return a


PIL_AS_IS = ("RGB", "L", "I;16", "I;16L", "I;16B", "I", "F", "RGBA", "LA")  # values NumPy reads with their scale


def _pil_pixels(image) -> np.ndarray:
    """(C, H, W) or (H, W): a PIL image's own values where NumPy reads them as they are, so
    that 16-bit, float and alpha images meet the same checks as arrays (``convert("RGB")``
    would clip a 16-bit image to white, an ``F`` one in [0, 1] to black, and drop transparency
    without a word); palette, CMYK, YCbCr and bilevel images are made RGB."""
    if image.mode not in PIL_AS_IS:
        image = image.convert("RGBA" if "A" in image.getbands() or "transparency" in image.info else "RGB")
    a = np.asarray(image)
    return np.moveaxis(a, -1, 0) if a.ndim == 3 else a  # (H, W, C) → (C, H, W): never a guess


def as_rgb(image, role: str, long_side: int | None = None, max_pixels: int | None = None,
           max_bytes: int | None = None) -> np.ndarray:
    """Any image object → (3, H', W') float32 in [0, 1], its long side ``long_side`` (None keeps it).

    ``image``: a file path (read as ``stylize_file`` reads it, EXIF orientation applied); a PIL
    image (RGB, grey, 16-bit or float as its values say; other modes made RGB; turned by its
    EXIF orientation as its file would be, so ``Image.open(path)`` paints as ``path`` does); a torch tensor
    (any device) or NumPy array, (3, H, W), (H, W, 3) or (H, W), uint8, uint16 or float in [0, 1].
    An array already (3, H, W) float32 at its size is returned as is, not copied. ``role``
    ("content", "style") names it in errors.
    """
    if isinstance(image, (str, os.PathLike)):
        kwargs = {} if max_pixels is None else {"max_pixels": max_pixels}
        return read_image(image, long_side, role=role, max_bytes=max_bytes, **kwargs).rgb
    if hasattr(image, "convert") and hasattr(image, "mode"):  # a PIL image
        try:
            with quiet_decoders():  # Pillow warns on a corrupt EXIF block and reads it as upright
                orientation = exif_orientation(image)
        except DECODE_ERRORS as e:
            raise ImageError(f"{role}: unreadable EXIF block ({type(e).__name__}: {e})") from None
        image = orient(_pil_pixels(image), orientation)
    if hasattr(image, "detach"):  # a torch tensor, wherever it lives
        image = image.detach().cpu()
        image = (image.float() if str(image.dtype) == "torch.bfloat16" else image).numpy()  # NumPy has no bf16
    try:
        a = np.asarray(image)
    except (TypeError, ValueError, RuntimeError) as e:
        raise ImageError(f"{role}: not an image ({type(image).__name__}: {e})") from None
    if a.dtype == object or a.dtype.kind not in "uif":
        raise ImageError(f"{role}: not an image ({type(image).__name__} of {a.dtype})")
    chw = _channels_first(a, role)
    if chw.shape[0] in WITH_ALPHA:
        chw = _without_opaque_alpha(chw, role)
    _, h, w = chw.shape
    limits = Limits(max_pixels or np.iinfo(np.int64).max, 0, 0, "--max-pixels")  # only its pixel checks
    limits.check_pixels(role, w, h)
    size = target_size(w, h, long_side)
    limits.check_pixels(role, *size, "requested output")
    rgb = _to_unit(chw, role)
    if rgb.shape[0] == 1:
        rgb = np.repeat(rgb, 3, axis=0)
    if size != (w, h):
        rgb = np.clip(resize(rgb, size[::-1]), 0.0, 1.0)
    return np.ascontiguousarray(rgb)
