"""Reading any reasonable image into (3, H, W) float32, and writing results atomically.

Every user mistake becomes an :class:`ImageError` with one line naming the file; the CLI
prints it and exits non-zero. Outputs go to a temporary file in the destination folder and
are renamed into place only when complete, so an interrupted run never leaves a partial
image (and a batch can treat a present file as a finished one).
"""
from __future__ import annotations

import os
import tempfile
import threading
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from stylize.engine.atomic import atomic_path
from stylize.engine.errors import UserError

DEFAULT_MAX_PIXELS = 200_000_000  # 16K (133 MP) fits; a decompression bomb does not
RESOLUTIONS = {"1k": 1024, "2k": 2048, "4k": 3840, "8k": 7680, "16k": 15360}
WRITERS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".tif": "TIFF", ".tiff": "TIFF"}
TIFF_EXTS = (".tif", ".tiff")
BIGTIFF_THRESHOLD = 4_000_000_000 - (1 << 24)  # classic TIFF offsets are 32-bit


class ImageError(UserError):
    """A problem with an input or output file, stated in one line."""


@dataclass
class LoadedImage:
    rgb: np.ndarray  # (3, H, W) float32 in [0, 1]
    alpha: np.ndarray | None  # (H, W) float32 in [0, 1], when the file had transparency

    @property
    def size(self) -> tuple[int, int]:
        """(width, height)"""
        return self.rgb.shape[2], self.rgb.shape[1]


def parse_resolution(value: str | int | None) -> int | None:
    """'8k' → 7680 (long side); '2500' → 2500; None → None (keep the input size)."""
    if value is None or isinstance(value, int):
        return value
    v = str(value).strip().lower()
    if v in RESOLUTIONS:
        return RESOLUTIONS[v]
    if v.isdigit() and int(v) > 0:
        return int(v)
    raise ImageError(f"bad resolution '{value}': use {', '.join(RESOLUTIONS)} or a long side in pixels")


def target_size(width: int, height: int, long_side: int | None) -> tuple[int, int]:
    if long_side is None:
        return width, height
    s = long_side / max(width, height)
    return max(1, round(width * s)), max(1, round(height * s))


def _check_pixels(path: Path, w: int, h: int, max_pixels: int, what: str) -> None:
    if w <= 0 or h <= 0:
        raise ImageError(f"{path}: {what} has zero size ({w}x{h})")
    if w * h > max_pixels:
        raise ImageError(f"{path}: {what} is {w}x{h} = {w * h / 1e6:.0f} MP, over the limit of "
                         f"{max_pixels / 1e6:.0f} MP; raise it with --max-pixels")


_PIL_LIMIT = threading.Lock()


@contextmanager
def _own_pixel_limit():
    """Pillow's decompression-bomb limit is a process-wide global; ours (``max_pixels``,
    checked on the header) replaces it for our own reads only, and the caller's value is
    restored afterwards: importing or using this library never changes Pillow's setting."""
    with _PIL_LIMIT, warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS = saved


def _open_pil(path: Path, max_pixels: int) -> Image.Image:
    try:
        with _own_pixel_limit():
            im = Image.open(path)
    except UnidentifiedImageError:
        raise ImageError(f"{path}: not an image (unrecognised or corrupt file)") from None
    _check_pixels(path, *im.size, max_pixels, "image")
    try:
        with _own_pixel_limit():
            im.load()
            im = ImageOps.exif_transpose(im)
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageError(f"{path}: truncated or corrupt image ({e})") from None
    return im


# Decoders return bands: 2-D arrays (uint8, uint16 or float32) or single-band PIL images,
# plus the value of full scale. Bands are resized and scaled one at a time straight into the
# (3, H, W) float32 result, so an 8K load never holds more than one float copy of the image.
Bands = tuple[list, float, object]  # (colour bands: 1 or 3, full scale, alpha band or None)


