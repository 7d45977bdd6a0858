"""Images too large for RAM: into a store strip by strip, and out of one strip by strip.

In: the file is decoded by rows where its format allows it (:mod:`stylize.image_rows`: TIFF
through tifffile's segment decoder, JPEG and PNG through libvips in sequential mode), and each
band of rows goes through the resize to the output size (:mod:`stylize.engine.resample`: a
strip is exactly those rows of the whole resize) into the store, so a gigapixel input is never
whole in RAM. Other files are decoded whole at their own size, then resized strip by strip.
Out: PNG through a streaming encoder of our own (zlib, row by row: the format allows it and
Pillow's encoder needs the whole image), TIFF as tiles from a generator through tifffile
(BigTIFF past 4 GB), JPEG through libvips in sequential mode, fed by that PNG encoder
uncompressed (:func:`_write_jpeg`: the same pixels as Pillow's encoder, in constant memory).
Without libvips, JPEG goes through Pillow, which needs the whole 8-bit image: refused before
compute when that does not fit the budget. Past libjpeg's 65,500-pixel side, always.

libvips only decodes: its resampler would make the pixels depend on whether an image fits in
RAM; here both paths use the same resampler and give the same pixels.
"""
from __future__ import annotations

import errno
import os
import struct
import threading
import zlib
from pathlib import Path
from typing import Iterator

import numpy as np

from stylize.engine.resample import resize_strips
from stylize.engine.store import Store, StoreFactory, read_rows

from .image_guard import describe_error
from .image_orient import PNG_SIGNATURE, png_chunk
from .imageio import (BIGTIFF_THRESHOLD, WRITERS, ImageError, output_file, read_by_rows, read_image, target_size,
                      to_integer)

JPEG_MAX_SIDE = 65500  # libjpeg's JPEG_MAX_DIMENSION (the format's 65535 is not reached)
# Scratch precision, chosen by measurement: fp16 halves the bytes, but the reference pairs through
# fp16 scratch files fall to 47.1-59.7 dB against the paper (from 74.5-78.3 dB), while the I/O
# it saves is under 1 % of a run (4K profile: 0.7 s of pread/pwrite in 91 s). float32 scratch
# files hold exactly what RAM holds, so an image gives the same pixels wherever it lives.
STORE_DTYPE = np.float32
RAM_SHARE = 0.5  # images in RAM (content and two level buffers) may take this share of the budget
STRIP = 256  # rows per strip when encoding (a multiple of the TIFF tile side)
TIFF_TILE = 256


def fits_in_ram(height: int, width: int, budget: int) -> bool:
    """Three float32 RGB images (content and the two level buffers) in a share of the budget."""
    return 3 * 12 * height * width <= RAM_SHARE * budget


def scratch_bytes(height: int, width: int) -> int:
    """Scratch space a streamed run needs: three RGB stores and an alpha store."""
    return (3 * 3 + 1) * np.dtype(STORE_DTYPE).itemsize * height * width


def check_writable(path: Path, height: int, width: int, memory_budget: int | None) -> None:
    """What the output format cannot do at this size, found before any compute."""
    fmt = WRITERS.get(path.suffix.lower())
    if fmt == "JPEG":
        if max(height, width) > JPEG_MAX_SIDE:
            raise ImageError(f"{path}: JPEG cannot hold {width}x{height} (sides up to {JPEG_MAX_SIDE} px); "
                             "write .png or .tif")
        need = height * width * 3
        if memory_budget and need > memory_budget // 2 and not _has_vips():
            raise ImageError(f"{path}: a {width}x{height} JPEG is encoded whole ({need / 2**30:.1f} GiB), over half "
                             f"the memory budget; write .png or .tif (streamed), or raise --max-memory")


