"""The one protocol every executor implements: encode, transform, decode, per level.

The engine speaks only this protocol, so torch, onnxruntime and TensorRT differ in one
class each and the tiling, statistics and numerics are shared. Tensors crossing it are
torch tensors on ``backend.device``, (1, 3, H, W) RGB in [0, 1] or (1, C, h, w) features,
always float32 at the boundary: a backend may compute in fp16 inside, but statistics are
never taken in fp16.
"""
from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch

from models.architecture import LevelGeometry, VGGAutoencoderLevel

from .wct import apply_affine

NHWC = torch.channels_last


@runtime_checkable
class Backend(Protocol):
    name: str
    device: torch.device

    def levels(self) -> tuple[int, ...]: ...

    def geometry(self, level: int) -> LevelGeometry: ...

    def encode(self, level: int, image: torch.Tensor) -> torch.Tensor: ...

    def transform(self, level: int, features: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor: ...

    def decode(self, level: int, features: torch.Tensor) -> torch.Tensor: ...


def resolve_device(device: str | torch.device | None) -> torch.device:
    """'auto' (or None) picks CUDA when present; an unavailable device is a clear error."""
    if device in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but no CUDA GPU is available to torch")
    return dev


class TorchBackend:
    """Runs the PyTorch modules; fp16 convolutions on CUDA when ``half`` is set.

    Modules and tiles are channels-last (NHWC): oneDNN's and cuDNN's fast convolution paths
    want that layout, and with NCHW every conv pays a layout reorder. On this project's
    2-core CPU that is about twice as fast; the result differs only by fp32 rounding order.
    """

    name = "torch"

    def __init__(self, modules: dict[int, VGGAutoencoderLevel], device: str | torch.device | None = "cpu",
                 half: bool = False):
        self.device = resolve_device(device)
        if half and self.device.type != "cuda":
            raise ValueError("--half needs a CUDA device: fp16 convolutions are slow or missing on CPU")
        self.dtype = torch.float16 if half else torch.float32
        self.modules = {k: m.to(self.device, self.dtype, memory_format=NHWC) for k, m in modules.items()}
        self._geometry = {k: m.geometry(dtype_bytes=2 if half else 4) for k, m in modules.items()}

    def levels(self) -> tuple[int, ...]:
        return tuple(self.modules)

    def geometry(self, level: int) -> LevelGeometry:
        return self._geometry[level]

    @torch.inference_mode()
    def encode(self, level: int, image: torch.Tensor) -> torch.Tensor:
        return self.modules[level].encode(image.to(self.device, self.dtype, memory_format=NHWC)).float()

    @torch.inference_mode()
    def transform(self, level: int, features: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return apply_affine(features.to(self.device), a.to(self.device), b.to(self.device))

    @torch.inference_mode()
    def decode(self, level: int, features: torch.Tensor) -> torch.Tensor:
        return self.modules[level].decode(features.to(self.device, self.dtype, memory_format=NHWC)).float()
