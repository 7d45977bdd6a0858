"""Where images live between levels: in RAM when they fit the budget, on disk when they do not.

The tiled engine touches an image only through boxes: it reads a tile's region (reflected past
the borders) and writes a tile's core. So an image need not be one array in RAM: a
:class:`DiskStore` keeps it in a scratch file, row-major (H, W, C), and serves each box with
one ``pread``/``pwrite`` per row. The page cache does the caching without counting against the
process's RSS, so memory stays flat in resolution (libvips works the same way: demand-driven
regions over images that are never whole in memory).

Storage precision is the caller's choice (``dtype``): float32 is exact (a disk store returns
what a RAM store would), float16 halves the I/O at ~50 dB; the application measured both and
uses float32 (:mod:`stylize.image_stream`).

A scratch file is unlinked as soon as it is made: it has no name, only the run's descriptor,
so the kernel frees its space when the run ends however it ends (success, error, Ctrl-C, and
also SIGKILL or the out-of-memory killer, which no handler sees). A named folder per run was
left behind, files and all, by a killed run. Free space is checked before any work
(:func:`scratch_folder`); a full disk mid-run is a one-line error.
"""
from __future__ import annotations

import errno
import os
import tempfile
import weakref
from pathlib import Path
from typing import Protocol

import numpy as np

from .errors import UserError
from .tiles import Box, reflect_index

ENV_SCRATCH = "STYLIZE_SCRATCH"


class ScratchError(UserError):
    """The scratch folder cannot hold the run (full, missing, not writable)."""


class Store(Protocol):
    """An image the engine reads and writes by boxes: (C, H, W) float32 at the interface.
    ``read`` may return a view of the store's own memory: a caller never writes into it."""

    shape: tuple[int, int, int]

    def read(self, box: Box) -> np.ndarray: ...

    def write(self, y0: int, x0: int, block: np.ndarray) -> None: ...

    def close(self) -> None: ...


def read_rows(store: Store, y0: int, y1: int) -> np.ndarray:
    """Rows ``y0:y1`` of a store, every column."""
    return store.read(Box(y0, y1, 0, store.shape[2]))


class RamStore:
    """A (C, H, W) float32 array behind the store interface."""

    def __init__(self, array: np.ndarray):
        self.array = array

    @classmethod
    def empty(cls, channels: int, height: int, width: int) -> "RamStore":
        return cls(np.empty((channels, height, width), np.float32))

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.array.shape

    def read(self, box: Box) -> np.ndarray:
        _, h, w = self.array.shape
        if box.y0 >= 0 and box.x0 >= 0 and box.y1 <= h and box.x1 <= w:
            return np.ascontiguousarray(self.array[:, box.y0:box.y1, box.x0:box.x1])
        rows = reflect_index(np.arange(box.y0, box.y1), h)
        cols = reflect_index(np.arange(box.x0, box.x1), w)
        return self.array[:, rows[:, None], cols[None, :]]

    def write(self, y0: int, x0: int, block: np.ndarray) -> None:
        _, bh, bw = block.shape
        self.array[:, y0:y0 + bh, x0:x0 + bw] = block

    def close(self) -> None:
        self.array = None


