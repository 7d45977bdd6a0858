"""Training module: decoders, collaborative distillation of small encoders, small decoders.

Python entry points: :func:`recipes.fit` (what ``stylize train`` runs), the trainers in
:mod:`.trainers`, the shared loop in :mod:`.loop`. Checkpoints load as engine models:
``stylize.Settings(model="student.pt")``.
"""
from .checkpoint import merge_models
from .data import DataError, RandomCrops, list_images
from .loop import TrainConfig, train
from .recipes import TASKS, fit, make_task
from .trainers import DecoderTrainer, EncoderDistiller, SmallDecoderTrainer

__all__ = [
    "DataError", "DecoderTrainer", "EncoderDistiller", "RandomCrops", "SmallDecoderTrainer", "TASKS",
    "TrainConfig", "fit", "list_images", "make_task", "merge_models", "train",
]
