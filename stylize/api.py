"""The one entry point: arrays or files in, the stylized image and its report out.

    import stylize
    result = stylize.stylize(content, style, stylize.Settings(alpha=0.8))   # arrays, PIL images, tensors
    result.image, result.report
    stylize.stylize_file("photo.jpg", "painting.jpg", "out.png", stylize.Settings(resolution="8k"))

The order of operations is the user's safety net: settings are validated when made, the
output path is checked, both inputs are read and size-checked, and only then are models loaded
and the work done; the result is written atomically.
"""
from __future__ import annotations

import os
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from stylize.engine.backend import resolve_device
from stylize.engine.regions import Regions
from stylize.engine.store import Store, StoreFactory, scratch_folder
from stylize.engine.run_types import Progress, RunReport, Stylized, StyleStats
from stylize.engine.stylizer import Stylizer
from stylize.export.registry import create_backend

from .array_input import as_rgb
from .image_stream import STORE_DTYPE, check_writable, fits_in_ram, load_into_store, scratch_bytes, write_store
from .imageio import check_output_path, probe_image, read_image, write_image
from .masks import load_regions, mask_regions, read_mask
from .settings import Settings


def build_stylizer(settings: Settings | None = None) -> Stylizer:
    """The stylizer these settings describe: model resolved once, backend from the registry."""
    s = settings or Settings()
    backend = create_backend(s.backend, s.model, s.levels, device=s.device, half=s.half, weights_dir=s.weights_dir)
    return Stylizer(backend, levels=s.levels, tile=s.tile, max_memory=s.memory_bytes)


def stylize(content, style, settings: Settings | None = None, *, stylizer: Stylizer | None = None,
            progress: Progress | None = None, consume_content: bool = False, stores: StoreFactory | None = None,
            regions: Regions | None = None) -> Stylized:
    """Stylize an image with a style image (or several, or their statistics).

    ``content`` and each style: a (3, H, W) float32 array in [0, 1], or any image
    :func:`stylize.array_input.as_rgb` reads ((H, W, 3) uint8 from Pillow, a torch tensor, a
    PIL image, a path), sized to ``settings.resolution`` / ``style_resolution`` as files are; a
    style may also be the statistics from :meth:`Stylizer.style_statistics`. Returns
    :class:`Stylized` (``image``, ``report``). Pass ``stylizer`` to reuse loaded models;
    ``content`` may be a store and ``stores`` a factory of scratch stores (images beyond RAM);
    ``settings.mask`` (or ``regions``, from :func:`stylize.masks.load_regions`) paints each
    region with its own style.
    """
    s = settings or Settings()
    if not _is_store(content):
        content = as_rgb(content, "content", s.output_px, s.max_pixels, s.decode_limit())
    styles = as_list(style)
    s.check_styles(len(styles))
    styles = [st if _is_store(st) or isinstance(st, dict)
              else as_rgb(st, "style", s.style_px, s.max_pixels, s.decode_limit()) for st in styles]
    if s.mask is not None:
        if regions is not None:
            raise ValueError("settings.mask and regions both say where each style goes: give one")
        _, h, w = content.shape
        regions = load_regions(s.mask, (w, h), len(styles), s.max_pixels, stores, max_bytes=s.decode_limit())
    return stylize_prepared(content, styles, s, stylizer, progress, consume_content, stores, regions)


def style_statistics(style, settings: Settings | None = None, *, stylizer: Stylizer | None = None,
                     progress: Progress | None = None) -> StyleStats:
    """A style's per-level statistics, to pass as the style of many :func:`stylize` calls: the
    style is read and encoded once. ``style``: anything :func:`stylize` takes as one, sized to
    ``settings.style_resolution`` as a file is."""
    s = settings or Settings()
    image = style if _is_store(style) else as_rgb(style, "style", s.style_px, s.max_pixels, s.decode_limit())
    return (stylizer or build_stylizer(s)).style_statistics(image, progress)


def _is_store(image) -> bool:
    """A :class:`Store` (a protocol: told by its methods), which the engine reads by boxes."""
    return all(hasattr(image, name) for name in ("read", "write", "shape"))


def stylize_prepared(content: np.ndarray | Store, styles: list, s: Settings, stylizer: Stylizer | None,
                     progress: Progress | None, consume_content: bool, stores: StoreFactory | None = None,
                     regions: Regions | None = None, held: int = 0) -> Stylized:
    """:func:`stylize` on inputs already (3, H, W) float32 in [0, 1] at their sizes, or stores,
    or statistics: what the file paths and the batch have read themselves, not checked again.
    ``held``: bytes of images the caller holds beside these (see :meth:`Stylizer.stylize`)."""
    stylizer = stylizer or build_stylizer(s)
    return stylizer.stylize(content, styles, alpha=s.alpha, transform=s.transform, stroke_scale=s.stroke_scale,
                            style_weights=s.style_weights, preserve_color=s.preserve_color, regions=regions,
                            progress=progress, consume_content=consume_content, stores=stores, held=held)


STYLE_RAM_SHARE = 0.25  # a style image in RAM may take this share of the budget left; a larger one goes to a scratch file


