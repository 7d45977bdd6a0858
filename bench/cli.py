"""``stylize bench`` and ``python -m stylize.bench``: one command, the same options, one function.

    python -m stylize.bench --res 1k,2k,4k --out out/bench
    stylize bench --res 1k,2k --models cd16x,vgg19 --backends torch --modes whole --devices cpu

Each axis is a comma list; see --help. The options map one to one onto
:class:`bench.suite.SuiteOptions` and :func:`bench.suite.run_suite` does the work.
"""
from __future__ import annotations

import shlex
from pathlib import Path
from typing import Optional

import typer

from stylize.models.weights import SAMPLE_CONTENT, SAMPLE_STYLE

app = typer.Typer(add_completion=False, rich_markup_mode=None, pretty_exceptions_enable=False)


def _command_line(ctx: typer.Context) -> str:
    """The command as the user typed it (options given on the command line, in a canonical
    order), without the interpreter's path, so results files name no path of this machine."""
    words = [ctx.find_root().info_name or "python -m stylize.bench"]
    for p in ctx.command.params:
        source = ctx.get_parameter_source(p.name)
        if source is None or source.name != "COMMANDLINE":
            continue
        value = ctx.params[p.name]
        if getattr(p, "is_flag", False):
            words.append(p.opts[0] if value else (p.secondary_opts or p.opts)[0])
        else:
            words += [p.opts[0], shlex.quote(str(value))]
    return " ".join(words)


@app.command()
def bench(
    ctx: typer.Context,
    res: str = typer.Option("1k,2k,4k", "--res", help="resolutions (long side): 1k, 2k, 4k, 8k, 16k or pixels"),
    out: Path = typer.Option(Path("out/bench"), "--out", help="folder for results.json, bench.md and the plots"),
    models: str = typer.Option("cd16x", "--models", help="cd16x, vgg19 (random weights where files are "
                               "missing, labelled so), or trained checkpoint files"),
    backends: str = typer.Option("auto", "--backends", help="torch, onnxruntime, tensorrt; auto: those installed"),
    modes: str = typer.Option("whole,tiled", "--modes", help="whole (one tile per level, where it fits) and/or "
                              "tiled; empty (\"\"): the paper pipeline only"),
    devices: str = typer.Option("auto", "--devices", "--device", help="cpu, cuda; auto: cpu, and cuda if present"),
    levels: str = typer.Option("5,4,3,2,1", "--levels", help="WCT levels, coarse to fine"),
    repeats: int = typer.Option(3, "--repeats", "-n", min=1, help="timed runs per cell (the median is reported)"),
    warmup: int = typer.Option(1, "--warmup", min=0, help="untimed runs before them"),
    single_run_from: Optional[str] = typer.Option("4k", "--single-run-from", help="CPU cells this large or larger "
                                                  "run once without warm-up ('none': never)"),
    tile: int = typer.Option(1024, "--tile", min=16, help="tiled mode: tile side in px"),
    max_memory: Optional[str] = typer.Option(None, "--max-memory", help="tiled mode: let the engine plan tiles "
                                             "under this budget (e.g. 2G) instead of --tile"),
    style_res: Optional[str] = typer.Option("512", "--style-res", help="style long side in every cell"),
    baseline: bool = typer.Option(True, "--baseline/--no-baseline", help="the paper's pipeline at each "
                                  "resolution and device"),
    baseline_model: str = typer.Option("cd16x", "--baseline-model"),
    max_baseline_res: Optional[str] = typer.Option("4k", "--max-baseline-res", help="skip the paper pipeline "
                                                   "above this ('none': always run it)"),
    timeout: float = typer.Option(3600, "--timeout", help="seconds per cell before it is recorded as a timeout"),
    memory_cap: str = typer.Option("auto", "--memory-cap", help="CPU cells: address space a child may add after "
                                   "start-up (auto: memory available at start; 'none': no cap)"),
    half: bool = typer.Option(False, "--half", help="fp16 convolutions on CUDA"),
    append: bool = typer.Option(False, "--append", help="keep the cells of an earlier run in --out"),
    content: str = typer.Option(SAMPLE_CONTENT, "--content", help="content image: file or registry key"),
    style: str = typer.Option(SAMPLE_STYLE, "--style", help="style image: file or registry key"),
    weights_dir: Optional[Path] = typer.Option(None, "--weights-dir"),
    quiet: bool = typer.Option(False, "-q", "--quiet", help="no per-cell progress lines"),
):
    """Latency and peak memory across resolutions, models, backends, modes and devices."""
    from stylize.cli_options import user_errors
    from stylize.settings import parse_levels

    from .report import results_table
    from .suite import SuiteOptions, run_suite

    none = lambda v: None if v is None or v.lower() == "none" else v  # noqa: E731
    with user_errors():
        opts = SuiteOptions(
            res=res.split(","), models=models.split(","), backends=backends.split(","), modes=modes.split(","),
            devices=devices.split(","), levels=parse_levels(levels), repeats=repeats, warmup=warmup,
            single_run_from=none(single_run_from), tile=tile, max_memory=max_memory, style_res=none(style_res),
            baseline=baseline, baseline_model=baseline_model, max_baseline_res=none(max_baseline_res),
            timeout=timeout, memory_cap=memory_cap, half=half, append=append, content=content, style=style,
            weights_dir=str(weights_dir) if weights_dir else None, command=_command_line(ctx))
        data = run_suite(opts, out, log=(lambda m: None) if quiet else (lambda m: typer.echo(m, err=True)))
    typer.echo(results_table(data))
    typer.echo(f"\nwrote {out / 'results.json'}, {out / 'bench.md'}, {out / 'time_vs_mp.png'}, "
               f"{out / 'memory_vs_mp.png'}")
