"""The PyTorch runtime: the model's own modules, channels-last, on CPU or CUDA."""
from __future__ import annotations

import torch

from stylize.engine.backend import resolve_device
from stylize.engine.errors import UserError
from stylize.engine.geometry import LevelGeometry
from stylize.engine.memory import room_for
from stylize.engine.wct import apply_affine
from stylize.models.architecture import VGGAutoencoderLevel, output_bytes

NHWC = torch.channels_last


class TorchBackend:
    """Runs the PyTorch modules; fp16 convolutions on CUDA when ``half`` is set.

    Modules and tiles are channels-last (NHWC): oneDNN's and cuDNN's fast convolution paths
    want that layout, and with NCHW every conv pays a layout reorder. On this project's
    2-core CPU that is about twice as fast; the result differs only by fp32 rounding order.

    It steps through each stack layer by layer (what ``nn.Sequential`` does) so that the
    engine's memory ceiling for a CPU run is checked before each layer allocates
    (:func:`engine.memory.room_for`; no ceiling is set on CUDA).
    """

    name = "torch"

    def __init__(self, modules: dict[int, VGGAutoencoderLevel], device: str | torch.device | None = "cpu",
                 half: bool = False):
        self.device = resolve_device(device)
        if half and self.device.type != "cuda":
            raise UserError("--half needs a CUDA device: fp16 convolutions are slow or missing on CPU")
        self.dtype = torch.float16 if half else torch.float32
        self.modules = {k: m.to(self.device, self.dtype, memory_format=NHWC) for k, m in modules.items()}
        self._geometry = {k: m.geometry(dtype_bytes=2 if half else 4) for k, m in modules.items()}

    def levels(self) -> tuple[int, ...]:
        return tuple(self.modules)

    def geometry(self, level: int) -> LevelGeometry:
        return self._geometry[level]

    def _run(self, stack: torch.nn.Sequential, x: torch.Tensor) -> torch.Tensor:
        x = x.to(self.device, self.dtype, memory_format=NHWC)
        for layer in stack:
            room_for(output_bytes(layer, x))
            x = layer(x)
        return x.float()

    @torch.inference_mode()
    def encode(self, level: int, image: torch.Tensor) -> torch.Tensor:
        return self._run(self.modules[level].encoder, image)

    @torch.inference_mode()
    def transform(self, level: int, features: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        room_for(features.nbytes)
        return apply_affine(features.to(self.device), a.to(self.device), b.to(self.device))

    @torch.inference_mode()
    def decode(self, level: int, features: torch.Tensor) -> torch.Tensor:
        return self._run(self.modules[level].decoder, features)
