"""Separable resampling, strip by strip, with the same result as in one piece.

Resizing a 32K image cannot hold it whole, and the engine promises that where an image lives
(RAM or a scratch file) never changes a pixel. So the weights are a property of the whole
image (input size, output size, kernel), computed once per axis, and any band of output rows
is ``Wy[band] @ rows @ Wxᵀ`` of the input rows it needs: a strip is exactly the rows of the
whole-image result, whatever the strip height. Downscaling widens the kernel by the scale
(antialiasing), as Pillow and torch's ``antialias=True`` do.

Kernels: ``lanczos3`` for the image itself (as Pillow's LANCZOS), ``bicubic`` (a = -0.5,
Keys) for stroke scale's blurred layers.
"""
from __future__ import annotations

from typing import Callable, Iterator

import numpy as np


def _lanczos3(x: np.ndarray) -> np.ndarray:
    x = np.abs(x)
    return np.where(x < 3, np.sinc(x) * np.sinc(x / 3), 0.0)


def _bicubic(x: np.ndarray, a: float = -0.5) -> np.ndarray:
    x = np.abs(x)
    near = ((a + 2) * x - (a + 3)) * x * x + 1
    far = ((a * x - 5 * a) * x + 8 * a) * x - 4 * a
    return np.where(x <= 1, near, np.where(x < 2, far, 0.0))


def _linear(x: np.ndarray) -> np.ndarray:
    return np.maximum(0.0, 1.0 - np.abs(x))


BAND_BYTES = 128 << 20  # input rows (four float32 channels) one strip of a resize may span
# linear: no negative lobes, so masks and weights stay within [0, 1] and keep summing to one.
KERNELS = {"lanczos3": (_lanczos3, 3.0), "bicubic": (_bicubic, 2.0), "linear": (_linear, 1.0)}


def axis_weights(n_in: int, n_out: int, kernel: str = "lanczos3") -> tuple[np.ndarray, np.ndarray]:
    """(first input index per output, weights (n_out, taps)) for resampling one axis.

    Pixel centres map as (o + 0.5) · n_in / n_out - 0.5; taps beyond the border are dropped and
    each row of weights renormalised to sum to one (as Pillow does).
    """
    fn, support = KERNELS[kernel]
    scale = n_in / n_out
    stretch = max(scale, 1.0)  # antialias: widen the kernel when shrinking
    radius = support * stretch
    taps = int(np.ceil(2 * radius)) + 1
    centre = (np.arange(n_out) + 0.5) * scale - 0.5
    first = np.floor(centre - radius).astype(np.int64) + 1
    idx = first[:, None] + np.arange(taps)[None, :]
    w = fn((idx - centre[:, None]) / stretch)
    w[(idx < 0) | (idx >= n_in)] = 0.0  # taps past the border are dropped and the rest renormalised
    w /= w.sum(axis=1, keepdims=True)
    lo = np.clip(first, 0, n_in - 1)
    rel = np.clip(idx, 0, n_in - 1) - lo[:, None]
    width = int(rel.max()) + 1
    dense = np.zeros((n_out, width), np.float64)
    np.add.at(dense, (np.repeat(np.arange(n_out), taps), rel.ravel()), w.ravel())
    return lo, dense.astype(np.float32)


def _apply(block: np.ndarray, lo: np.ndarray, w: np.ndarray, axis: int, origin: int = 0) -> np.ndarray:
    """Resample ``block`` along ``axis`` (whose index ``origin`` is input index 0 of the block).

    ``np.take`` copies a non-contiguous input to a contiguous one on every call: a band that is
    a view (rows of a (C, H, W) image) is made contiguous once here, not once per tap (48 taps
    at an 8x reduction made a 192-MP read 4x slower).
    """
    block = np.ascontiguousarray(block)
    out = None
    for k in range(w.shape[1]):
        idx = np.clip(lo + k - origin, 0, block.shape[axis] - 1)
        term = np.take(block, idx, axis=axis)
        shape = [1] * block.ndim
        shape[axis] = -1
        term *= w[:, k].reshape(shape)
        out = term if out is None else out.__iadd__(term)
    return out


class ForwardRows:
    """Rows of an image made block by block, top to bottom: ``rows(a, b)`` is (C, b - a, W).

    ``a`` never moves back (what a strip-wise resize asks for), so blocks above it are dropped
    and what is held is one band of rows, whatever the image's height. Blocks are kept as they
    come and joined once per request (not once per block: a band of a wide image is 100 MB).
    """

    def __init__(self, blocks: Iterator[np.ndarray]):
        self._blocks = blocks
        self._held: list[np.ndarray] = []  # consecutive blocks, the first starting at row _y0
        self._y0 = 0

    def close(self) -> None:
        self._blocks.close()

    @property
    def held_rows(self) -> int:
        """Rows held now: the blocks that overlap the last band asked for."""
        return sum(h.shape[1] for h in self._held)

    def rows(self, a: int, b: int) -> np.ndarray:
        if a < self._y0:
            raise RuntimeError(f"row {a} asked for after rows above {self._y0} were dropped")
        end = self._y0 + self.held_rows
        while end < b:
            block = next(self._blocks, None)
            if block is None:
                raise EOFError(f"no rows past {end}")
            self._held.append(block)
            end += block.shape[1]
        while self._held and self._y0 + self._held[0].shape[1] <= a:  # wholly above the band
            self._y0 += self._held.pop(0).shape[1]
        parts, y = [], self._y0
        for h in self._held:
            lo, hi = max(a, y) - y, min(b, y + h.shape[1]) - y
            if hi > lo:
                parts.append(h[:, lo:hi])
            y += h.shape[1]
        return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=1)


