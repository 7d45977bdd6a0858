"""``stylize train {decoder,encoder,small-decoder,merge}``: the training module from the shell.

Each command writes one checkpoint that is both a model (``stylize --model CKPT``) and a
resumable run (``--resume``), plus ``CKPT.log.jsonl`` and ``CKPT.loss.png`` beside it.
User mistakes print one ``error:`` line and exit 2 (STYLIZE_DEBUG=1 shows the traceback).
"""
from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path
from typing import List, Optional

import typer

app = typer.Typer(add_completion=False, rich_markup_mode=None, pretty_exceptions_enable=False,
                  help="Train decoders, distil small encoders (collaborative distillation) and their decoders.")


@contextmanager
def user_errors():
    from ...engine.errors import UserError

    try:
        yield
    except KeyboardInterrupt:
        typer.echo("interrupted: the last saved checkpoint can be resumed with --resume", err=True)
        raise typer.Exit(130)
    except (UserError, ValueError, OSError, RuntimeError) as e:  # OSError: a full disk, a folder it cannot write
        if os.environ.get("STYLIZE_DEBUG"):
            raise
        text = str(e).strip()
        typer.echo(f"error: {text.splitlines()[0] if text else type(e).__name__}", err=True)
        raise typer.Exit(2)


def _run(kind: str, data: Path, level: int, steps: int, output: Path, batch_size: int, crop: int,
         lr: float, seed: int, device: str, resume: bool, save_every: int, quiet: bool, **task_options):
    from .loop import TrainConfig, curve_path, log_path
    from .recipes import fit

    with user_errors():
        config = TrainConfig(steps=steps, batch_size=batch_size, crop=crop, lr=lr, seed=seed, device=device,
                             save_every=save_every)
        history = fit(kind, data, output, config, resume=resume, level=level,
                      log=None if quiet else typer.echo, **task_options)
        if not quiet and history:
            first, last = history[0]["total"], history[-1]["total"]
            typer.echo(f"wrote {output} (loss {first:.4g} -> {last:.4g}), {log_path(output)}, {curve_path(output)}")


DATA = typer.Option(..., "--data", help="folder of training images (searched recursively)")
LEVEL = typer.Option(..., "--level", help="WCT level k (encoder ends at relu{k}_1)")
STEPS = typer.Option(..., "--steps", help="total optimisation steps (a resumed run continues to this)")
OUTPUT = typer.Option(..., "-o", "--output", help="checkpoint to write (also a model for --model)")
BATCH = typer.Option(4, "--batch-size", min=1)
CROP = typer.Option(128, "--crop", min=8, help="square crop side in px")
LR = typer.Option(1e-4, "--lr", help="Adam learning rate")
SEED = typer.Option(0, "--seed")
DEVICE = typer.Option("auto", "--device", help="auto, cpu, cuda or cuda:N")
RESUME = typer.Option(False, "--resume", help="continue the run saved in --output")
CRD = typer.Option(0.0, "--crd", min=0.0, help="weight of the content-relationship term (0: off)")
SAVE = typer.Option(100, "--save-every", min=1, help="checkpoint every N steps (and at the end)")
QUIET = typer.Option(False, "-q", "--quiet")
WEIGHTS = typer.Option(None, "--weights-dir", help="folder holding weight files")


@app.command("decoder")
def decoder(data: Path = DATA, level: int = LEVEL, steps: int = STEPS, output: Path = OUTPUT,
            teacher: Optional[str] = typer.Option(None, "--teacher", help="model whose encoder is frozen: "
                                                  "vgg19 (default), cd16x or a checkpoint; a resumed run "
                                                  "keeps its own"),
            batch_size: int = BATCH, crop: int = CROP, lr: float = LR, seed: int = SEED, device: str = DEVICE,
            resume: bool = RESUME, crd: float = CRD, save_every: int = SAVE,
            weights_dir: Optional[Path] = WEIGHTS, quiet: bool = QUIET):
    """Train a decoder (random init) that inverts the frozen level-k encoder of --teacher."""
    _run("decoder", data, level, steps, output, batch_size, crop, lr, seed, device, resume, save_every, quiet,
         teacher=teacher, crd=crd, weights_dir=weights_dir)


@app.command("encoder")
def encoder(data: Path = DATA, level: int = LEVEL, steps: int = STEPS, output: Path = OUTPUT,
            teacher: Optional[str] = typer.Option(None, "--teacher", help="vgg19 (default), cd16x or a "
                                                  "checkpoint; a resumed run keeps its own"),
            width_ratio: float = typer.Option(0.25, "--width-ratio", help="student width / teacher width"),
            batch_size: int = BATCH, crop: int = CROP, lr: float = LR, seed: int = SEED, device: str = DEVICE,
            resume: bool = RESUME, crd: float = CRD, save_every: int = SAVE,
            weights_dir: Optional[Path] = WEIGHTS, quiet: bool = QUIET):
    """Collaborative distillation: a small encoder (L1-pruned from the teacher) that works with the
    frozen teacher decoder; the checkpoint stylizes with the teacher decoder folded in."""
    _run("encoder", data, level, steps, output, batch_size, crop, lr, seed, device, resume, save_every, quiet,
         teacher=teacher, width_ratio=width_ratio, crd=crd, weights_dir=weights_dir)


@app.command("small-decoder")
def small_decoder(data: Path = DATA, level: int = LEVEL, steps: int = STEPS, output: Path = OUTPUT,
                  encoder: str = typer.Option(..., "--encoder", help="checkpoint of 'stylize train encoder'"),
                  teacher: Optional[str] = typer.Option(None, "--teacher", help="perceptual-loss model "
                                                        "(default: the encoder checkpoint's teacher)"),
                  batch_size: int = BATCH, crop: int = CROP, lr: float = LR, seed: int = SEED,
                  device: str = DEVICE, resume: bool = RESUME, crd: float = CRD, save_every: int = SAVE,
                  weights_dir: Optional[Path] = WEIGHTS, quiet: bool = QUIET):
    """Train a decoder as narrow as the small encoder (L1-pruned from its current decoder)."""
    _run("small-decoder", data, level, steps, output, batch_size, crop, lr, seed, device, resume, save_every,
         quiet, encoder=encoder, teacher=teacher, crd=crd, weights_dir=weights_dir)


@app.command("merge")
def merge(inputs: List[Path] = typer.Argument(..., help="single-level checkpoints of one student"),
          output: Path = OUTPUT):
    """Combine single-level checkpoints into one multi-level model (training state dropped)."""
    from ...imageio import same_file
    from .checkpoint import merge_models

    with user_errors():
        missing = [str(p) for p in inputs if not p.is_file()]
        if missing:
            raise ValueError(f"not found: {', '.join(missing)}")
        if any(same_file(output, p) for p in inputs):
            raise ValueError(f"{output} is one of the checkpoints to merge (its training state would be lost): "
                             "choose another output path")
        spec = merge_models(inputs, output)
        typer.echo(f"wrote {output} ({spec['name']})")
