"""The ``stylize`` command: a thin layer over :mod:`stylize.api`.

``stylize CONTENT STYLE -o OUT`` stylizes one pair; ``stylize {demo,batch,export}`` are
subcommands of the application, and client packages add theirs (``bench``, ``train``) through
the ``stylize.commands`` entry-point group, so the application never imports its clients.
Each subcommand is a typer app imported only when used (``stylize --help`` stays fast, and a
missing optional package affects only its own subcommand). User mistakes print one ``error:``
line and exit 2; set STYLIZE_DEBUG=1 for the traceback.
"""
from __future__ import annotations

import difflib
import importlib
import os
import sys
from importlib.metadata import entry_points
from pathlib import Path
from typing import List, Optional

import typer

from stylize.engine.errors import UserError
from stylize.models.weights import SAMPLE_CONTENT, SAMPLE_STYLE

from .cli_options import user_errors, with_settings
from .settings import Settings

BUILT_IN = {
    "demo": "stylize.cli:demo_app",
    "batch": "stylize.batch:app",
    "export": "stylize.export_cli:app",
}
ENTRY_POINT_GROUP = "stylize.commands"

app = typer.Typer(add_completion=False, rich_markup_mode=None, pretty_exceptions_enable=False)
demo_app = typer.Typer(add_completion=False, rich_markup_mode=None, pretty_exceptions_enable=False)


def subcommands() -> dict[str, str]:
    """Subcommand name → "module:attribute" of its typer app: built-ins, then installed clients."""
    found = dict(BUILT_IN)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        found.setdefault(ep.name, ep.value)
    return found


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


def run_single(content: Path, style: Path | list[Path], output: Path, settings: Settings, quiet: bool) -> None:
    from .api import stylize_file

    bar = ProgressBar(len(settings.levels), enabled=not quiet and sys.stderr.isatty())
    try:
        result = stylize_file(content, style, output, settings, progress=bar)
    finally:
        bar.close()
    if not quiet:
        w, h = result.size
        typer.echo(f"wrote {result.output} ({w}x{h}) in {result.seconds:.1f}s")


@app.command(epilog="Subcommands: stylize demo | batch | export | bench | train (each has --help).")
@with_settings
def stylize(
    content: Path = typer.Argument(..., metavar="CONTENT", help="photo to stylize"),
    styles: List[Path] = typer.Argument(..., metavar="STYLE...", help="painting whose style to transfer; several "
                                        "are mixed (see --style-weights)"),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="PNG, JPEG or TIFF (by extension), or a "
                                          "folder; default CONTENT_x_STYLE.png in the current folder"),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="no progress bar or summary"),
    *, settings: Settings,
):
    """Paint CONTENT in the style of STYLE (or a mix of several), at any resolution, in bounded memory."""
    from .batch import sigterm_as_interrupt

    with user_errors(), sigterm_as_interrupt():  # a `kill` cleans up like Ctrl-C: no .part file left
        if os.path.isdir(content):  # os.path: False, not OSError, for a name too long to exist
            raise UserError(f"content {content}: is a folder; for every photo in it: stylize batch {content} "
                            "STYLE... -o OUT_DIR")
        named = f"{content.stem}_x_{'+'.join(s.stem for s in styles)}.png"
        output = output / named if output is not None and os.path.isdir(output) else output or Path(named)
        run_single(content, styles, output, settings, quiet)


@demo_app.command()
def demo(output: Path = typer.Option(Path("out/demo.jpg"), "-o", "--output"),
         res: Optional[str] = typer.Option(None, "--res", help="output long side (default: the sample's 4K)"),
         quiet: bool = typer.Option(False, "-q", "--quiet")):
    """Stylize the bundled sample pair (fetched and verified like the weights) with the defaults."""
    from stylize.engine.atomic import output_folder
    from stylize.models.weights import resolve

    with user_errors():
        settings = Settings(resolution=res)
        content, style = resolve(SAMPLE_CONTENT), resolve(SAMPLE_STYLE)
        output = output / "demo.jpg" if os.path.isdir(output) else output  # a folder, as the main command takes
        output_folder(output.parent)
        run_single(content, style, output, settings, quiet)


def main(argv: list[str] | None = None) -> None:
    if argv is None:  # a real process of ours, not a caller's: tune its allocator (see stylize.allocator)
        from .allocator import reexec_with_tunables

        reexec_with_tunables("stylize.cli", sys.argv[1:])
    argv = list(sys.argv[1:] if argv is None else argv) or ["--help"]  # bare `stylize`: what it takes
    commands = subcommands()
    if argv == ["--version"]:
        from importlib.metadata import version

        typer.echo(f"stylize {version('stylize')}")
        raise SystemExit(0)
    if argv[0] not in commands and not argv[0].startswith("-") and not os.path.lexists(argv[0]):
        near = difflib.get_close_matches(argv[0], list(commands), n=1, cutoff=0.75)
        if near and not Path(argv[0]).suffix:  # 'stylize bach photos/ ...': a command, mistyped
            typer.echo(f"error: content {argv[0]}: no such file (did you mean 'stylize {near[0]}'?)", err=True)
            raise SystemExit(2)
    if argv[0] in commands:
        module, _, attr = commands[argv[0]].partition(":")
        try:
            sub = getattr(importlib.import_module(module), attr)
        except ImportError as e:
            typer.echo(f"error: 'stylize {argv[0]}' is unavailable: {e}", err=True)
            raise SystemExit(2)
        run_command(sub, argv[1:], f"stylize {argv[0]}")
    else:
        run_command(app, argv, "stylize")


def run_command(command, args: list[str], prog: str) -> None:
    """Run a typer app, its usage errors (a bad value, a missing argument, an unknown option)
    in the one-line ``error:`` form of every other user mistake, exit 2."""
    from .cli_options import one_line

    try:
        code = command(args=args, prog_name=prog, standalone_mode=False)
    except typer.Abort:  # Ctrl-C before a command's own handler
        typer.echo("interrupted: no output was written", err=True)
        raise SystemExit(130) from None
    except Exception as e:
        # Click's usage errors (vendored by newer typer, so matched by what they offer)
        if not (hasattr(e, "format_message") and isinstance(getattr(e, "exit_code", None), int)):
            raise
        typer.echo(f"error: {one_line(e.format_message()).rstrip('.')} (see '{prog} --help')", err=True)
        raise SystemExit(e.exit_code) from None
    raise SystemExit(code if isinstance(code, int) else 0)  # typer.Exit(n) is returned here, not raised


if __name__ == "__main__":
    main()
