"""Reading any reasonable image into (3, H, W) float32, and writing results atomically.

Every problem with a file (missing, not a regular file, unreadable, corrupt, too big, an
unwritable or full disk) becomes an :class:`ImageError` with one line naming the file; the CLI
prints it and exits non-zero. Anything else a decoder raises on a hostile file is the file's
problem too, so decoder calls are guarded by :data:`DECODE_ERRORS`; our own code is not, and a
bug keeps its traceback.

Sizes are checked on the header, before anything is decoded: pixels against ``max_pixels``
and the bytes the decode will allocate against a byte limit, and a file too small to hold
what its header claims (a decompression bomb, or a truncated file) is refused outright.

Outputs go to a temporary file in the destination folder and are renamed into place only when
complete, so an interrupted run never leaves a partial image (and a batch can treat a present
file as a finished one); the next write to the same output removes what a killed run left.
"""
from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable, Iterator

import numpy as np
from PIL import Image

from stylize.engine.atomic import atomic_path, remove_stale_parts
from stylize.engine.resample import resize

from .image_guard import ImageError, Limits, describe_error, is_tiff, open_regular, quiet_decoders
from .image_orient import displayed_size, exif_orientation, file_orientation, orient
from .image_rows import STREAM_ABOVE, RowReader, band_bytes, open_rows, resample_rows, rows_size, tiff_by_rows
from .pil_decode import decoded, full_scale, pil_bands, pil_errors, pil_header
from .tiff_read import Bands, tiff_bands, tiff_errors, tiff_header

DEFAULT_MAX_PIXELS = 200_000_000  # 16K (133 MP) fits; a decompression bomb does not
RESOLUTIONS = {"1k": 1024, "2k": 2048, "4k": 3840, "8k": 7680, "16k": 15360, "32k": 30720}
WRITERS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".tif": "TIFF", ".tiff": "TIFF"}
BIGTIFF_THRESHOLD = 4_000_000_000 - (1 << 24)  # classic TIFF offsets are 32-bit
NAME_MAX = 255  # bytes in one file name, on every common filesystem
RowSink = Callable[[int, int, bool], Callable[[int, int, np.ndarray], None]]  # (w, h, has_alpha) -> write(y, x, block)


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
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool) and float(value).is_integer() and value > 0:
        return int(value)  # from Python: 7680 or 7680.0
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


# Decoders return bands: 2-D arrays (uint8 or float32) or single-band PIL images, plus the
# value of full scale. Bands are resized and scaled one at a time straight into the (3, H, W)
# float32 result, so an 8K load never holds more than one float copy of the image.


def _pil_bands(f: BinaryIO, path: Path, limits: Limits) -> tuple[Bands, int]:
    """The bands as stored, and the EXIF orientation to apply after the resize
    (:mod:`stylize.image_orient`: the same pixels as a read by rows)."""
    im = decoded(pil_header(f, path, limits), path)
    with pil_errors(path):
        return pil_bands(im, full_scale(im)), exif_orientation(im)


def _band_to(out: np.ndarray, band, peak: float, orientation: int) -> None:
    """Scale one band to [0, 1], resize it (Lanczos 3, clamped) to ``out``'s sides as stored,
    and turn it by its EXIF ``orientation`` into ``out`` (H, W).

    The resampler is the engine's (:mod:`stylize.engine.resample`), the one that also fills
    scratch stores strip by strip: an image gives the same pixels whether it fits in RAM or not.
    """
    a = np.asarray(band)
    w, h = displayed_size(out.shape[1], out.shape[0], orientation)  # out's sides as stored
    if a.shape == (h, w):
        np.multiply(orient(a, orientation), np.float32(1.0 / peak), out=out, casting="unsafe")
        return
    src = np.multiply(a, np.float32(1.0 / peak), dtype=np.float32)[None]
    resized = np.clip(resize(src, (h, w))[0], 0.0, 1.0)
    out[...] = orient(resized, orientation)


@contextmanager
def _as(role: str | None) -> Iterator[None]:
    """Prefix an ImageError with the file's role ("content", "style"): which file failed."""
    try:
        yield
    except ImageError as e:
        if role:
            raise ImageError(f"{role} {e}") from None
        raise


def probe_image(path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS, role: str | None = None,
                max_bytes: int | None = None, long_side: int | None = None) -> tuple[int, int]:
    """(width, height) that :func:`read_image` with these arguments would return (EXIF rotation
    applied), from the header alone, after every check it makes before decoding (the file, its
    sizes, the requested output's): a bad file or size fails here, before any compute."""
    with _as(role):
        return _probe(Path(path), max_pixels, max_bytes, long_side)