def _pil_bands(im: Image.Image) -> Bands:
    alpha = None
    if im.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (im.mode == "P" and "transparency" in im.info):
        im = im.convert("RGBA")
        alpha = im.getchannel("A")
    if im.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        a = np.asarray(im)
        peak = 65535.0 if im.mode.startswith("I;16") or a.max(initial=0) > 255 else 255.0
        return [np.clip(a, 0, peak).astype(np.float32)], peak, alpha
    if im.mode == "F":
        return [np.clip(np.nan_to_num(np.asarray(im, dtype=np.float32)), 0, 1)], 1.0, alpha
    if im.mode in ("L", "1"):
        return [im.convert("L")], 255.0, alpha
    return list(im.convert("RGB").split()), 255.0, alpha


def _tiff_bands(path: Path, max_pixels: int) -> Bands:
    import tifffile

    try:
        with tifffile.TiffFile(path) as tf:
            page = tf.pages[0]
            shape = page.shape
            h, w = (shape[0], shape[1]) if page.planarconfig != 2 or len(shape) < 3 else (shape[1], shape[2])
            _check_pixels(path, w, h, max_pixels, "image")
            a = page.asarray()
            if page.planarconfig == 2 and a.ndim == 3:
                a = np.moveaxis(a, 0, -1)
            cmyk = page.photometric == tifffile.PHOTOMETRIC.SEPARATED
    except (tifffile.TiffFileError, ValueError, OSError, IndexError) as e:
        raise ImageError(f"{path}: truncated or corrupt TIFF ({e})") from None
    if a.ndim == 2:
        a = a[..., None]
    if a.ndim != 3 or a.shape[2] not in (1, 2, 3, 4, 5) or (a.shape[2] == 5 and not cmyk):
        raise ImageError(f"{path}: unsupported TIFF layout {a.shape}")
    peak = float(np.iinfo(a.dtype).max) if np.issubdtype(a.dtype, np.integer) else 1.0
    bands = [a[..., c] if a.dtype == np.uint8 else np.clip(np.nan_to_num(a[..., c].astype(np.float32)), 0, peak)
             for c in range(a.shape[2])]
    if cmyk and len(bands) >= 4:  # ink coverage → light, as PIL converts CMYK
        ink = [b.astype(np.float32) / peak for b in bands[:4]]
        bands = [(1 - c) * (1 - ink[3]) * peak for c in ink[:3]] + bands[4:]
    alpha = bands.pop() if len(bands) in (2, 4) else None
    return bands, peak, alpha


def _band_to(out: np.ndarray, band, peak: float, size: tuple[int, int]) -> None:
    """Resize one band (Lanczos; 8-bit stays 8-bit like PIL's RGB resize) into ``out`` (H, W)."""
    im = band if isinstance(band, Image.Image) else Image.fromarray(np.ascontiguousarray(band))
    if im.size != size:
        im = im.resize(size, Image.LANCZOS)
    np.multiply(np.asarray(im), np.float32(1.0 / peak), out=out, casting="unsafe")
    if im.mode == "F":  # Lanczos overshoots in float
        np.clip(out, 0, 1, out=out)


def read_image(path: str | os.PathLike, long_side: int | None = None,
               max_pixels: int = DEFAULT_MAX_PIXELS, role: str | None = None) -> LoadedImage:
    """Decode, orient (EXIF), convert to RGB float and resize so the long side is ``long_side``.

    ``role`` ("content", "style") prefixes error messages, so the user knows which file failed.
    """
    try:
        return _read_image(Path(path), long_side, max_pixels)
    except ImageError as e:
        if role:
            raise ImageError(f"{role} {e}") from None
        raise


