"""The one training loop the three trainers share: Adam, checkpoints, resume, loss log and curve.

A trainer (a :class:`Task`) only says which parameters learn, what the losses of a batch
are and how its weights become an engine model; everything about running — the device,
deterministic batches, saving, resuming, logging — lives here once. A checkpoint is at the
same time a loadable model (``models.zoo`` reads its ``family``/``levels``) and a resumable
training state (its ``training`` entry), so there is never a separate export step.

Resuming reloads weights, optimiser state and the loss history, and batches depend only on
(seed, step): N steps in one go and N/2 + N/2 resumed give the same curve.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Protocol

import torch

from ...engine.atomic import atomic_path
from ...engine.backend import resolve_device
from ..zoo import CHECKPOINT_FORMAT
from .data import RandomCrops

Log = Callable[[str], None]


@dataclass
class TrainConfig:
    steps: int
    batch_size: int = 4
    crop: int = 128
    resize: int | None = None
    lr: float = 1e-4
    seed: int = 0
    device: str = "auto"
    log_every: int = 10
    save_every: int = 100


class Task(Protocol):
    """A trainer: what learns, from which losses, and how it becomes an engine model."""

    name: str

    def modules(self) -> torch.nn.ModuleDict:
        """The trainable modules (their state is what a resume restores)."""

    def initialise(self, batch: torch.Tensor) -> None:
        """Data-dependent initialisation, run once before the first step of a fresh run."""

    def losses(self, batch: torch.Tensor) -> dict[str, torch.Tensor]:
        """Weighted loss terms of a batch; ``"total"`` is what is minimised."""

    def export(self) -> tuple[dict, dict]:
        """(family spec, {level: {"encoder": named state, "decoder": named state}})."""

    def meta(self) -> dict:
        """Plain facts worth keeping in the checkpoint (teacher, ratio, loss weights)."""

    def to(self, device: torch.device) -> Task: ...


def log_path(checkpoint: Path) -> Path:
    return checkpoint.with_suffix(".log.jsonl")


def curve_path(checkpoint: Path) -> Path:
    return checkpoint.with_suffix(".loss.png")


def _to_cpu(obj):
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu()
    if isinstance(obj, dict):
        return {k: _to_cpu(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(_to_cpu(v) for v in obj)
    return obj


def save_checkpoint(path: Path, task: Task, optimizer: torch.optim.Optimizer, step: int, history: list[dict],
                    config: TrainConfig) -> None:
    """Write model + training state atomically (a crash never leaves half a checkpoint)."""
    spec, levels = task.export()
    ckpt = {
        "format": CHECKPOINT_FORMAT, "family": spec, "levels": _to_cpu(levels),
        "training": {"task": task.name, "step": step, "config": asdict(config), "meta": task.meta(),
                     "modules": _to_cpu(task.modules().state_dict()), "optimizer": _to_cpu(optimizer.state_dict()),
                     "history": history},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:  # removed, not left beside it, when the save fails
        torch.save(ckpt, tmp)


def read_training_state(path: Path, task_name: str) -> dict:
    """The ``training`` entry of a checkpoint written by the trainer ``task_name``."""
    from ..zoo import read_checkpoint

    training = read_checkpoint(path).get("training")
    if not training:
        raise ValueError(f"{path} holds a model but no training state: cannot resume from it")
    if training["task"] != task_name:
        raise ValueError(f"{path} was written by the '{training['task']}' trainer, not '{task_name}'")
    return training


def write_curve(history: list[dict], path: Path, title: str) -> None:
    """Loss curve (log scale): the total and each term, against the step."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    steps = [h["step"] for h in history]
    window = max(1, len(history) // 40)  # per-step losses are noisy: draw them faint, a running mean solid
    for key in history[0]:
        if key in ("step", "seconds"):
            continue
        values = [h[key] for h in history]
        line, = ax.plot(steps, values, alpha=0.3 if window > 1 else 1.0, linewidth=1.0)
        smooth = [sum(values[max(0, i - window + 1):i + 1]) / len(values[max(0, i - window + 1):i + 1])
                  for i in range(len(values))]
        ax.plot(steps, smooth, color=line.get_color(), label=key, linewidth=2.0 if key == "total" else 1.2)
    ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (weighted)")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def train(task: Task, data: RandomCrops, config: TrainConfig, checkpoint: str | os.PathLike, *,
          resume: bool = False, log: Log | None = None) -> list[dict]:
    """Run (or continue) ``task`` to ``config.steps`` steps; returns the loss history.

    One history entry per step: ``{"step", "total", <terms>..., "seconds"}``; it is mirrored
    to ``CKPT.log.jsonl`` as it grows (from the first save, when the run starts over an earlier
    checkpoint: that one's log stays until then) and drawn to ``CKPT.loss.png`` at every save.
    """
    checkpoint = Path(checkpoint)
    device = resolve_device(config.device)
    task.to(device)
    params = [p for p in task.modules().parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=config.lr)
    history: list[dict] = []
    start = 0
    if resume:
        state = read_training_state(checkpoint, task.name)
        task.modules().load_state_dict(state["modules"])
        optimizer.load_state_dict(state["optimizer"])
        start, history = state["step"], list(state["history"])
        if log:
            log(f"resumed {checkpoint} at step {start}")
    else:
        torch.manual_seed(config.seed)
        task.initialise(data.batch(0, config.batch_size, stream=1).to(device))
    if start >= config.steps:
        if log:
            log(f"already at step {start} of {config.steps}: nothing to do")
        return history

    log_file = log_path(checkpoint)
    log_file.parent.mkdir(parents=True, exist_ok=True)

    def restart_log():
        """The log rewritten from the history (a resume never duplicates steps), open to append."""
        with atomic_path(log_file) as tmp:
            tmp.write_text("".join(json.dumps(h) + "\n" for h in history))
        return open(log_file, "a")

    # A fresh run over an earlier checkpoint keeps that checkpoint until its first save, and
    # that checkpoint's log with it: the log is rewritten then, not before.
    f = None if not resume and checkpoint.exists() else restart_log()
    title = f"{task.name} level {task.meta().get('level')}: {checkpoint.name}"

    t0 = time.perf_counter() - (history[-1]["seconds"] if history else 0.0)  # wall time adds up over resumes
    try:
        for step in range(start, config.steps):
            batch = data.batch(step, config.batch_size).to(device)
            terms = task.losses(batch)
            optimizer.zero_grad(set_to_none=True)
            terms["total"].backward()
            optimizer.step()
            entry = {"step": step + 1, **{k: float(v.detach()) for k, v in terms.items()},
                     "seconds": round(time.perf_counter() - t0, 3)}
            history.append(entry)
            if f is not None:
                f.write(json.dumps(entry) + "\n")
                f.flush()
            done = step + 1
            if log and (done % config.log_every == 0 or done == config.steps):
                parts = " ".join(f"{k} {v:.4g}" for k, v in entry.items() if k not in ("step", "seconds"))
                log(f"step {done}/{config.steps} {parts} ({entry['seconds'] / done:.2f} s/step)")
            if done % config.save_every == 0 or done == config.steps:
                save_checkpoint(checkpoint, task, optimizer, done, history, config)
                if f is None:
                    f = restart_log()
                write_curve(history, curve_path(checkpoint), title)
    finally:
        if f is not None:
            f.close()
    return history