@contextmanager
def read_styles(styles: list, settings: Settings, role: str | None = "style") -> Iterator[list[np.ndarray | Store]]:
    """The styles at ``--style-res``, every header checked before any is decoded: arrays, or
    for a style over a quarter of the memory budget the process has left (a painting scanned
    at 16K is 2 GiB of floats) a scratch store filled by rows, from which the engine reads its
    statistics tile by tile. The scratch files go when the block ends. ``role`` prefixes a
    file's error."""
    sizes = [probe_image(p, settings.max_pixels, role=role, long_side=settings.style_px,
                         max_bytes=settings.decode_limit()) for p in styles]
    room = settings.budget_left()
    large = [12 * w * h > STYLE_RAM_SHARE * room for w, h in sizes]
    with ExitStack() as stack:
        stores = None
        if any(large):
            per_pixel = 4 * np.dtype(STORE_DTYPE).itemsize  # RGB and alpha
            need = sum(per_pixel * h * w for (w, h), big in zip(sizes, large) if big)
            folder = scratch_folder(settings.scratch, need)
            stores = StoreFactory(folder, STORE_DTYPE, ram_pixels=0)
        images: list[np.ndarray | Store] = []
        for path, big in zip(styles, large):
            if big:
                rgb, alpha = load_into_store(path, settings.style_px, settings.max_pixels, stores, role=role,
                                             max_bytes=settings.decode_limit())
                if alpha is not None:
                    alpha.close()
                stack.callback(rgb.close)
                images.append(rgb)
            else:
                images.append(read_image(path, settings.style_px, settings.max_pixels, role=role,
                                         max_bytes=settings.decode_limit()).rgb)
        yield images


def _check_paths(**given) -> None:
    """stylize_file works on files: anything else is named (arrays go to :func:`stylize`)."""
    for role, value in given.items():
        for v in value if isinstance(value, list) else [value]:
            if not isinstance(v, (str, os.PathLike)):
                raise TypeError(f"stylize_file: {role} must be a file path, got {type(v).__name__} "
                                "(stylize.stylize takes arrays and images)")


def as_list(style) -> list:
    """One style path or several."""
    return list(style) if isinstance(style, (list, tuple)) else [style]


@dataclass
class FileResult:
    output: Path
    size: tuple[int, int]  # (width, height)
    seconds: float
    report: RunReport


def stylize_file(content: str | os.PathLike, style: str | os.PathLike | list, output: str | os.PathLike,
                 settings: Settings | None = None, *, stylizer: Stylizer | None = None,
                 progress: Progress | None = None) -> FileResult:
    """Stylize one photo with one style (or several, mixed by ``settings.style_weights``) into
    ``output`` (PNG, JPEG or TIFF by extension).

    Images that fit (three of them in half the memory budget) are stylized in RAM; larger ones
    stream through scratch files (:mod:`stylize.image_stream`), so memory stays flat in size.
    """
    s = settings or Settings()
    styles = as_list(style)
    _check_paths(content=content, style=styles, output=output)
    s.check_styles(len(styles))
    resolve_device(s.device)  # a GPU asked for and missing: before any file is read
    out = check_output_path(output, inputs=(content, *styles, *([s.mask] if s.mask is not None else [])))
    s.check_output(out)
    w, h = probe_image(content, s.max_pixels, role="content", long_side=s.output_px, max_bytes=s.decode_limit())
    for st in styles:  # every header before anything is decoded: a bad style is not found after the photo's read
        probe_image(st, s.max_pixels, role="style", long_side=s.style_px, max_bytes=s.decode_limit())
    if s.mask is not None:
        probe_image(s.mask, s.max_pixels, role="mask", max_bytes=s.decode_limit())
    check_writable(out, h, w, s.budget_bytes)
    if s.store == "ram" or (s.store == "auto" and fits_in_ram(h, w, s.budget_bytes)):
        return _stylize_in_ram(content, styles, out, s, stylizer, progress)
    with read_styles(styles, s) as st:
        mask = read_mask(s.mask, (w, h), len(styles), s.max_pixels, s.decode_limit()) if s.mask is not None else None
        return _stylize_streamed(content, st, mask, out, (w, h), s, stylizer, progress)


def _stylize_streamed(content, st: list, mask, out: Path, size: tuple[int, int], s: Settings,
                      stylizer: Stylizer | None, progress: Progress | None) -> FileResult:
    w, h = size
    stores = StoreFactory(scratch_folder(s.scratch, scratch_bytes(h, w)), STORE_DTYPE,
                          ram_pixels=0 if s.store == "disk" else 4_000_000)
    rgb, alpha = load_into_store(content, s.output_px, s.max_pixels, stores, role="content",
                                 max_bytes=s.decode_limit())
    regions = mask_regions(mask, (w, h), stores) if mask is not None else None
    t0 = time.perf_counter()
    stylizer = stylizer or build_stylizer(s)
    result = stylize_prepared(rgb, st, s, stylizer, progress, True, stores, regions)
    write_store(out, result.store, alpha, quality=s.quality, bits=s.bits)
    return FileResult(out, (w, h), time.perf_counter() - t0, result.report)


def _stylize_in_ram(content, styles: list, out: Path, s: Settings, stylizer: Stylizer | None,
                    progress: Progress | None) -> FileResult:
    c = read_image(content, s.output_px, s.max_pixels, role="content", max_bytes=s.decode_limit())
    with read_styles(styles, s) as st:
        regions = (load_regions(s.mask, c.size, len(styles), s.max_pixels, max_bytes=s.decode_limit())
                   if s.mask is not None else None)
        t0 = time.perf_counter()
        stylizer = stylizer or build_stylizer(s)
        content_rgb, c.rgb = c.rgb, None  # the engine reuses this buffer: hold no second reference
        result = stylize_prepared(content_rgb, st, s, stylizer, progress, True, regions=regions)
        del content_rgb, st
    write_image(out, result.image, c.alpha, quality=s.quality, bits=s.bits)
    h, w = result.image.shape[1:]
    return FileResult(out, (w, h), time.perf_counter() - t0, result.report)