def _read_image(path: Path, long_side: int | None, max_pixels: int) -> LoadedImage:
    if not path.exists():
        raise ImageError(f"{path}: no such file")
    if not path.is_file():
        raise ImageError(f"{path}: not a file")
    if path.stat().st_size == 0:
        raise ImageError(f"{path}: empty file, not an image")
    bands, peak, alpha_band = (_tiff_bands(path, max_pixels) if path.suffix.lower() in TIFF_EXTS
                               else _pil_bands(_open_pil(path, max_pixels)))
    first = bands[0]
    w, h = first.size if isinstance(first, Image.Image) else (first.shape[1], first.shape[0])
    size = target_size(w, h, long_side)
    _check_pixels(path, *size, max_pixels, "requested output")
    rgb = np.empty((3, size[1], size[0]), np.float32)
    for c in range(3):
        if c < len(bands):
            _band_to(rgb[c], bands[c], peak, size)
            bands[c] = None  # free the decoded band as soon as it is converted
        else:
            rgb[c] = rgb[0]
    alpha = None
    if alpha_band is not None:
        alpha = np.empty((size[1], size[0]), np.float32)
        _band_to(alpha, alpha_band, 255.0 if isinstance(alpha_band, Image.Image) else peak, size)
    return LoadedImage(rgb, alpha)


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """True when two paths name one file (resolved links, hard links included)."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return Path(a).resolve() == Path(b).resolve()


def check_output_path(path: str | os.PathLike, inputs: tuple = ()) -> Path:
    """Fail before any compute: known format, existing writable folder, not a directory, and
    never one of the ``inputs`` (a result must not overwrite the photo it was made from)."""
    path = Path(path)
    if path.is_dir():
        raise ImageError(f"{path}: is a directory")
    for source in inputs:
        if same_file(path, source):
            raise ImageError(f"{path}: is one of the input files; choose another output path")
    if path.suffix.lower() not in WRITERS:
        raise ImageError(f"{path}: unsupported output format '{path.suffix}' (use .png, .jpg or .tif)")
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise ImageError(f"{path}: folder {folder} does not exist")
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".stylize-probe-"):
            pass
    except OSError as e:
        raise ImageError(f"{path}: cannot write in {folder} ({e.strerror or e})") from None
    return path


def to_integer(chw: np.ndarray, bits: int = 8, rows: int = 512) -> np.ndarray:
    """(3, H, W) float → (H, W, 3) uint8/uint16 with the paper's rounding, in row chunks
    so an 8K float image is never duplicated whole."""
    _, h, w = chw.shape
    peak, dtype = (255, np.uint8) if bits == 8 else (65535, np.uint16)
    out = np.empty((h, w, 3), dtype=dtype)
    for y in range(0, h, rows):
        block = np.nan_to_num(chw[:, y:y + rows], nan=0.0).transpose(1, 2, 0)
        out[y:y + rows] = np.round(np.clip(block, 0, 1) * peak)
    return out


def write_image(path: str | os.PathLike, rgb: np.ndarray, alpha: np.ndarray | None = None,
                quality: int = 95, bits: int = 8) -> Path:
    """Write (3, H, W) float RGB (+ optional (H, W) alpha) atomically; format from the suffix."""
    path = check_output_path(path)
    fmt = WRITERS[path.suffix.lower()]
    if bits not in (8, 16) or (bits == 16 and fmt != "TIFF"):
        raise ImageError(f"{path}: {bits}-bit output is only supported for TIFF (8-bit otherwise)")
    pixels = to_integer(rgb, bits)
    if alpha is not None and fmt != "JPEG":
        peak = 255 if bits == 8 else 65535
        a = np.round(np.clip(alpha, 0, 1) * peak).astype(pixels.dtype)[..., None]
        pixels = np.concatenate([pixels, a], axis=2)
    with atomic_path(path) as tmp:
        if fmt == "TIFF":
            import tifffile

            tifffile.imwrite(tmp, pixels, photometric="rgb", bigtiff=pixels.nbytes > BIGTIFF_THRESHOLD,
                             extrasamples=("unassalpha",) if pixels.shape[2] == 4 else None)
        else:
            im = Image.fromarray(pixels)
            opts = {"quality": int(quality), "subsampling": 0} if fmt == "JPEG" else {"compress_level": 6}
            im.save(tmp, format=fmt, **opts)
    return path
