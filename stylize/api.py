"""The one entry point: arrays or files in, the stylized image and its report out.

    import stylize
    result = stylize.stylize(content, style, stylize.Settings(alpha=0.8))   # arrays (3, H, W)
    result.image, result.report
    stylize.stylize_file("photo.jpg", "painting.jpg", "out.png", stylize.Settings(resolution="8k"))

The order of operations is the user's safety net: settings are validated when made, the
output path is checked, both inputs are read and size-checked, and only then are models loaded
and the work done; the result is written atomically.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stylize.engine.store import Store, StoreFactory, scratch_folder
from stylize.engine.stylizer import Progress, RunReport, Stylized, StyleStats, Stylizer
from stylize.export.registry import create_backend

from .image_stream import (STORE_DTYPE, check_writable, fits_in_ram, load_into_store, probe_size, scratch_bytes,
                           write_store)
from .imageio import LoadedImage, check_output_path, read_image, target_size, write_image
from .settings import Settings


def build_stylizer(settings: Settings | None = None) -> Stylizer:
    """The stylizer these settings describe: model resolved once, backend from the registry."""
    s = settings or Settings()
    backend = create_backend(s.backend, s.model, s.levels, device=s.device, half=s.half, weights_dir=s.weights_dir)
    return Stylizer(backend, levels=s.levels, tile=s.tile, max_memory=s.memory_bytes)


def stylize(content: np.ndarray | Store, style: np.ndarray | StyleStats, settings: Settings | None = None, *,
            stylizer: Stylizer | None = None, progress: Progress | None = None,
            consume_content: bool = False, stores: StoreFactory | None = None) -> Stylized:
    """Stylize a (3, H, W) float32 image in [0, 1] with a style image or its statistics.

    Returns :class:`Stylized` (``image``, ``report``). Pass ``stylizer`` to reuse loaded models;
    ``content`` may be a store and ``stores`` a factory of scratch stores (images beyond RAM).
    """
    s = settings or Settings()
    stylizer = stylizer or build_stylizer(s)
    return stylizer.stylize(content, style, alpha=s.alpha, transform=s.transform, stroke_scale=s.stroke_scale,
                            progress=progress, consume_content=consume_content, stores=stores)


def load_pair(content: str | os.PathLike, style: str | os.PathLike,
              settings: Settings) -> tuple[LoadedImage, LoadedImage]:
    c = read_image(content, settings.output_px, settings.max_pixels, role="content")
    s = read_image(style, settings.style_px, settings.max_pixels, role="style")
    return c, s


@dataclass
class FileResult:
    output: Path
    size: tuple[int, int]  # (width, height)
    seconds: float
    report: RunReport


def stylize_file(content: str | os.PathLike, style: str | os.PathLike, output: str | os.PathLike,
                 settings: Settings | None = None, *, stylizer: Stylizer | None = None,
                 progress: Progress | None = None) -> FileResult:
    """Stylize one pair of files into ``output`` (PNG, JPEG or TIFF by extension).

    Images that fit (three of them in half the memory budget) are stylized in RAM; larger ones
    stream through scratch files (:mod:`stylize.image_stream`), so memory stays flat in size.
    """
    s = settings or Settings()
    out = check_output_path(output, inputs=(content, style))
    s.check_output(out)
    w0, h0 = probe_size(content, s.max_pixels, role="content")
    w, h = target_size(w0, h0, s.output_px)
    if s.store == "ram" or (s.store == "auto" and fits_in_ram(h, w, s.budget_bytes)):
        return _stylize_in_ram(content, style, out, s, stylizer, progress)
    check_writable(out, h, w, s.budget_bytes)
    st = read_image(style, s.style_px, s.max_pixels, role="style")
    with scratch_folder(s.scratch, scratch_bytes(h, w)) as folder:
        stores = StoreFactory(folder, STORE_DTYPE, ram_pixels=0 if s.store == "disk" else 4_000_000)
        rgb, alpha = load_into_store(content, s.output_px, s.max_pixels, stores, role="content")
        t0 = time.perf_counter()
        stylizer = stylizer or build_stylizer(s)
        result = stylize(rgb, st.rgb, s, stylizer=stylizer, progress=progress, consume_content=True, stores=stores)
        write_store(out, result.store, alpha, quality=s.quality, bits=s.bits)
    return FileResult(out, (w, h), time.perf_counter() - t0, result.report)


def _stylize_in_ram(content, style, out: Path, s: Settings, stylizer: Stylizer | None,
                    progress: Progress | None) -> FileResult:
    c, st = load_pair(content, style, s)
    t0 = time.perf_counter()
    stylizer = stylizer or build_stylizer(s)
    content_rgb, c.rgb = c.rgb, None  # the engine reuses this buffer: hold no second reference
    result = stylize(content_rgb, st.rgb, s, stylizer=stylizer, progress=progress, consume_content=True)
    del content_rgb, st
    write_image(out, result.image, c.alpha, quality=s.quality, bits=s.bits)
    h, w = result.image.shape[1:]
    return FileResult(out, (w, h), time.perf_counter() - t0, result.report)