def _probe(path: Path, max_pixels: int, max_bytes: int | None, long_side: int | None) -> tuple[int, int]:
    with open_regular(path) as f, quiet_decoders():
        limits = Limits.of(max_pixels, max_bytes, f.size)
        if is_tiff(f):
            import tifffile

            with tiff_errors(path), tifffile.TiffFile(f) as tf:
                head = tiff_header(tf, path, limits, whole=False)
                if not tiff_by_rows(head.page, STREAM_ABOVE):  # decoded whole: its bytes count too
                    tiff_header(tf, path, limits)
                size = displayed_size(head.page.imagewidth, head.page.imagelength, head.orientation)
        elif (size := rows_size(f, path, limits)) is None:  # else decoded by rows: no whole decode to afford
            f.seek(0)
            im = pil_header(f, path, limits)
            orientation = file_orientation(f, im)  # a PNG's without decoding it, as Pillow's getexif would
            size = displayed_size(*im.size, orientation or 1)  # None, unreadable EXIF: read_image will say so
    size = target_size(*size, long_side)
    limits.check_pixels(path, *size, "requested output")
    return size


def read_image(path: str | os.PathLike, long_side: int | None = None, max_pixels: int = DEFAULT_MAX_PIXELS,
               role: str | None = None, max_bytes: int | None = None, by_rows: bool = True) -> LoadedImage:
    """Decode, orient (EXIF), convert to RGB float and resize so the long side is ``long_side``.

    ``role`` ("content", "style") prefixes error messages, so the user knows which file failed.
    A source over ``STREAM_ABOVE`` pixels is decoded by rows where its format allows it
    (``by_rows``); otherwise a decode may allocate ``DECODE_BYTES_PER_PIXEL`` bytes per pixel
    of ``max_pixels``, and at most ``max_bytes`` when given (the memory budget, ``--max-memory``).
    """
    with _as(role):
        return _read_image(Path(path), long_side, max_pixels, max_bytes, by_rows)


def read_by_rows(path: str | os.PathLike, long_side: int | None, max_pixels: int, sink: RowSink, role: str | None = None,
                 max_bytes: int | None = None) -> bool:
    """Decode ``path`` by rows (:mod:`stylize.image_rows`), resized so its long side is
    ``long_side``, into ``sink(width, height, has_alpha)``, which returns ``write(y0, block)``
    for (3 or 4, rows, width) float32 blocks, alpha last. False, with nothing written, where
    the file must be read whole (then ``read_image(..., by_rows=False)``)."""
    path = Path(path)
    with _as(role), open_regular(path) as f, quiet_decoders():
        return _rows_into(f, path, Limits.of(max_pixels, max_bytes, f.size), long_side, sink)


@contextmanager
def displayed_rows(path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS,
                   role: str | None = None, max_bytes: int | None = None) -> Iterator[RowReader]:
    """The image at its own size, as displayed, as a forward row reader (``rows(a, b)``: (3, or
    4 with alpha, b - a, W) float32 in [0, 1]): decoded by rows where the format allows it and
    the image is stored upright, else read whole and served from RAM. For what is read in full
    at its own size (a mask): a 16K PNG mask is then never whole in RAM."""
    path = Path(path)
    with _as(role), open_regular(path) as f, quiet_decoders():
        reader = open_rows(f, path, Limits.of(max_pixels, max_bytes, f.size))
        if reader is not None and reader.orientation == 1:
            try:
                yield reader
            finally:
                reader.close()
            return
        if reader is not None:
            reader.close()
    whole = read_image(path, None, max_pixels, role=role, max_bytes=max_bytes, by_rows=False)
    pixels = whole.rgb if whole.alpha is None else np.concatenate([whole.rgb, whole.alpha[None]])
    yield RowReader(whole.size, whole.alpha is not None, iter([pixels]), str(path))


def _rows_into(f: BinaryIO, path: Path, limits: Limits, long_side: int | None, sink: RowSink,
               min_pixels: int = 0) -> bool:
    reader = open_rows(f, path, limits, min_pixels)
    if reader is None:
        return False
    try:
        size = target_size(*reader.displayed_size, long_side)
        limits.check_pixels(path, *size, "requested output")
        resample_rows(reader, size, sink(*size, reader.has_alpha), band_bytes(limits, reader.held))
    finally:
        reader.close()
    return True


def _into_ram(loaded: list) -> RowSink:
    def sink(w: int, h: int, has_alpha: bool):
        image = LoadedImage(np.empty((3, h, w), np.float32), np.empty((h, w), np.float32) if has_alpha else None)
        loaded.append(image)

        def write(y: int, x: int, block: np.ndarray) -> None:
            box = slice(y, y + block.shape[1]), slice(x, x + block.shape[2])
            image.rgb[(slice(None), *box)] = block[:3]
            if image.alpha is not None:
                image.alpha[box] = block[3]
        return write
    return sink


