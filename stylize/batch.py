"""``stylize batch PHOTOS_DIR STYLE [STYLE ...] -o OUT_DIR``: a thin layer over :mod:`stylize.batch_runner`
(or, with ``--ray ADDRESS`` / ``--workers N``, over :mod:`stylize.batch_ray`: same plan, report and exit codes).

Exit codes: 0 every pair done or already complete; 1 some pair failed (see the summary and
the report); 2 a usage error (nothing was computed); 130 interrupted (rerun to finish).
SIGTERM (``kill``, a job scheduler's timeout) stops the batch as cleanly as Ctrl-C. A SIGINT
that the parent shell told us to ignore (a background job without job control) stays ignored.
"""
from __future__ import annotations

import signal
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import List, Optional

import typer

from .batch_files import FORMATS
from .cli_options import user_errors, with_settings
from .settings import Settings

app = typer.Typer(add_completion=False, rich_markup_mode=None, pretty_exceptions_enable=False)


class BatchBar:
    """One bar over the pairs to compute, with ETA; failures are printed above it as they happen."""

    def __init__(self, total: int, quiet: bool):
        from tqdm import tqdm

        enabled = not quiet and sys.stderr.isatty()
        self.log_lines = not quiet and not enabled  # no terminal: one line per result, for logs
        self.total, self.count = total, 0
        self.bar = tqdm(total=total, unit="img", disable=not enabled, dynamic_ncols=True,
                        bar_format="{l_bar}{bar} {n_fmt}/{total_fmt} [{elapsed}<{remaining}, {rate_fmt}]{postfix}")

    def start(self, pair) -> None:
        self.bar.set_postfix_str(f"{pair.photo} × {pair.style.stem}")

    def result(self, r) -> None:
        self.count += 1
        if r.status == "failed":
            self.bar.write(f"[{self.count}/{self.total}] failed: {r.pair.photo} × {r.pair.style.stem}: {r.reason}",
                           file=sys.stderr)
        elif self.log_lines:
            self.bar.write(f"[{self.count}/{self.total}] done: {r.pair.output} ({r.compute_seconds:.1f}s)",
                           file=sys.stderr)
        self.bar.update(1)

    def close(self) -> None:
        self.bar.close()


@contextmanager
def sigterm_as_interrupt():
    """A plain ``kill`` would end the process between two writes with no summary; make it a Ctrl-C."""
    def interrupt(signum, frame):
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread (embedded use): leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@app.command()
@with_settings(hidden=("style_weights",))  # each style is applied on its own
def batch(
    photos_dir: Path = typer.Argument(..., metavar="PHOTOS_DIR", help="folder of photos (walked recursively)"),
    styles: List[Path] = typer.Argument(..., metavar="STYLE...", help="one or more paintings"),
    out_dir: Path = typer.Option(..., "-o", "--output", metavar="OUT_DIR",
                                 help="output folder (created; mirrors PHOTOS_DIR)"),
    fmt: str = typer.Option("png", "--format", help=f"output format: {', '.join(FORMATS)} (jpeg, tiff too)"),
    overwrite: bool = typer.Option(False, "--overwrite", help="redo outputs that already exist (default: skip)"),
    report: Optional[Path] = typer.Option(None, "--report", help="JSON-lines report, one line per pair "
                                          "(default OUT_DIR/batch-report.jsonl)"),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="no progress; still prints failures and the summary"),
    no_style_cache: bool = typer.Option(False, "--no-style-cache", hidden=True,
                                        help="recompute style statistics for every photo (benchmarks)"),
    no_overlap: bool = typer.Option(False, "--no-overlap", hidden=True,
                                    help="read, compute and write one after another (benchmarks)"),
    ray: Optional[str] = typer.Option(None, "--ray", metavar="ADDRESS",
                                      help="compute on a Ray cluster: 'local' (start one for this batch), 'auto' "
                                      "(the one 'ray start' runs on this machine) or HOST:PORT; needs "
                                      "pip install 'stylize[ray]'"),
    workers: Optional[int] = typer.Option(None, "--workers", metavar="N",
                                          help="Ray workers (alone: --ray local); default one per GPU, else one "
                                          "per node, each with a share of its CPUs"),
    *, settings: Settings,
):
    """Stylize every photo under PHOTOS_DIR with every STYLE into OUT_DIR.

    Photos are recognised by content, not only by extension (hidden files are skipped).
    Each result is OUT_DIR/<sub-folder>/<photo stem>__<style stem>.<format>, PNG by
    default. Outputs that already exist are complete (writes are atomic) and are skipped,
    so rerunning an interrupted batch finishes it. A bad file is reported and the batch
    goes on; the exit code is 1 if anything failed, 130 if interrupted. With --ray or
    --workers the pairs are computed by Ray workers (pip install 'stylize[ray]'): same
    outputs, report and exit codes.
    """
    from .batch_runner import Batch, BatchInterrupted

    on_ray = ray is not None or workers is not None
    with user_errors():
        kind, extra = Batch, {}
        if on_ray:  # Ray is optional: checked before any work
            from .batch_ray import RayBatch, require_ray

            require_ray()
            kind, extra = RayBatch, {"address": ray or "local", "workers": workers}
        plan = kind(photos_dir, styles, out_dir, settings, fmt=fmt, overwrite=overwrite, report_path=report,
                    cache_style=not no_style_cache, overlap_io=not no_overlap, **extra)
        if not quiet:
            typer.echo(f"{len(plan.pairs)} pair(s) ({len(plan.pairs) // len(plan.styles)} photo(s) × "
                       f"{len(plan.styles)} style(s)): {len(plan.pending)} to do, "
                       f"{len(plan.skipped)} already done", err=True)
        bar = BatchBar(len(plan.pending), quiet)
        try:
            with sigterm_as_interrupt():
                summary = plan.run(on_result=bar.result, on_start=bar.start)
        except BatchInterrupted as stop:
            summary = stop.summary
        finally:
            bar.close()
    if on_ray and not quiet and plan.placement:
        typer.echo(f"ray: {plan.placement.describe()}; {plan.lost} lost and replaced, {plan.retried} pair(s) "
                   "retried", err=True)
    for line in summary.lines():
        typer.echo(line)
    if summary.interrupted or summary.failed:  # (typer.Exit is a RuntimeError: raise it outside user_errors)
        raise typer.Exit(130 if summary.interrupted else 1)