def load_into_store(path: str | os.PathLike, long_side: int | None, max_pixels: int, stores: StoreFactory,
                    role: str | None = None, max_bytes: int | None = None) -> tuple[Store, Store | None]:
    """(RGB store, alpha store or None) of an image resized so its long side is ``long_side``:
    decoded by rows where the format allows it (:func:`stylize.imageio.read_by_rows`), else whole."""
    made: list[Store | None] = []

    def sink(w: int, h: int, has_alpha: bool):
        made.extend([stores(3, h, w), stores(1, h, w) if has_alpha else None])

        def write(y: int, x: int, block: np.ndarray) -> None:
            made[0].write(y, x, block[:3])
            if made[1] is not None:
                made[1].write(y, x, block[3:])
        return write

    if read_by_rows(path, long_side, max_pixels, sink, role=role, max_bytes=max_bytes):
        return made[0], made[1]
    src = read_image(path, None, max_pixels, role=role, max_bytes=max_bytes, by_rows=False)  # a TIFF volume
    h0, w0 = src.rgb.shape[1:]
    w, h = target_size(w0, h0, long_side)
    rgb = _fill(stores(3, h, w), src.rgb)
    alpha = _fill(stores(1, h, w), src.alpha[None]) if src.alpha is not None else None
    return rgb, alpha


def _fill(store: Store, image: np.ndarray) -> Store:
    """Resize ``image`` into ``store`` strip by strip, clamped to [0, 1] (Lanczos overshoots)."""
    _, h, w = store.shape

    def write(y0: int, block: np.ndarray) -> None:
        store.write(y0, 0, np.clip(block, 0.0, 1.0, out=block))

    if image.shape[1:] == (h, w):
        for y0 in range(0, h, STRIP):
            store.write(y0, 0, image[:, y0:y0 + STRIP])
    else:
        resize_strips(lambda a, b: image[:, a:b], image.shape[1:], (h, w), write)
    return store


def write_store(path: str | os.PathLike, rgb: Store, alpha: Store | None = None, *, quality: int = 95,
                bits: int = 8) -> Path:
    """Encode a store into ``path`` (format from the suffix), strip by strip, atomically.
    As :func:`stylize.imageio.write_image`: what a killed run left beside ``path`` goes first, and a
    full disk or a failed encode is one line naming the file."""
    path = Path(path)
    fmt = WRITERS[path.suffix.lower()]
    _, h, w = rgb.shape
    with output_file(path) as tmp:  # libvips's failures are raised as EIO
        _encode_strips(tmp, fmt, w, h, _pixel_strips(rgb, alpha if fmt != "JPEG" else None, bits),
                       4 if alpha is not None and fmt != "JPEG" else 3, bits, quality)
    return path


def _encode_strips(tmp: Path, fmt: str, w: int, h: int, strips, channels: int, bits: int, quality: int) -> None:
    if fmt == "PNG":
        _write_png(tmp, w, h, channels, bits, strips)
    elif fmt == "TIFF":
        _write_tiff(tmp, w, h, channels, bits, strips)
    elif _has_vips():
        _write_jpeg(tmp, w, h, strips, quality)
    else:
        from PIL import Image

        whole = np.empty((h, w, 3), np.uint8)
        for y0, block in strips:
            whole[y0:y0 + block.shape[0]] = block
        Image.fromarray(whole).save(tmp, format="JPEG", quality=int(quality), subsampling=0)


def _pixel_strips(rgb: Store, alpha: Store | None, bits: int):
    """(y0, (rows, W, 3 or 4) uint8/uint16) with the paper's rounding, clamped."""
    _, h, _ = rgb.shape
    peak = 255 if bits == 8 else 65535
    for y0 in range(0, h, STRIP):
        y1 = min(h, y0 + STRIP)
        block = to_integer(read_rows(rgb, y0, y1), bits)
        if alpha is not None:
            a = np.round(np.clip(read_rows(alpha, y0, y1)[0], 0, 1) * peak).astype(block.dtype)[..., None]
            block = np.concatenate([block, a], axis=2)
        yield y0, block