def _read_image(path: Path, long_side: int | None, max_pixels: int, max_bytes: int | None,
                by_rows: bool) -> LoadedImage:
    with open_regular(path) as f, quiet_decoders():
        limits = Limits.of(max_pixels, max_bytes, f.size)
        loaded: list[LoadedImage] = []
        if by_rows and _rows_into(f, path, limits, long_side, _into_ram(loaded), STREAM_ABOVE):
            return loaded[0]  # a large source: never decoded whole
        f.seek(0)
        (bands, peak, alpha_band), orientation = (tiff_bands if is_tiff(f) else _pil_bands)(f, path, limits)
    first = bands[0]
    w, h = first.size if isinstance(first, Image.Image) else (first.shape[1], first.shape[0])
    size = target_size(*displayed_size(w, h, orientation), long_side)
    limits.check_pixels(path, *size, "requested output")
    rgb = np.empty((3, size[1], size[0]), np.float32)
    for c in range(3):
        if c < len(bands):
            _band_to(rgb[c], bands[c], peak, orientation)
            bands[c] = None  # free the decoded band as soon as it is converted
        else:
            rgb[c] = rgb[0]
    alpha = None
    if alpha_band is not None:
        alpha = np.empty((size[1], size[0]), np.float32)
        _band_to(alpha, alpha_band, 255.0 if isinstance(alpha_band, Image.Image) else peak, orientation)
    return LoadedImage(rgb, alpha)


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """True when two paths name one file (resolved links, hard links included)."""
    try:
        return os.path.samefile(a, b)
    except OSError:  # one is missing (or a link loop): compare where they point, never raising
        return os.path.realpath(a) == os.path.realpath(b)


def check_output_path(path: str | os.PathLike, inputs: tuple = ()) -> Path:
    """Fail before any compute: known format, existing writable folder, not a directory, and
    never one of the ``inputs`` (a result must not overwrite the photo it was made from)."""
    path = Path(path)
    try:
        if path.is_dir():
            raise ImageError(f"{path}: is a directory")
        for source in inputs:
            if same_file(path, source):
                raise ImageError(f"{path}: is one of the input files; choose another output path")
        if not path.suffix:
            raise ImageError(f"{path}: no file extension: name the output file (.png, .jpg or .tif) or give "
                             "a folder that exists")
        if path.suffix.lower() not in WRITERS:
            raise ImageError(f"{path}: unsupported output format '{path.suffix}' (use .png, .jpg or .tif)")
        folder = path.parent if str(path.parent) else Path(".")
        if not folder.is_dir():
            raise ImageError(f"{path}: folder {folder} does not exist")
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".stylize-probe-"):
            pass
        if len(os.fsencode(f".{path.name}.XXXXXXXX.part{path.suffix}")) > NAME_MAX:  # atomic_path's name
            raise ImageError(f"{path}: file name too long")
    except OSError as e:
        raise ImageError(f"{path}: cannot write there ({describe_error(e)})") from None
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
    """Write (3, H, W) float RGB (+ optional (H, W) alpha) atomically; format from the suffix.
    Temporary files a killed run left beside ``path`` are removed first; a full disk or any
    other system failure is one line naming the file."""
    path = check_output_path(path)
    fmt = WRITERS[path.suffix.lower()]
    if bits not in (8, 16) or (bits == 16 and fmt != "TIFF"):
        raise ImageError(f"{path}: {bits}-bit output is only supported for TIFF (8-bit otherwise)")
    pixels = to_integer(rgb, bits)
    if alpha is not None and fmt != "JPEG":
        peak = 255 if bits == 8 else 65535
        a = np.round(np.clip(alpha, 0, 1) * peak).astype(pixels.dtype)[..., None]
        pixels = np.concatenate([pixels, a], axis=2)
    with output_file(path, (OSError, ValueError)) as tmp:  # ValueError: a size the format cannot hold
        _encode(tmp, pixels, fmt, quality)
    return path


@contextmanager
def output_file(path: Path, errors: tuple = (OSError,)) -> Iterator[Path]:
    """The temporary file an output is written to, renamed into place only when the block ends
    well: what a killed run left beside ``path`` goes first, and ``errors`` raised while writing
    (a full disk, EIO) become one line naming the file."""
    remove_stale_parts(path)
    try:
        with atomic_path(path) as tmp:
            yield tmp
    except errors as e:
        raise ImageError(f"{path}: cannot write ({describe_error(e)})") from None


def _encode(tmp: Path, pixels: np.ndarray, fmt: str, quality: int) -> None:
    if fmt == "TIFF":
        import tifffile

        tifffile.imwrite(tmp, pixels, photometric="rgb", bigtiff=pixels.nbytes > BIGTIFF_THRESHOLD,
                         extrasamples=("unassalpha",) if pixels.shape[2] == 4 else None)
    else:
        opts = {"quality": int(quality), "subsampling": 0} if fmt == "JPEG" else {"compress_level": 6}
        Image.fromarray(pixels).save(tmp, format=fmt, **opts)
