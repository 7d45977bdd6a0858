"""Every runtime the engine can run on, as data: what ``--backend`` offers and resolves.

The CLI's choices and help, the benchmark's backend axis and :func:`create_backend` all read
:data:`BACKENDS`; adding a runtime is one :class:`BackendSpec` here and one module with its
class. The engine never branches on the backend.

Graph runtimes (onnxruntime, TensorRT) run exported ONNX graphs. Exports made on demand go to
the user cache, one folder per model, precision and padding form; each file is checked against
the sha256 of the weights it was made from (held by the resolved model, not re-hashed), the
exporter's format version and the level geometry the engine plans tiles with, so a changed
weight file or newer code never runs a stale graph. A folder the user passes (``onnx_dir``) is
the deployment case: it is used as exported, checked only for model, level, part and precision.
"""
from __future__ import annotations

import importlib
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from stylize.engine.backend import Backend, resolve_device
from stylize.engine.errors import UserError
from stylize.models.weights import cache_dir
from stylize.models.zoo import FAMILIES, ResolvedModel, resolve_model

from .onnx_export import (FORMAT_VERSION, PARTS, ExportedFile, current_geometry, export_model, find_exports,
                          onnx_filename, read_metadata)


@dataclass(frozen=True)
class BackendSpec:
    """One runtime: its name, what it needs installed, and how to build it."""

    name: str
    summary: str  # one line for help texts
    requires: str | None  # the Python module it needs, None when always there
    build: Callable[..., Backend]  # build(model: ResolvedModel, levels, device, half, **options)
    needs_cuda: bool = False

    def installed(self) -> bool:
        return self.requires is None or importlib.util.find_spec(self.requires) is not None

    def check(self, device: str | None) -> None:
        """Fail in one line, before any file is read, when this runtime cannot run here."""
        if not self.installed():
            raise UserError(f"the {self.name} backend needs the '{self.requires}' package, which is not installed")
        if self.needs_cuda and resolve_device(device).type != "cuda":
            raise UserError(f"the {self.name} backend needs a CUDA GPU; none is visible to torch")


def _torch(model: ResolvedModel, levels, device, half, **options) -> Backend:
    from .torch_backend import TorchBackend

    if options:
        raise UserError(f"the torch backend takes no options (got {sorted(options)})")
    return TorchBackend(model.load(levels), device, half)


def _onnxruntime(model: ResolvedModel, levels, device, half, *, onnx_dir=None, **options) -> Backend:
    from .ort_backend import GPU_PROVIDERS, OnnxRuntimeBackend, select_providers

    providers, _ = select_providers(device)  # device errors before any export work
    if half and not any((p[0] if isinstance(p, tuple) else p) in GPU_PROVIDERS for p in providers):
        raise UserError("--half needs a CUDA device: fp16 convolutions are slow or missing on CPU")
    options.setdefault("trt_cache_dir", cache_dir() / "onnxruntime-trt")
    exports = _exports(model, levels, half, "reflect", onnx_dir)
    return OnnxRuntimeBackend(exports, device=device, **options)


def _tensorrt(model: ResolvedModel, levels, device, half, *, onnx_dir=None, **options) -> Backend:
    from .trt_backend import TensorRTBackend

    # The Slice + Concat padding form parses on every TensorRT version (see onnx_export).
    return TensorRTBackend(_exports(model, levels, half, "slice", onnx_dir), device=device, **options)


BACKENDS: dict[str, BackendSpec] = {spec.name: spec for spec in (
    BackendSpec("torch", "PyTorch modules, channels-last (CPU or CUDA)", None, _torch),
    BackendSpec("onnxruntime", "exported ONNX graphs under onnxruntime (CPU; CUDA with onnxruntime-gpu)",
                "onnxruntime", _onnxruntime),
    BackendSpec("tensorrt", "TensorRT engines built from the ONNX graphs (CUDA only)", "tensorrt", _tensorrt,
                needs_cuda=True),
)}


def backend_spec(name: str) -> BackendSpec:
    if name not in BACKENDS:
        raise UserError(f"unknown backend '{name}': choose one of {', '.join(BACKENDS)}")
    return BACKENDS[name]


def create_backend(name: str, model: str | os.PathLike | ResolvedModel = "cd16x", levels=(5, 4, 3, 2, 1), *,
                   device: str | None = "auto", half: bool = False, weights_dir: str | os.PathLike | None = None,
                   **options) -> Backend:
    """The backend called ``name`` running ``model``'s ``levels``.

    ``options`` go to the runtime: ``onnx_dir`` for graph runtimes (a folder of exports to use
    as they are), ``threads``/``providers`` for onnxruntime, ``engine_dir``/``bucket``/
    ``workspace_bytes`` for tensorrt.
    """
    spec = backend_spec(name)
    spec.check(device)
    levels = tuple(sorted(set(levels)))
    if options.get("onnx_dir") and not isinstance(model, ResolvedModel) and str(model) not in FAMILIES \
            and not Path(model).is_file():
        # a deployment may have only the exported files and their label, not the model itself
        return spec.build(_LabelOnly(str(model)), levels, device, half, **options)
    return spec.build(resolve_model(model, levels, weights_dir), levels, device, half, **options)


@dataclass(frozen=True)
class _LabelOnly:
    """A model known only by the label its exported files carry (deployment without weights)."""

    label: str


def onnx_cache_dir(label: str, precision: str, padding: str) -> Path:
    return cache_dir() / "onnx" / f"{label}-{precision}-{padding}"


def _exports(model, levels, half: bool, padding: str, onnx_dir) -> dict[tuple[int, str], ExportedFile]:
    precision = "fp16" if half else "fp32"
    if onnx_dir:
        return find_exports(onnx_dir, model.label, levels, precision)
    return cached_exports(model, levels, precision=precision, padding=padding)


def _is_fresh(path: Path, padding: str, weights_sha: str, geometry) -> bool:
    """Made from these weights, by this exporter, in this padding form, with today's geometry."""
    if not path.is_file():
        return False
    try:
        meta = read_metadata(path)
    except Exception:  # a truncated or foreign file in the cache is simply remade
        return False
    return (meta.weights_sha256, meta.format_version, meta.padding, meta.geometry) == (
        weights_sha, FORMAT_VERSION, padding, geometry)


def cached_exports(model: ResolvedModel, levels: tuple[int, ...], *, precision: str = "fp32",
                   padding: str = "reflect", folder: str | os.PathLike | None = None,
                   ) -> dict[tuple[int, str], ExportedFile]:
    """Exports of ``levels`` from the cache folder, (re)exported where missing or stale."""
    folder = Path(folder or onnx_cache_dir(model.label, precision, padding))
    for level in levels:
        fresh = all(_is_fresh(folder / onnx_filename(model.label, part, level, precision), padding,
                              model.sha256[(level, part)], current_geometry(model.family, level, precision))
                    for part in PARTS)
        if not fresh:
            export_model(model, folder, levels=(level,), precision=precision, padding=padding, verify=True)
    return find_exports(folder, model.label, levels, precision)
