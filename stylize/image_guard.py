"""Where hostile files stop: every check that comes before a decoder sees a byte.

A file is opened only when it is a regular, non-empty file (a FIFO would block the open
forever, a directory or socket has no pixels), and always closed. Its header's sizes are
checked before anything is decoded: pixels against ``max_pixels``, the bytes the decode will
allocate against a byte limit, and whether the file can hold what its header claims at all
(a 633-byte JPEG claiming 14000x14000 is a truncated file or a decompression bomb). Decoders
run one at a time with their warnings silenced, so a bad file is told once, as one
:class:`ImageError` line, and whatever a decoder raises on hostile bytes
(:data:`DECODE_ERRORS`) becomes that line too.
"""
from __future__ import annotations

import errno
import io
import os
import stat
import struct
import threading
import warnings
import zlib
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Iterator

from PIL import Image

from stylize.engine.errors import UserError

# What a decode may allocate, per pixel of ``max_pixels``: a 16K image of four float32
# samples fits; a header claiming 14000² float64 RGB (4.4 GiB) does not.
DECODE_BYTES_PER_PIXEL = 16
# No image format we read stores more than ~2,700 decoded bytes in one byte of file (deflate
# peaks at 1,032, Huffman JPEG at 1,024, GIF's LZW at 2,730), so a header claiming more is a
# truncated file or a decompression bomb. Decodes under the floor are cheap whatever they claim.
MAX_EXPANSION = 4096
EXPANSION_FLOOR = 64 << 20
TIFF_MAGIC = (b"II*\0", b"MM\0*", b"II+\0", b"MM\0+")  # classic and BigTIFF, both byte orders
# What decoders (Pillow's plugins, tifffile, imagecodecs) raise on hostile bytes. Caught around
# decoder calls only: raised by our own code, any of these is a bug and keeps its traceback.
DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, KeyError, IndexError, TypeError, struct.error,
                 zlib.error, OverflowError, ZeroDivisionError, NotImplementedError, RuntimeError)


class ImageError(UserError):
    """A problem with an input or output file, stated in one line."""


def pixels_text(n: int) -> str:
    """196 MP, 1.5 MP, 12,000 pixels: a limit of 100 must not read as '0 MP'."""
    return f"{n / 1e6:.0f} MP" if n >= 10e6 else f"{n / 1e6:.1f} MP" if n >= 1e6 else f"{n:,} pixels"


def bytes_text(n: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} bytes"


def describe_error(e: BaseException, limit: int = 200) -> str:
    """A decoder's or the system's exception as a short phrase for inside one line."""
    text = e.strerror if isinstance(e, OSError) and e.strerror else " ".join(str(e).split())
    if isinstance(e, OSError) and e.errno is None and " requested and " in text:  # numpy's short write
        text = f"No space left on device (a short write: {text})"
    text = text if len(text) <= limit else text[:limit] + "..."
    return text if isinstance(e, OSError) and text else f"{type(e).__name__}: {text}" if text else type(e).__name__


@contextmanager
def decode_errors(path, what: str) -> Iterator[None]:
    """What a decoder or codec raises on a damaged file (``DECODE_ERRORS``), as one line naming
    the file and ``what`` it was read as."""
    try:
        yield
    except DECODE_ERRORS as e:
        raise ImageError(f"{path}: truncated or corrupt {what} ({describe_error(e)})") from None