class DiskStore:
    """A (C, H, W) image in a scratch file, stored (H, W, C) in ``dtype`` (float16 or float32)."""

    def __init__(self, folder: Path, channels: int, height: int, width: int, dtype=np.float32):
        self.shape = (channels, height, width)
        self.dtype = np.dtype(dtype)
        self.row_bytes = width * channels * self.dtype.itemsize
        self.folder, self.fd = Path(folder), None
        try:
            fd, name = tempfile.mkstemp(prefix="stylize-", suffix=".raw", dir=folder)
        except OSError as e:
            raise _scratch_error(e, self.folder) from None
        self.fd, self._closer = fd, weakref.finalize(self, os.close, fd)  # closed when dropped, if not before
        try:
            os.unlink(name)  # nameless from here: the space goes back when the descriptor closes
            os.ftruncate(fd, self.row_bytes * height)  # sparse: space is taken as rows are written
        except OSError as e:
            self.close()
            raise _scratch_error(e, self.folder) from None

    def read(self, box: Box) -> np.ndarray:
        c, h, w = self.shape
        rows = reflect_index(np.arange(box.y0, box.y1), h)
        cols = reflect_index(np.arange(box.x0, box.x1), w)
        x0, x1 = int(cols.min()), int(cols.max()) + 1
        span = (x1 - x0) * c * self.dtype.itemsize
        block = np.empty((len(rows), x1 - x0, c), self.dtype)
        for i, y in enumerate(rows):
            got = os.preadv(self.fd, [memoryview(block[i]).cast("B")], int(y) * self.row_bytes
                            + x0 * c * self.dtype.itemsize)
            if got != span:
                raise OSError(errno.EIO, f"short read from a scratch file in {self.folder}")
        if x0 != box.x0 or x1 != box.x1:
            block = block[:, cols - x0]
        return np.ascontiguousarray(block.transpose(2, 0, 1), dtype=np.float32)

    def write(self, y0: int, x0: int, block: np.ndarray) -> None:
        c, bh, bw = block.shape
        rows = np.ascontiguousarray(block.transpose(1, 2, 0), dtype=self.dtype)
        offset = x0 * c * self.dtype.itemsize
        try:
            for i in range(bh):
                view = memoryview(rows[i]).cast("B")
                if os.pwrite(self.fd, view, (y0 + i) * self.row_bytes + offset) != len(view):
                    raise OSError(errno.ENOSPC, "short write")
        except OSError as e:
            raise _scratch_error(e, self.folder) from None

    def close(self) -> None:
        if self.fd is not None:
            self._closer()
            self.fd = None


def _scratch_error(e: OSError, folder: Path) -> UserError:
    if e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return ScratchError(f"scratch folder {folder} is full ({e.strerror or e}); free space or point "
                            f"--scratch (or ${ENV_SCRATCH}) at a larger disk")
    return ScratchError(f"scratch folder {folder}: {e.strerror or e}")


def scratch_root(scratch: str | os.PathLike | None = None) -> Path:
    """--scratch, else $STYLIZE_SCRATCH, else the system temporary folder."""
    return Path(scratch or os.environ.get(ENV_SCRATCH) or tempfile.gettempdir())


def free_bytes(folder: Path) -> int:
    st = os.statvfs(folder)
    return st.f_bavail * st.f_frsize


def scratch_folder(scratch: str | os.PathLike | None, needed: int) -> Path:
    """The folder for one run's scratch files, checked first: a folder, writable, with ``needed``
    free bytes. Nothing is left in it after the run: its files are nameless (:class:`DiskStore`)."""
    root = scratch_root(scratch)
    if not root.is_dir():
        raise ScratchError(f"scratch folder {root}: not a folder")
    if not os.access(root, os.W_OK | os.X_OK):
        raise ScratchError(f"scratch folder {root}: not writable (--scratch or ${ENV_SCRATCH} picks another)")
    if needed and free_bytes(root) < needed:
        raise ScratchError(f"scratch folder {root} has {free_bytes(root) / 2**30:.2f} GiB free; this run needs "
                           f"{needed / 2**30:.2f} GiB there (--scratch or ${ENV_SCRATCH} picks another disk)")
    return root


class StoreFactory:
    """Makes the stores of one run: on disk in ``folder`` (None: everything in RAM), except
    images of at most ``ram_pixels`` (the working-size images of stroke scale, styles)."""

    def __init__(self, folder: Path | None = None, dtype=np.float32, ram_pixels: int = 4_000_000):
        self.folder, self.dtype, self.ram_pixels = folder, np.dtype(dtype), ram_pixels

    @property
    def on_disk(self) -> bool:
        return self.folder is not None

    def __call__(self, channels: int, height: int, width: int):
        if self.folder is None or height * width <= self.ram_pixels:
            return RamStore.empty(channels, height, width)
        return DiskStore(self.folder, channels, height, width, self.dtype)
