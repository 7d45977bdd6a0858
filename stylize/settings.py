"""Every option of a stylization, declared once, typed, and validated when it is made.

:class:`Settings` is what the Python API takes and what the command line builds: each field
carries its command-line flag and help (``cli``), so ``stylize`` and ``stylize batch`` get the
same options from this one declaration (:func:`stylize.cli_options.with_settings`). Values are
normalised here (``"8k"`` → 7680, ``"5,4,3"`` → (5, 4, 3), ``"2G"`` → bytes) and checked before
any file is read or any model loaded, so a bad option is one line, never a wasted decode.

Adding an option is one field here, plus its use where it acts.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import numpy as np

from stylize.engine.color import MODES as COLOR_MODES
from stylize.engine.errors import UserError
from stylize.engine.backend import parse_device, resolve_device
from stylize.engine.memory import check_host_budget, current_rss, default_cpu_budget, parse_size
from stylize.engine.stroke_scale import AUTO, WORKING_LONG_SIDE, parse_stroke_scale
from stylize.engine.wct import TRANSFORMS
from stylize.export.registry import BACKENDS, backend_spec
from stylize.models.zoo import FAMILIES

from .imageio import DEFAULT_MAX_PIXELS, RESOLUTIONS, parse_resolution


STORES = ("auto", "ram", "disk")


class SettingsError(UserError):
    """An option value that cannot work, named with its flag."""


def cli(flag: str, help: str, kind: type = str, **extra) -> dict:
    """Field metadata for the command line: the flag, its help, the type typer parses."""
    return {"cli": {"flag": flag, "help": help, "kind": kind, **extra}}


def parse_levels(text: str | tuple[int, ...] | list[int]) -> tuple[int, ...]:
    """'5,4,3,2,1' → (5, 4, 3, 2, 1); each level 1..5 at most once, applied in the order given."""
    if isinstance(text, (tuple, list)):
        levels = tuple(int(v) for v in text)
    else:
        try:
            levels = tuple(int(v) for v in str(text).replace(" ", "").split(","))  # '5,,3' is a typo
        except ValueError:
            raise SettingsError(f"bad --levels '{text}': use a comma list such as 5,4,3,2,1") from None
    if not levels or any(k not in range(1, 6) for k in levels) or len(set(levels)) != len(levels):
        raise SettingsError(f"bad --levels '{text}': each of 1..5 at most once, e.g. 5,4,3,2,1")
    return levels


def positive_size(option: str, text: str | int) -> int:
    """A memory size given to ``option`` ('2G', '1536M', bytes), in bytes, above zero."""
    try:
        size = parse_size(text)
    except ValueError as e:
        raise SettingsError(f"{option}: {e}") from None
    if size <= 0:
        raise SettingsError(f"{option} must be positive, got '{text}'")
    return size


def as_number(flag: str, value, kind: type = float):
    """A numeric option given from Python as the command line would read it: '0.5' → 0.5,
    64.0 → 64 for a whole-number option; None, True, 64.5 for a count, or text are errors."""
    if isinstance(value, (bool, np.bool_)) or value is None:
        raise SettingsError(f"{flag} must be a number, got {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise SettingsError(f"{flag} must be a number, got {value!r}") from None
    if kind is float:
        return number
    if not number.is_integer():
        raise SettingsError(f"{flag} must be a whole number, got {value!r}")
    return int(value) if isinstance(value, (int, np.integer)) else int(number)


def check_path(flag: str, value) -> None:
    """A folder or file option given from Python: a path or None."""
    if value is not None and not isinstance(value, (str, os.PathLike)):
        raise SettingsError(f"{flag} must be a path, got {value!r}")


def parse_weights(text: str | tuple | list | None) -> tuple[float, ...] | None:
    """'0.7,0.3' → (0.7, 0.3): each a finite number >= 0, summing to a positive number."""
    if text is None:
        return None
    try:
        weights = tuple(float(v) for v in (text if isinstance(text, (tuple, list)) else str(text).split(",")))
    except ValueError:
        raise SettingsError(f"bad --style-weights '{text}': use numbers such as 0.7,0.3") from None
    if not weights or any(not math.isfinite(w) or w < 0 for w in weights) or not sum(weights) > 0:
        raise SettingsError(f"bad --style-weights '{text}': numbers >= 0 that sum to a positive number")
    return weights


@dataclass(frozen=True)
class Settings:
    """How to stylize. Fields keep the user's spelling; the ``*_px``/``*_bytes`` properties and
    ``levels`` hold the parsed values."""

    resolution: str | int | None = field(default=None, metadata=cli(
        "--res", f"output long side: {', '.join(RESOLUTIONS)} or pixels; default keeps the content's size"))
    style_weights: str | tuple[float, ...] | None = field(default=None, metadata=cli(
        "--style-weights", "with several styles: their weights, e.g. 0.7,0.3 (default: equal); each level's "
        "map is the weighted mix of the styles' maps"))
    preserve_color: str = field(default="off", metadata=cli(
        "--preserve-color", "keep the photo's colours: luminance (the stylized luma with the photo's chroma) "
        "or style (the style recoloured to the photo's palette first); default off"))
    mask: str | os.PathLike | None = field(default=None, metadata=cli(
        "--mask", "regional styles: a label mask (one flat colour per style, in order of brightness; one more, "
        "the darkest, keeps the photo) or a grayscale soft mask (white: last style). In a batch each pair has "
        "one style, so the mask says where it paints (white) and where the photo stays (black); a folder "
        "gives each photo the mask of its name, where there is one"))
    style_resolution: str | int | None = field(default=None, metadata=cli(
        "--style-res", "style long side; default its own size"))
    alpha: float = field(default=1.0, metadata=cli("--alpha", "stylization strength in [0, 1]", float))
    levels: tuple[int, ...] | str = field(default=(5, 4, 3, 2, 1), metadata=cli(
        "--levels", "WCT levels, coarse to fine", default_text="5,4,3,2,1"))
    transform: str = field(default="wct", metadata=cli("--transform", f"{' or '.join(TRANSFORMS)}"))
    stroke_scale: str = field(default=AUTO, metadata=cli(
        "--stroke-scale", f"auto: the look of a {WORKING_LONG_SIDE}-px stylization at any size (identical to "
        "native up to that size); native: the paper's pipeline, strokes fixed in pixels; or a factor >= 1"))
    model: str = field(default="cd16x", metadata=cli(
        "--model", f"{', '.join(FAMILIES)}, or a trained checkpoint file"))
    backend: str = field(default="torch", metadata=cli(
        "--backend", "; ".join(f"{s.name}: {s.summary}" for s in BACKENDS.values())))
    device: str = field(default="auto", metadata=cli("--device", "auto, cpu, cuda or cuda:N"))
    half: bool = field(default=False, metadata=cli("--half", "fp16 convolutions (CUDA); statistics stay fp64",
                                                   bool))
    tile: int | None = field(default=None, metadata=cli(
        "--tile", "force tiles of N px (default: from --max-memory)", int))
    max_memory: str | int | None = field(default=None, metadata=cli(
        "--max-memory", "memory budget, e.g. 2G (default 2G on CPU, 80% of free GPU memory on CUDA)"))
    store: str = field(default="auto", metadata=cli(
        "--store", "where images between levels live: auto (RAM while three of them fit in half the budget, "
        "else scratch files), ram, or disk"))
    scratch: str | os.PathLike | None = field(default=None, metadata=cli(
        "--scratch", "folder for scratch files (default $STYLIZE_SCRATCH, else the system temp folder)", Path))
    max_pixels: int = field(default=DEFAULT_MAX_PIXELS, metadata=cli(
        "--max-pixels", "refuse larger inputs or outputs (pixels)", int))
    quality: int = field(default=95, metadata=cli("--quality", "JPEG quality, 1-100", int))
    bits: int = field(default=8, metadata=cli("--bits", "8, or 16 for TIFF output", int))
    weights_dir: str | os.PathLike | None = field(default=None, metadata=cli(
        "--weights-dir", "folder holding weight files (checked first)", Path))

    def __post_init__(self) -> None:
        set_ = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731 (frozen)
        for name, flag, kind in (("alpha", "--alpha", float), ("max_pixels", "--max-pixels", int),
                                 ("quality", "--quality", int), ("bits", "--bits", int)):
            set_(name, as_number(flag, getattr(self, name), kind))
        if self.tile is not None:
            set_("tile", as_number("--tile", self.tile, int))
        for name in ("mask", "scratch", "weights_dir"):
            check_path("--" + name.replace("_", "-"), getattr(self, name))
        if self.mask == "":
            raise SettingsError("--mask is an empty path (None means no mask)")
        if self.mask is not None and not Path(self.mask).exists():  # a file, or a folder of them for a batch
            raise SettingsError(f"--mask {self.mask}: no such file or folder")
        if not isinstance(self.half, (bool, np.bool_)):
            raise SettingsError(f"--half is True or False, got {self.half!r}")
        set_("device", str(self.device))
        try:
            named = parse_device(self.device)  # None for auto
        except UserError as e:
            raise SettingsError(f"--device: {e}") from None
        set_("levels", parse_levels(self.levels))
        self.output_px, self.style_px, self.memory_bytes  # parse now: errors before any work
        if not 0.0 <= self.alpha <= 1.0:
            raise SettingsError(f"--alpha must be in [0, 1], got {self.alpha}")
        try:
            set_("stroke_scale", parse_stroke_scale(self.stroke_scale))
        except ValueError as e:
            raise SettingsError(f"--stroke-scale: {e}") from None
        set_("style_weights", parse_weights(self.style_weights))
        if self.preserve_color not in COLOR_MODES:
            raise SettingsError(f"--preserve-color must be one of {', '.join(COLOR_MODES)}, got '{self.preserve_color}'")
        if self.transform not in TRANSFORMS:
            raise SettingsError(f"unknown --transform '{self.transform}': choose {', '.join(TRANSFORMS)}")
        if str(self.model) not in FAMILIES and not Path(self.model).is_file():
            raise SettingsError(f"unknown model '{self.model}' (--model): choose {', '.join(FAMILIES)} or a checkpoint file")
        family = FAMILIES.get(str(self.model))
        if family and any(k not in family.levels for k in self.levels):
            raise SettingsError(f"model '{self.model}' has levels {family.levels}, not {self.levels}")
        try:
            backend_spec(self.backend).check(self.device)
        except UserError as e:
            raise SettingsError(f"--backend {self.backend}: {e}") from None
        if self.memory_bytes and resolve_device(self.device).type == "cpu":
            check_host_budget(self.memory_bytes)
        if self.half and named is not None and named.type == "cpu":
            raise SettingsError("--half needs a CUDA device: fp16 convolutions are slow or missing on CPU")
        if self.tile is not None and self.tile < 16:
            raise SettingsError(f"--tile must be at least 16 px, got {self.tile}")
        if self.max_pixels < 1:
            raise SettingsError(f"--max-pixels must be positive, got {self.max_pixels}")
        if not 1 <= self.quality <= 100:
            raise SettingsError(f"--quality must be in 1..100, got {self.quality}")
        if self.bits not in (8, 16):
            raise SettingsError(f"--bits must be 8 or 16, got {self.bits}")
        if self.store not in STORES:
            raise SettingsError(f"--store must be one of {', '.join(STORES)}, got '{self.store}'")
        if self.scratch is not None and not Path(self.scratch).is_dir():
            raise SettingsError(f"--scratch {self.scratch}: not a folder")
        if self.weights_dir is not None and not Path(self.weights_dir).is_dir():
            raise SettingsError(f"--weights-dir {self.weights_dir}: not a folder")

    @property
    def output_px(self) -> int | None:
        """Long side of the output in pixels, None to keep the content's size."""
        return _resolution(self.resolution, "--res")

    @property
    def style_px(self) -> int | None:
        return _resolution(self.style_resolution, "--style-res")

    @property
    def memory_bytes(self) -> int | None:
        return None if self.max_memory is None else positive_size("--max-memory", self.max_memory)

    @property
    def budget_bytes(self) -> int:
        """The host memory budget (--max-memory; default 2 GiB, less on a host with under 2.7 GiB)."""
        return self.memory_bytes or default_cpu_budget()

    def budget_left(self) -> int:
        """What this process has left of the host budget now (what sizes a style's read)."""
        return max(0, self.budget_bytes - current_rss())

    def decode_limit(self) -> int:
        """The most an image decoded whole may take (GIF, WebP, BMP have no decoder by rows):
        what the process has left of its budget, but never less than ``DECODE_FLOOR``; a
        budget that cannot hold that is too small for the engine, which names the least that works."""
        return max(DECODE_FLOOR, self.budget_left())

    def check_styles(self, count: int) -> None:
        """What depends on how many styles a run has, checked before any file is read."""
        if count == 0:
            raise SettingsError("no style given: pass at least one style image")
        if self.mask is not None and self.style_weights is not None:
            raise SettingsError("--mask gives each region one style; --style-weights mixes styles everywhere: "
                                "use one or the other")
        if self.style_weights is not None and len(self.style_weights) != count:
            raise SettingsError(f"--style-weights gives {len(self.style_weights)} weight(s) for {count} style(s)")

    def check_output(self, path: Path) -> None:
        """What depends on the output file's format, checked before any compute."""
        if self.bits == 16 and path.suffix.lower() not in (".tif", ".tiff"):
            raise SettingsError(f"{path}: 16-bit output needs a .tif/.tiff file")

    def with_(self, **changes) -> "Settings":
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)

    @classmethod
    def options(cls) -> list:
        """The fields that are command-line options, in declaration order."""
        return [f for f in fields(cls) if "cli" in f.metadata]


DECODE_FLOOR = 64 << 20  # a 16-MP photo decoded whole (4 bytes a pixel)


def _resolution(value, flag: str) -> int | None:
    try:
        return parse_resolution(value)
    except UserError as e:
        raise SettingsError(f"{flag}: {e}") from None
