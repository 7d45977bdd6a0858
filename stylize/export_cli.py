"""``stylize export --model NAME -o DIR``: the ONNX files a deployment needs, checked and verified.

A single-command typer app, mounted by the main CLI as the ``export`` subcommand. Each file
is written atomically, passes ``onnx.checker`` (full check), and unless ``--no-verify`` is
given runs under onnxruntime at a size it was not traced at and is compared with torch.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

app = typer.Typer(add_completion=False, rich_markup_mode=None, pretty_exceptions_enable=False)


@app.command()
def export(
    output: Path = typer.Option(..., "-o", "--output", help="folder for the .onnx files (created if missing)"),
    model: str = typer.Option("cd16x", "--model", help="cd16x or vgg19"),
    levels: Optional[str] = typer.Option(None, "--levels", help="comma list, default every level of the model"),
    half: bool = typer.Option(False, "--half", help="fp16 graphs (float32 inputs and outputs)"),
    padding: str = typer.Option("reflect", "--padding", help="reflect: ONNX Pad(mode=reflect); "
                                "slice: the same values as Slice+Concat, for runtimes without reflect Pad"),
    opset: int = typer.Option(17, "--opset", min=17, help="ONNX opset (17 to the newest this PyTorch exports, 23 for torch 2.13)"),
    weights_dir: Optional[Path] = typer.Option(None, "--weights-dir", help="folder holding weight files"),
    verify: bool = typer.Option(True, "--verify/--no-verify", help="compare each graph with torch"),
    quiet: bool = typer.Option(False, "-q", "--quiet"),
):
    """Write each level's encoder and decoder as ONNX (dynamic height and width) with metadata."""
    from stylize.export.onnx_export import export_model

    from .cli_options import user_errors
    from .settings import parse_levels

    with user_errors():
        chosen = parse_levels(levels) if levels else None
        files = export_model(model, output, levels=chosen, weights_dir=weights_dir,
                             precision="fp16" if half else "fp32", padding=padding, opset=opset, verify=verify)
        if not quiet:
            for f in files:
                size = f.path.stat().st_size / 2**20
                typer.echo(f"{f.path}  {f.model} level {f.level} {f.part} {f.precision} opset {f.opset} "
                           f"{size:.1f} MiB  weights {f.weights_sha256[:12]}  checker ok"
                           f"{'  verified against torch' if verify else ''}")
