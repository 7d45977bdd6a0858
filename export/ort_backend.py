"""The exported graphs under onnxruntime, behind the engine's one backend protocol.

Provider choice follows ``device``: ``cpu`` runs the CPU provider; ``cuda`` (or ``auto`` with
onnxruntime-gpu installed and a GPU visible) puts the TensorRT provider first where it is
installed, then CUDA, then CPU for anything they decline. Precision is whatever the graphs
carry (the fp16 export casts at a float32 boundary), so no provider is asked to lower it.

Where tensors live: ``backend.device`` is CUDA only when torch can see the GPU too; then
tiles stay on the GPU and are bound to the session by pointer (IO binding), otherwise they
cross as numpy arrays and onnxruntime does any copy itself.

The WCT transform stays outside the graphs (see :mod:`export.graph_backend`).
"""
from __future__ import annotations

import os
from typing import Mapping

import numpy as np
import torch

from stylize.engine.errors import UserError

from .graph_backend import GraphBackend
from .onnx_export import ExportedFile, check_export_set, output_shape

GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")


def select_providers(device: str | torch.device | None = "auto",
                     trt_cache_dir: str | os.PathLike | None = None) -> tuple[list, torch.device]:
    """(providers for InferenceSession, the torch device tensors should live on)."""
    import onnxruntime as ort

    available = ort.get_available_providers()
    gpu = "CUDAExecutionProvider" in available
    if device in (None, "auto"):
        device = "cuda" if gpu else "cpu"
    dev = torch.device(device)
    if dev.type == "cpu":
        return ["CPUExecutionProvider"], dev
    if dev.type != "cuda":
        raise UserError(f"onnxruntime backend: unsupported device '{device}'")
    if not gpu:
        raise UserError("device 'cuda' requested but onnxruntime has no CUDA provider "
                         "(install onnxruntime-gpu instead of onnxruntime)")
    index = dev.index or 0
    providers: list = []
    if "TensorrtExecutionProvider" in available:
        opts = {"device_id": index}
        if trt_cache_dir:
            opts.update(trt_engine_cache_enable=True, trt_engine_cache_path=str(trt_cache_dir))
        providers.append(("TensorrtExecutionProvider", opts))
    providers += [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"]
    # Without a CUDA torch the tiles stay on the host and onnxruntime copies them.
    return providers, torch.device("cuda", index) if torch.cuda.is_available() else torch.device("cpu")


class OnnxRuntimeBackend(GraphBackend):
    """Runs ``{(level, "enc"|"dec"): ExportedFile}`` graphs; see the module docstring for why."""

    name = "onnxruntime"

    def __init__(self, exports: Mapping[tuple[int, str], ExportedFile], *, device: str | torch.device | None = "auto",
                 providers: list | None = None, threads: int | None = None,
                 trt_cache_dir: str | os.PathLike | None = None):
        import onnxruntime as ort

        chosen, self.device = select_providers(device, trt_cache_dir)
        self.providers = providers or chosen
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3  # provider-placement notes are not the user's concern
        # Tile shapes vary, and the arena keeps the largest it ever saw per shape: resident memory
        # then grows past the engine's --max-memory budget (which counts the whole process) and
        # the planner shrinks tiles to nothing. Plain allocations go back when a tile is done.
        opts.enable_cpu_mem_arena = False
        opts.enable_mem_pattern = False
        if threads:
            opts.intra_op_num_threads = threads
        self.exports = dict(exports)
        self.model, self.precision, self._geometry = check_export_set(self.exports)
        self._levels = tuple(self._geometry)
        self.sessions = {key: ort.InferenceSession(str(f.path), sess_options=opts, providers=self.providers)
                         for key, f in self.exports.items()}
        # IO binding only where the session computes on the GPU the tensors already live on.
        self._bound = self.device.type == "cuda" and any(
            p in GPU_PROVIDERS for s in self.sessions.values() for p in s.get_providers())

    def active_providers(self) -> list[str]:
        """What onnxruntime actually enabled (it silently drops providers it cannot load)."""
        return next(iter(self.sessions.values())).get_providers()

    def _run(self, key: tuple[int, str], x: torch.Tensor) -> torch.Tensor:
        exported, session = self.exports[key], self.sessions[key]
        if not self._bound:
            feed = x.detach().to("cpu", torch.float32).contiguous().numpy()
            y = session.run([exported.output_name], {exported.input_name: feed})[0]
            return torch.from_numpy(y).to(self.device)
        x = x.detach().to(self.device, torch.float32).contiguous()
        y = torch.empty(output_shape(exported, tuple(x.shape)), device=self.device, dtype=torch.float32)
        binding = session.io_binding()
        index = self.device.index or 0
        binding.bind_input(exported.input_name, "cuda", index, np.float32, tuple(x.shape), x.data_ptr())
        binding.bind_output(exported.output_name, "cuda", index, np.float32, tuple(y.shape), y.data_ptr())
        # onnxruntime computes on its own stream: x must be complete before it reads it.
        torch.cuda.current_stream(self.device).synchronize()
        session.run_with_iobinding(binding)
        binding.synchronize_outputs()
        return y
