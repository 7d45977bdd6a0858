"""From names to a running trainer: which teacher, which student, which data — one call each.

The command line and scripts both go through :func:`make_task` and :func:`fit`, so a run
from Python and the same run from ``stylize train`` are the same run.
"""
from __future__ import annotations

import os
from pathlib import Path

from ...engine.atomic import output_folder
from ...imageio import same_file
from ..zoo import get_family, load_levels, read_checkpoint
from .data import RandomCrops
from .loop import Log, Task, TrainConfig, train
from .trainers import DecoderTrainer, EncoderDistiller, SmallDecoderTrainer

TASKS = ("decoder", "encoder", "small-decoder")
DEFAULT_TEACHER = "vgg19"
CHECKPOINT_SUFFIXES = (".pt", ".pth")


def _level_of(model: str, level: int, weights_dir):
    return get_family(model), load_levels(model, (level,), weights_dir)[level]


def recorded_teacher(encoder_checkpoint: str | os.PathLike) -> str | None:
    """The teacher an encoder checkpoint was distilled from, if it says."""
    training = read_checkpoint(encoder_checkpoint).get("training") or {}
    return training.get("meta", {}).get("teacher")


def make_task(kind: str, *, level: int, teacher: str | None = None, encoder: str | None = None,
              width_ratio: float = 0.25, crd: float = 0.0, seed: int = 0,
              weights_dir: str | os.PathLike | None = None) -> Task:
    """A trainer for one level.

    - ``decoder``: a decoder for the encoder of ``teacher`` (a family name or checkpoint);
    - ``encoder``: a student of ``teacher`` at ``width_ratio`` of its width;
    - ``small-decoder``: a narrow decoder for ``encoder`` (a checkpoint of the ``encoder``
      trainer, or any model), perceptual features from ``teacher`` (default: the one
      recorded in the encoder checkpoint).
    """
    if kind not in TASKS:
        raise ValueError(f"unknown trainer '{kind}': choose one of {', '.join(TASKS)}")
    if not 1 <= level <= 5:
        raise ValueError(f"level must be 1..5, got {level}")
    if kind == "small-decoder":
        if not encoder:
            raise ValueError("the small-decoder trainer needs --encoder (a checkpoint of the encoder trainer)")
        if not Path(encoder).is_file():
            raise ValueError(f"encoder checkpoint not found: {encoder}")
        teacher = teacher or recorded_teacher(encoder) or DEFAULT_TEACHER
    teacher = teacher or DEFAULT_TEACHER
    facts = {"teacher": str(teacher)}
    if kind == "decoder":
        family, module = _level_of(teacher, level, weights_dir)
        return DecoderTrainer(family, module, seed=seed, crd=crd, facts=facts)
    if kind == "encoder":
        family, module = _level_of(teacher, level, weights_dir)
        return EncoderDistiller(family, module, width_ratio=width_ratio, crd=crd, facts=facts)
    family, student = _level_of(encoder, level, weights_dir)
    _, big = _level_of(teacher, level, weights_dir)
    return SmallDecoderTrainer(family, student, big, crd=crd, facts={**facts, "encoder": str(encoder)})


def _check_output(checkpoint: Path, data, task_options: dict) -> None:
    """Where the checkpoint goes, checked before any step: a file (not a folder), named as a
    checkpoint (``-o photo.jpg`` wrote one over the photo), outside the data folder (its log and
    curve would become training images) and not a checkpoint the run reads."""
    if checkpoint.is_dir():
        raise ValueError(f"{checkpoint} is a folder: -o takes the checkpoint file to write")
    if checkpoint.suffix.lower() not in CHECKPOINT_SUFFIXES:
        raise ValueError(f"{checkpoint}: a checkpoint is a {' or '.join(CHECKPOINT_SUFFIXES)} file")
    if not isinstance(data, RandomCrops) and checkpoint.resolve().is_relative_to(Path(data).resolve()):
        raise ValueError(f"{checkpoint} is inside the data folder {data}: the checkpoint, its log and its curve "
                         "would overwrite or become training images; write it elsewhere")
    for key in ("encoder", "teacher"):
        given = task_options.get(key)
        if given and Path(given).is_file() and same_file(given, checkpoint):
            raise ValueError(f"-o {checkpoint} is the --{key} checkpoint the run reads: write it elsewhere")
    output_folder(checkpoint.parent, "checkpoint folder")


def fit(kind: str, data: str | os.PathLike | RandomCrops, checkpoint: str | os.PathLike, config: TrainConfig, *,
        resume: bool = False, log: Log | None = None, **task_options) -> list[dict]:
    """Build the trainer and data, then train (or resume) to ``config.steps``; returns the loss history.

    On resume the saved configuration wins over ``config`` except for ``steps`` and
    ``device``: the same seed, batch and learning rate are what make the curve continue.
    """
    _check_output(Path(checkpoint), data, task_options)
    if resume:
        if not Path(checkpoint).is_file():
            raise ValueError(f"nothing to resume: {checkpoint} does not exist")
        training = read_checkpoint(checkpoint).get("training") or {}
        if training.get("config"):
            config = TrainConfig(**{**training["config"], "steps": config.steps, "device": config.device})
        meta = training.get("meta", {})
        if meta.get("level", task_options.get("level")) != task_options.get("level"):
            raise ValueError(f"{checkpoint} trains level {meta['level']}, not level {task_options.get('level')}")
        for key in ("teacher", "encoder"):  # the models it was trained against, as recorded
            given = task_options.get(key)
            if key in meta and given and str(given) != meta[key]:
                raise ValueError(f"{checkpoint} was trained with --{key} {meta[key]}, not {given}: "
                                 f"resume without --{key}, or start a new checkpoint")
        task_options.update({k: meta[k] for k in ("width_ratio", "crd", "teacher", "encoder") if k in meta})
    if config.steps < 1:
        raise ValueError(f"steps must be at least 1, got {config.steps}")
    if not isinstance(data, RandomCrops):
        data = RandomCrops.from_folder(data, config.crop, seed=config.seed, resize=config.resize)
    task = make_task(kind, seed=config.seed, **task_options)
    return train(task, data, config, checkpoint, resume=resume, log=log)