@dataclass(frozen=True)
class Limits:
    """What one read may take: pixels, decoded bytes, and the file's size (for the expansion)."""
    max_pixels: int
    max_bytes: int
    file_bytes: int
    flag: str  # the option that raises max_bytes

    @classmethod
    def of(cls, max_pixels: int, max_bytes: int | None, file_bytes: int) -> "Limits":
        """The byte limit is ``DECODE_BYTES_PER_PIXEL`` per pixel of ``max_pixels``, or the
        memory budget ``max_bytes`` (``--max-memory``) when that is lower."""
        by_pixels = max_pixels * DECODE_BYTES_PER_PIXEL
        if max_bytes is not None and max_bytes < by_pixels:
            return cls(max_pixels, max_bytes, file_bytes, "--max-memory")
        return cls(max_pixels, by_pixels, file_bytes, "--max-pixels")

    def check_pixels(self, path: Path, w: int, h: int, what: str = "image") -> None:
        if w <= 0 or h <= 0:
            raise ImageError(f"{path}: {what} has zero size ({w}x{h})")
        if w * h > self.max_pixels:
            raise ImageError(f"{path}: {what} is {w}x{h} ({pixels_text(w * h)}), over the limit of "
                             f"{pixels_text(self.max_pixels)}; raise it with --max-pixels")

    def check_decode(self, path: Path, w: int, h: int, nbytes: int, layout: str, whole: bool = True,
                     instead: str = "") -> None:
        """Before decoding: the pixels, the bytes the decoder will allocate (``whole``: a row
        reader holds a few rows, not ``nbytes``), and whether the file can hold them at all.
        ``instead``: what else the user can do when the decode is over the limit."""
        self.check_pixels(path, w, h)
        if whole and nbytes > self.max_bytes:
            limit = (f"the {bytes_text(self.max_bytes)} left of the memory budget" if self.flag == "--max-memory"
                     else f"the limit of {bytes_text(self.max_bytes)}")
            raise ImageError(f"{path}: decoding {w}x{h} ({layout}) takes {bytes_text(nbytes)}, over {limit}; "
                             f"raise it with {self.flag}{instead}")
        if nbytes > max(EXPANSION_FLOOR, MAX_EXPANSION * self.file_bytes):
            raise ImageError(f"{path}: a {bytes_text(self.file_bytes)} file cannot hold the {w}x{h} image its "
                             f"header claims ({bytes_text(nbytes)} decoded): truncated, corrupt or a "
                             "decompression bomb")


_DECODING = threading.Lock()


@contextmanager
def quiet_decoders():
    """Decoders under our rules, one at a time: Pillow's decompression-bomb limit (a process
    global) is replaced by ours (:class:`Limits`, checked on the header) and restored after,
    and decoder warnings (Pillow's, tifffile's log) are silenced: the file's problem is told
    once, as an ImageError, never as extra stderr lines."""
    import logging

    tiff_log = logging.getLogger("tifffile")
    with _DECODING, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        saved = Image.MAX_IMAGE_PIXELS, tiff_log.disabled
        Image.MAX_IMAGE_PIXELS, tiff_log.disabled = None, True
        try:
            yield
        finally:
            Image.MAX_IMAGE_PIXELS, tiff_log.disabled = saved


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a device"), (stat.S_ISBLK, "a device")):
        if test(mode):
            return name
    return "not a regular file"


def not_readable(path: Path) -> str | None:
    """Why ``path`` cannot be read as an image file (None when it is a regular file):
    'not a file (a FIFO)', 'symbolic link loop', 'broken symbolic link', 'no such file'..."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return "broken symbolic link" if os.path.islink(path) else "no such file"
    except OSError as e:
        return "symbolic link loop" if e.errno == errno.ELOOP else f"cannot read ({e.strerror or e})"
    return None if stat.S_ISREG(st.st_mode) else f"not a file ({_kind(st.st_mode)})"


class BoundedFile(io.BufferedReader):
    """``read(n)`` asks for no more than the file holds: decoders read a length from the file
    and then ``read(length)``, which allocates ``length`` bytes before reading any (a 1 KB
    JPEG 2000 whose box claims 2**62 bytes would be a MemoryError)."""

    def __init__(self, raw):
        super().__init__(raw)
        self.size = os.fstat(raw.fileno()).st_size

    def read(self, size: int | None = -1) -> bytes:
        if size is not None and size > 0:
            size = min(size, max(self.size - self.tell(), 0))
            if size == 0:
                return b""
        return super().read(size)


@contextmanager
def open_regular(path: Path) -> Iterator[BoundedFile]:
    """Open a regular, non-empty file for reading; always closed. The open never blocks (a
    FIFO would wait forever for a writer) and the type is checked on the opened file."""
    why = not_readable(path)
    if why:
        raise ImageError(f"{path}: {why}")
    try:
        raw = open(path, "rb", buffering=0, opener=lambda p, flags: os.open(p, flags | getattr(os, "O_NONBLOCK", 0)))
    except OSError as e:
        raise ImageError(f"{path}: cannot read ({describe_error(e)})") from None
    with BoundedFile(raw) as f:
        mode = os.fstat(f.fileno()).st_mode
        if not stat.S_ISREG(mode):
            raise ImageError(f"{path}: not a file ({_kind(mode)})")
        if f.size == 0:
            raise ImageError(f"{path}: empty file, not an image")
        yield f


def is_tiff(f: BinaryIO) -> bool:
    head = f.read(4)
    f.seek(0)
    return head in TIFF_MAGIC

