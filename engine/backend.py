"""The one protocol every executor implements: encode, transform, decode, per level.

The engine speaks only this protocol, so torch, onnxruntime and TensorRT differ in one
class each (in :mod:`stylize.export`, the runtimes layer) and the tiling, statistics and
numerics here are shared. Tensors crossing it are
torch tensors on ``backend.device``, (1, 3, H, W) RGB in [0, 1] or (1, C, h, w) features,
always float32 at the boundary: a backend may compute in fp16 inside, but statistics are
never taken in fp16.
"""
from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch


from .errors import UserError
from .geometry import LevelGeometry


@runtime_checkable
class Backend(Protocol):
    name: str
    device: torch.device

    def levels(self) -> tuple[int, ...]: ...

    def geometry(self, level: int) -> LevelGeometry: ...

    def encode(self, level: int, image: torch.Tensor) -> torch.Tensor: ...

    def transform(self, level: int, features: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor: ...

    def decode(self, level: int, features: torch.Tensor) -> torch.Tensor: ...


DEVICE_TYPES = ("cpu", "cuda")  # what the runtimes run on


def parse_device(device: str | torch.device | None) -> torch.device | None:
    """The device named (None for 'auto'), without asking whether it is present: what can be
    checked on a machine that will hand the work to another (a Ray head without a GPU)."""
    if device in (None, "auto"):
        return None
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError):
        dev = None
    if dev is None or dev.type not in DEVICE_TYPES:
        raise UserError(f"unknown device '{device}': use auto, cpu, cuda or cuda:N")
    return dev


def resolve_device(device: str | torch.device | None) -> torch.device:
    """'auto' (or None) picks CUDA when present; an unavailable device is a clear error."""
    dev = parse_device(device)
    if dev is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UserError("device 'cuda' requested but no CUDA GPU is available to torch")
    if dev.type == "cuda" and (dev.index or 0) >= torch.cuda.device_count():
        raise UserError(f"device '{device}': torch sees {torch.cuda.device_count()} CUDA GPU(s)")
    return dev
