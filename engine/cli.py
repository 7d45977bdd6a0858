"""The ``stylize`` command: a thin layer over :mod:`engine.files`.

``stylize CONTENT STYLE -o OUT`` stylizes one pair; ``stylize {demo,batch,export,bench,train}``
are subcommands, each a typer app that lives next to the code it drives and is imported only
when used (so ``stylize --help`` stays fast and a missing optional package only affects its
own subcommand). User mistakes print one ``error:`` line and exit 2; set STYLIZE_DEBUG=1 for
the traceback.
"""
from __future__ import annotations

import importlib
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

import typer

from models.weights import SAMPLE_CONTENT, SAMPLE_STYLE

from .imageio import DEFAULT_MAX_PIXELS, ImageError

SUBCOMMANDS = {
    "demo": ("engine.cli", "demo_app"),
    "batch": ("engine.batch", "app"),
    "export": ("export.cli", "app"),
    "bench": ("bench.cli", "app"),
    "train": ("models.training.cli", "app"),
}

app = typer.Typer(add_completion=False, rich_markup_mode=None, pretty_exceptions_enable=False)
demo_app = typer.Typer(add_completion=False, rich_markup_mode=None, pretty_exceptions_enable=False)


# The engine options, declared once: `stylize` and `stylize batch` (engine.batch) both use them.
RES = typer.Option(None, "--res", help="output long side: 1k, 2k, 4k, 8k, 16k or pixels; "
                   "default keeps the content's size")
STYLE_RES = typer.Option(None, "--style-res", help="style long side; default its own size")
ALPHA = typer.Option(1.0, "--alpha", min=0.0, max=1.0, help="stylization strength")
LEVELS = typer.Option("5,4,3,2,1", "--levels", help="WCT levels, coarse to fine")
TRANSFORM = typer.Option("wct", "--transform", help="wct or adain")
MODEL = typer.Option("cd16x", "--model", help="cd16x, vgg19, or a trained checkpoint file")
BACKEND = typer.Option("torch", "--backend", help="torch, onnxruntime or tensorrt")
DEVICE = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N")
HALF = typer.Option(False, "--half", help="fp16 convolutions (CUDA); statistics stay fp64")
TILE = typer.Option(None, "--tile", min=16, help="force tiles of N px (default: from --max-memory)")
MAX_MEMORY = typer.Option(None, "--max-memory", help="memory budget, e.g. 2G (default 2G on "
                          "CPU, 80% of free GPU memory on CUDA)")
MAX_PIXELS = typer.Option(DEFAULT_MAX_PIXELS, "--max-pixels", help="refuse larger inputs/outputs")
QUALITY = typer.Option(95, "--quality", min=1, max=100, help="JPEG quality")
BITS = typer.Option(8, "--bits", help="8, or 16 for TIFF output")
WEIGHTS_DIR = typer.Option(None, "--weights-dir", help="folder holding weight files")


@contextmanager
def user_errors():
    """Turn expected failures into one line and an exit code, never a traceback."""
    from models.weights import WeightsError

    try:
        yield
    except KeyboardInterrupt:
        typer.echo("interrupted: no output was written", err=True)
        raise typer.Exit(130)
    except (ImageError, WeightsError, ValueError, FileNotFoundError, RuntimeError) as e:
        if os.environ.get("STYLIZE_DEBUG"):
            raise
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if "out of memory" in msg.lower():
            msg += " (lower --max-memory or --tile)"
        typer.echo(f"error: {msg}", err=True)
        raise typer.Exit(2)


class ProgressBar:
    """One bar over levels and passes; the postfix counts tiles within the current pass."""

    def __init__(self, levels: int, enabled: bool):
        from tqdm import tqdm

        self.bar = tqdm(total=3 * levels, unit="pass", disable=not enabled, dynamic_ncols=True,
                        bar_format="{desc} {bar} {n_fmt}/{total_fmt} passes [{elapsed}<{remaining}{postfix}]")

    def __call__(self, level: int, phase: str, done: int, total: int) -> None:
        self.bar.set_description(f"level {level} {phase}", refresh=False)
        self.bar.set_postfix_str(f"tile {done}/{total}", refresh=False)
        if done == total:
            self.bar.update(1)
        else:
            self.bar.refresh()

    def close(self) -> None:
        self.bar.close()