def _png_bytes(width: int, height: int, channels: int, bits: int, strips, level: int = 6) -> Iterator[bytes]:
    """A PNG, chunk by chunk, row by row: filter type 0 per row, one zlib stream over all IDAT chunks."""
    colour = {3: 2, 4: 6}[channels]
    yield PNG_SIGNATURE + png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, bits, colour, 0, 0, 0))
    z = zlib.compressobj(level)
    for _, block in strips:
        raw = block.astype(">u2") if bits == 16 else block
        rows = np.concatenate([np.zeros((raw.shape[0], 1), np.uint8), raw.reshape(raw.shape[0], -1).view(np.uint8)],
                              axis=1)
        data = z.compress(rows.tobytes())
        if data:
            yield png_chunk(b"IDAT", data)
    yield png_chunk(b"IDAT", z.flush()) + png_chunk(b"IEND", b"")


def _write_png(path: Path, width: int, height: int, channels: int, bits: int, strips) -> None:
    with open(path, "wb") as f:
        for data in _png_bytes(width, height, channels, bits, strips):
            f.write(data)


def _has_vips() -> bool:
    try:
        import pyvips  # noqa: F401
    except (ImportError, OSError):
        return False
    return True


def _write_jpeg(path: Path, width: int, height: int, strips, quality: int) -> None:
    """JPEG in constant memory: libvips reads an uncompressed PNG made strip by strip as it asks
    for bytes (a source of our own), and encodes sequentially. Both ends are libjpeg-turbo with
    the same settings (quality, 4:4:4, baseline, no metadata), so the pixels are those of
    Pillow's encoder of the whole image (``tests/unit/test_image_stream.py``).

    The encode runs on a thread of its own while this one waits in Python: a Ctrl-C raised
    inside one of libvips' callbacks (its log handler, say) would be printed and dropped by cffi
    and the encode would finish, so here it stops the source and is raised once libvips lets go.
    Whatever the strips raise (a scratch read error) is raised here, not lost inside libvips."""
    import pyvips

    chunks = _png_bytes(width, height, 3, 8, strips, level=0)
    held, raised, failed, stop = [b"", 0], [], [], threading.Event()

    def read(size: int) -> bytes:
        if stop.is_set():
            return b""  # an early end: libvips stops with a truncated-file error
        try:
            data, at = held
            while at >= len(data):
                data, at = next(chunks, b""), 0
                if not data:
                    return b""
            held[:] = data, at + size
            return data[at:at + size]
        except BaseException as e:  # noqa: BLE001 - raised again below, in the caller's thread
            raised.append(e)
            return b""

    def encode() -> None:
        source = pyvips.SourceCustom()
        source.on_read(read)
        try:
            pyvips.Image.new_from_source(source, "", access="sequential").jpegsave(
                str(path), Q=int(quality), subsample_mode="off", keep="none")
        except pyvips.Error as e:
            failed.append(e)

    worker = threading.Thread(target=encode, name="jpeg-encode", daemon=True)
    worker.start()
    try:
        while worker.is_alive():
            worker.join(0.1)
    except BaseException:  # Ctrl-C lands here, in Python, never inside libvips
        stop.set()
        worker.join()
        raise
    if raised:
        raise raised[0] from None
    if failed:
        raise OSError(errno.EIO, f"JPEG encoder: {describe_error(failed[0])}") from None


def _write_tiff(path: Path, width: int, height: int, channels: int, bits: int, strips) -> None:
    """Tiled TIFF from a generator of tiles, row-major; BigTIFF when it may pass 4 GB."""
    import tifffile

    dtype = np.uint8 if bits == 8 else np.uint16

    def tiles():
        for _, block in strips:
            pad = np.zeros((TIFF_TILE, -(-width // TIFF_TILE) * TIFF_TILE, channels), dtype)
            pad[:block.shape[0], :width] = block
            for x0 in range(0, width, TIFF_TILE):
                yield pad[:, x0:x0 + TIFF_TILE]

    nbytes = width * height * channels * np.dtype(dtype).itemsize
    tifffile.imwrite(path, tiles(), shape=(height, width, channels), dtype=dtype, tile=(TIFF_TILE, TIFF_TILE),
                     photometric="rgb", bigtiff=nbytes > BIGTIFF_THRESHOLD,
                     extrasamples=("unassalpha",) if channels == 4 else None)
