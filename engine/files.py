"""File-to-file stylization: everything the ``stylize`` command does, callable from Python.

    from engine.files import StylizeOptions, stylize_file
    stylize_file("photo.jpg", "painting.jpg", "out.png", StylizeOptions(resolution="8k"))

The order of operations is the user's safety net: validate the output path, read and size-
check both inputs, and only then load models and compute; the result is written atomically.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from .imageio import DEFAULT_MAX_PIXELS, LoadedImage, check_output_path, parse_resolution, read_image, write_image
from .stylizer import Progress, Stylizer


@dataclass
class StylizeOptions:
    resolution: str | int | None = None  # long side of the output; None keeps the content's size
    style_resolution: str | int | None = None  # long side of the style; None keeps its size
    alpha: float = 1.0
    levels: tuple[int, ...] = (5, 4, 3, 2, 1)
    transform: str = "wct"
    model: str = "cd16x"
    backend: str = "torch"
    device: str = "auto"
    half: bool = False
    tile: int | None = None
    max_memory: str | int | None = None
    max_pixels: int = DEFAULT_MAX_PIXELS
    quality: int = 95
    bits: int = 8
    weights_dir: str | os.PathLike | None = None
    extra: dict = field(default_factory=dict)  # backend-specific options


def parse_levels(text: str | tuple[int, ...]) -> tuple[int, ...]:
    """'5,4,3,2,1' → (5, 4, 3, 2, 1); each level 1..5 at most once, applied in the order given."""
    if isinstance(text, tuple):
        levels = text
    else:
        try:
            levels = tuple(int(v) for v in str(text).replace(" ", "").split(",") if v)
        except ValueError:
            raise ValueError(f"bad --levels '{text}': use a comma list such as 5,4,3,2,1") from None
    if not levels or any(k not in range(1, 6) for k in levels) or len(set(levels)) != len(levels):
        raise ValueError(f"bad --levels '{text}': each of 1..5 at most once, e.g. 5,4,3,2,1")
    return levels


def build_stylizer(opts: StylizeOptions) -> Stylizer:
    """The stylizer for these options; non-torch backends come from :mod:`export.backends`."""
    if opts.backend == "torch":
        return Stylizer(opts.model, levels=opts.levels, device=opts.device, half=opts.half,
                        weights_dir=opts.weights_dir, tile=opts.tile, max_memory=opts.max_memory)
    from export.backends import create_backend

    backend = create_backend(opts.backend, model=opts.model, levels=opts.levels, device=opts.device,
                             half=opts.half, weights_dir=opts.weights_dir, **opts.extra)
    return Stylizer(backend=backend, levels=opts.levels, tile=opts.tile, max_memory=opts.max_memory)


def load_pair(content: str | os.PathLike, style: str | os.PathLike,
              opts: StylizeOptions) -> tuple[LoadedImage, LoadedImage]:
    c = read_image(content, parse_resolution(opts.resolution), opts.max_pixels)
    s = read_image(style, parse_resolution(opts.style_resolution), opts.max_pixels)
    return c, s


@dataclass
class FileResult:
    output: Path
    size: tuple[int, int]
    seconds: float
    plan: list[str]


def stylize_file(content: str | os.PathLike, style: str | os.PathLike, output: str | os.PathLike,
                 opts: StylizeOptions | None = None, *, stylizer: Stylizer | None = None,
                 progress: Progress | None = None) -> FileResult:
    """Stylize one pair of files into ``output`` (PNG, JPEG or TIFF by extension)."""
    opts = opts or StylizeOptions()
    out = check_output_path(output)
    if opts.bits == 16 and out.suffix.lower() not in (".tif", ".tiff"):
        raise ValueError("16-bit output needs a .tif/.tiff file")
    c, s = load_pair(content, style, opts)
    t0 = time.perf_counter()
    stylizer = stylizer or build_stylizer(opts)
    content_rgb, c.rgb = c.rgb, None  # the engine reuses this buffer: hold no second reference
    rgb = stylizer.stylize(content_rgb, s.rgb, alpha=opts.alpha, transform=opts.transform, progress=progress,
                           consume_content=True)
    del content_rgb, s
    write_image(out, rgb, c.alpha, quality=opts.quality, bits=opts.bits)
    plans = [p.describe() for p in stylizer.last_report.plans] if stylizer.last_report else []
    return FileResult(out, (rgb.shape[2], rgb.shape[1]), time.perf_counter() - t0, plans)