def reduce_strips(read_rows: Callable[[int, int], np.ndarray], in_hw: tuple[int, int], out_hw: tuple[int, int],
                  write_rows: Callable[[int, np.ndarray], None], kernel: str = "lanczos3", strip: int = 64,
                  chunk: int = 16) -> None:
    """:func:`resize_strips` for large reductions: the same weights, the pass across first.

    A strip of output rows needs ``strip`` times the scale, plus the kernel, input rows: at
    1 gigapixel down to 1280 px (31x) that is 2,170 rows of 40,000 px, 1 GB of floats. Reduced
    across first, as the input is read once, top to bottom, ``chunk`` rows at a time, the band
    is 31 times narrower. The sums run in another order, so this equals :func:`resize_strips`
    to float rounding, not bit for bit; it is a function of the whole image all the same (any
    strip or chunk height gives the same pixels), which is what tiling and stores need.
    """
    (h_in, w_in), (h_out, w_out) = tuple(in_hw), tuple(out_hw)
    xlo, wx = axis_weights(w_in, w_out, kernel)
    ylo, wy = axis_weights(h_in, h_out, kernel)

    def across() -> Iterator[np.ndarray]:
        for a in range(0, h_in, chunk):
            rows = np.asarray(read_rows(a, min(h_in, a + chunk)), dtype=np.float32)
            yield _apply(rows, xlo, wx, axis=2)

    narrow = ForwardRows(across())
    try:
        for y0 in range(0, h_out, strip):
            y1 = min(h_out, y0 + strip)
            a = int(ylo[y0:y1].min())
            b = min(h_in, int(ylo[y0:y1].max()) + wy.shape[1])
            band = narrow.rows(a, b)
            write_rows(y0, _apply(band, ylo[y0:y1], wy[y0:y1], axis=1, origin=a))
    finally:
        narrow.close()


def resized_strips(image: np.ndarray, out_hw: tuple[int, int], kernel: str = "lanczos3",
                   strip: int = 64) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(y0, rows)`` of an in-RAM (C, H, W) image resized to ``out_hw``, strip by strip."""
    yield from _strips(lambda a, b: image[:, a:b], image.shape[1:], out_hw, kernel, strip)


def resize_strips(read_rows: Callable[[int, int], np.ndarray], in_hw: tuple[int, int], out_hw: tuple[int, int],
                  write_rows: Callable[[int, np.ndarray], None], kernel: str = "lanczos3",
                  strip: int | None = None, band_bytes: int = BAND_BYTES) -> None:
    """Resize a (C, H, W) image read by rows into one written by rows, ``strip`` rows at a time
    (default: as many as keep the input rows a strip spans within ``band_bytes``).

    ``read_rows(y0, y1)`` returns input rows ``y0:y1`` as (C, y1 - y0, W_in) float32;
    ``write_rows(y0, block)`` receives output rows as (C, rows, W_out) float32.
    """
    for y0, block in _strips(read_rows, in_hw, out_hw, kernel, strip, band_bytes):
        write_rows(y0, block)


def _band_strip(in_hw: tuple[int, int], out_hw: tuple[int, int], kernel: str = "lanczos3",
                band_bytes: int = BAND_BYTES) -> int:
    """Output rows per strip (at most 64) whose input rows stay within ``band_bytes``.

    A strip of output rows reads its height times the reduction, plus the kernel, in input
    rows at full width: 64 rows of a 40,000-px image reduced 10x span 700 rows, 450 MB of
    four float channels. The strip height never changes a pixel, so lower it as that grows.
    """
    (h_in, w_in), (h_out, _) = tuple(in_hw), tuple(out_hw)
    scale = max(1.0, h_in / h_out)
    rows = band_bytes // (4 * 4 * max(1, w_in)) - int(2 * KERNELS[kernel][1] * scale) - 1
    return int(max(1, min(64, rows // scale)))


def _strips(read_rows, in_hw, out_hw, kernel: str, strip: int | None,
            band_bytes: int = BAND_BYTES) -> Iterator[tuple[int, np.ndarray]]:
    (h_in, w_in), (h_out, w_out) = tuple(in_hw), tuple(out_hw)
    strip = strip or _band_strip(in_hw, out_hw, kernel, band_bytes)
    ylo, wy = axis_weights(h_in, h_out, kernel)
    xlo, wx = axis_weights(w_in, w_out, kernel)
    for y0 in range(0, h_out, strip):
        y1 = min(h_out, y0 + strip)
        a = int(ylo[y0:y1].min())
        b = min(h_in, int(ylo[y0:y1].max()) + wy.shape[1])
        rows = np.asarray(read_rows(a, b), dtype=np.float32)
        tall = _apply(rows, ylo[y0:y1], wy[y0:y1], axis=1, origin=a)
        yield y0, _apply(tall, xlo, wx, axis=2)


def resize(image: np.ndarray, out_hw: tuple[int, int], kernel: str = "lanczos3") -> np.ndarray:
    """(C, H, W) → (C, h, w) float32, in RAM: the same pixels as any strip-wise resize."""
    c, h, w = image.shape
    if (h, w) == tuple(out_hw):
        return image.astype(np.float32, copy=True)
    out = np.empty((c, *out_hw), np.float32)

    def write(y0: int, block: np.ndarray) -> None:
        out[:, y0:y0 + block.shape[1]] = block

    resize_strips(lambda a, b: image[:, a:b], (h, w), tuple(out_hw), write, kernel)
    return out