def run_single(content: Path, style: Path, output: Path, opts, quiet: bool) -> None:
    from .files import stylize_file

    bar = ProgressBar(len(opts.levels), enabled=not quiet and sys.stderr.isatty())
    try:
        result = stylize_file(content, style, output, opts, progress=bar)
    finally:
        bar.close()
    if not quiet:
        w, h = result.size
        typer.echo(f"wrote {result.output} ({w}x{h}) in {result.seconds:.1f}s")


def options(res, style_res, alpha, levels, transform, model, backend, device, half, tile, max_memory,
            max_pixels, quality, bits, weights_dir):
    from .files import StylizeOptions, parse_levels

    return StylizeOptions(resolution=res, style_resolution=style_res, alpha=alpha, levels=parse_levels(levels),
                          transform=transform, model=model, backend=backend, device=device, half=half, tile=tile,
                          max_memory=max_memory, max_pixels=max_pixels, quality=quality, bits=bits,
                          weights_dir=weights_dir)


@app.command(epilog="Subcommands: stylize demo | batch | export | bench | train (each has --help).")
def stylize(
    content: Path = typer.Argument(..., metavar="CONTENT", help="photo to stylize"),
    style: Path = typer.Argument(..., metavar="STYLE", help="painting whose style to transfer"),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="PNG, JPEG or TIFF (by extension); "
                                          "default CONTENT_x_STYLE.png in the current folder"),
    res: Optional[str] = RES,
    style_res: Optional[str] = STYLE_RES,
    alpha: float = ALPHA,
    levels: str = LEVELS,
    transform: str = TRANSFORM,
    model: str = MODEL,
    backend: str = BACKEND,
    device: str = DEVICE,
    half: bool = HALF,
    tile: Optional[int] = TILE,
    max_memory: Optional[str] = MAX_MEMORY,
    max_pixels: int = MAX_PIXELS,
    quality: int = QUALITY,
    bits: int = BITS,
    weights_dir: Optional[Path] = WEIGHTS_DIR,
    quiet: bool = typer.Option(False, "-q", "--quiet", help="no progress bar or summary"),
):
    """Paint CONTENT in the style of STYLE, at any resolution, in bounded memory."""
    with user_errors():
        opts = options(res, style_res, alpha, levels, transform, model, backend, device, half, tile, max_memory,
                       max_pixels, quality, bits, weights_dir)
        output = output or Path(f"{content.stem}_x_{style.stem}.png")
        run_single(content, style, output, opts, quiet)


@demo_app.command()
def demo(output: Path = typer.Option(Path("out/demo.jpg"), "-o", "--output"),
         res: Optional[str] = typer.Option(None, "--res", help="output long side (default: the sample's 4K)"),
         quiet: bool = typer.Option(False, "-q", "--quiet")):
    """Stylize the bundled sample pair (fetched and verified like the weights) with the defaults."""
    from models.weights import resolve

    with user_errors():
        content, style = resolve(SAMPLE_CONTENT), resolve(SAMPLE_STYLE)
        output.parent.mkdir(parents=True, exist_ok=True)
        opts = options(res, None, 1.0, "5,4,3,2,1", "wct", "cd16x", "torch", "auto", False, None, None,
                       DEFAULT_MAX_PIXELS, 95, 8, None)
        run_single(content, style, output, opts, quiet)


def main(argv: list[str] | None = None) -> None:
    if argv is None:  # a real process of ours, not a caller's: tune its allocator (see engine.allocator)
        from .allocator import reexec_with_tunables

        reexec_with_tunables("engine.cli", sys.argv[1:])
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in SUBCOMMANDS:
        module, attr = SUBCOMMANDS[argv[0]]
        try:
            sub = getattr(importlib.import_module(module), attr)
        except ImportError as e:
            typer.echo(f"error: 'stylize {argv[0]}' is unavailable: {e}", err=True)
            raise SystemExit(2)
        sub(args=argv[1:], prog_name=f"stylize {argv[0]}")
    else:
        app(args=argv, prog_name="stylize")


if __name__ == "__main__":
    main()
