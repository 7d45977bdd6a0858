"""What a run takes and gives back: style inputs, progress callbacks, the run's report and
result, and the checks that turn arrays into stores. Kept apart from the engine's passes
(:mod:`stylize.engine.stylizer`) so that the API layer and tests can name them alone."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from .memory import LevelPlan
from .store import RamStore, Store
from .wct import Moments

# progress(level, phase, done, total): phase is "style", "stats" or "render".
Progress = Callable[[int, str, int, int], None]
StyleStats = dict[int, Moments]
StyleInput = np.ndarray | Store | StyleStats  # a style image (3, H, W), in RAM or a store, or its statistics


@dataclass
class RunReport:
    """What a run did, for logs, benchmarks and tests."""

    plans: list[LevelPlan]
    tiles: int = 0
    stroke_factor: float = 1.0  # 1: native; > 1: coarse levels ran this many times smaller
    working_size: tuple[int, int] | None = None  # (h, w) the coarse levels ran at, when not native


@dataclass
class Stylized:
    """A result and how it was made. ``image`` is (3, H, W) float32 in [0, 1] when the content
    was an array; for a store input the result is ``store`` (values not yet clamped: writers
    clamp as they encode) and ``image`` is its array when that store is in RAM."""

    image: np.ndarray | None
    report: RunReport
    store: Store | None = None


def ram_bytes(*images) -> int:
    """Bytes of the given images (arrays, stores, statistics, None) that live in RAM."""
    arrays = [x.array if isinstance(x, RamStore) else x for x in images]
    return sum(a.nbytes for a in arrays if isinstance(a, np.ndarray))


def as_store(image: np.ndarray | Store, role: str) -> Store:
    """An image in RAM or a store, as a store, checked to be (3, H, W): an (H, W, 3) array would
    otherwise reach the first convolution as H channels."""
    store = RamStore(image) if isinstance(image, np.ndarray) else image
    if not hasattr(store, "shape"):
        raise TypeError(f"{role}: the engine takes a (3, H, W) float32 array or a store, got {type(image).__name__} "
                        "(stylize.stylize and stylize.style_statistics read paths, PIL images and tensors)")
    if len(store.shape) != 3 or store.shape[0] != 3 or 0 in store.shape:
        raise ValueError(f"{role}: the engine takes (3, H, W) images, got shape {tuple(store.shape)} "
                         "(stylize.stylize converts other layouts)")
    return store
