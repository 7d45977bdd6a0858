"""One factory from a backend name to a :class:`engine.backend.Backend`: what ``--backend`` resolves.

The engine never branches on the backend; everything backend-specific (which ONNX variant,
where exports are cached, which device checks apply) is decided here, once.

Exports made on demand go to the user cache, one folder per model, precision and padding
form; every file is re-checked against the sha256 of the weights it was made from, the
exporter's format version and the level geometry the engine plans tiles with, each time a
backend is created, so a changed weight file or newer code never runs a stale graph.
A folder the user passes (``onnx_dir``) is the deployment case: it is used as exported,
checked only for model, level, part and precision, and needs no weights.
"""
from __future__ import annotations

import os
from pathlib import Path

from engine.backend import Backend, TorchBackend, resolve_device
from models.weights import cache_dir
from models.zoo import FAMILIES, load_levels

from .onnx_export import (FORMAT_VERSION, PARTS, ExportedFile, checkpoint_file, current_geometry, export_model,
                          find_exports, model_label, onnx_filename, read_metadata, weights_sha256)

BACKENDS = ("torch", "onnxruntime", "tensorrt")
# The reflection-padding form each runtime gets: onnxruntime runs Pad(reflect) natively; the
# Slice + Concat form parses on every TensorRT version (see export.onnx_export).
PADDING = {"onnxruntime": "reflect", "tensorrt": "slice"}


def onnx_cache_dir(model: str, precision: str, padding: str) -> Path:
    return cache_dir() / "onnx" / f"{model}-{precision}-{padding}"


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


def cached_exports(model: str, levels: tuple[int, ...], *, precision: str = "fp32", padding: str = "reflect",
                   weights_dir: str | os.PathLike | None = None,
                   folder: str | os.PathLike | None = None) -> dict[tuple[int, str], ExportedFile]:
    """Exports of ``levels`` from the cache folder, (re)exported where missing or stale."""
    label = model_label(model)
    folder = Path(folder or onnx_cache_dir(label, precision, padding))
    for level in levels:
        fresh = all(_is_fresh(folder / onnx_filename(label, part, level, precision), padding,
                              weights_sha256(model, level, part, weights_dir),
                              current_geometry(model, level, precision)) for part in PARTS)
        if not fresh:
            export_model(model, folder, levels=(level,), weights_dir=weights_dir, precision=precision,
                         padding=padding, verify=True)
    return find_exports(folder, label, levels, precision)


def create_backend(name: str, *, model: str = "cd16x", levels=(5, 4, 3, 2, 1), device: str = "auto",
                   half: bool = False, weights_dir: str | os.PathLike | None = None,
                   onnx_dir: str | os.PathLike | None = None, **options) -> Backend:
    """The backend called ``name`` for ``model``'s ``levels``.

    ``options`` go to the backend's constructor: ``threads``/``providers`` for onnxruntime,
    ``engine_dir``/``bucket``/``workspace_bytes`` for tensorrt.
    """
    if name not in BACKENDS:
        raise ValueError(f"unknown backend '{name}': choose one of {', '.join(BACKENDS)}")
    levels = tuple(sorted(set(levels)))
    if name == "torch":
        if onnx_dir or options:
            raise ValueError(f"the torch backend takes no ONNX options (got {sorted(options) or ['onnx_dir']})")
        return TorchBackend(load_levels(model, levels, weights_dir), device, half)

    precision = "fp16" if half else "fp32"
    if name == "onnxruntime":
        from .ort_backend import GPU_PROVIDERS, OnnxRuntimeBackend, select_providers

        providers, _ = select_providers(device)  # device errors before any export work
        if half and not any((p[0] if isinstance(p, tuple) else p) in GPU_PROVIDERS for p in providers):
            raise ValueError("--half needs a CUDA device: fp16 convolutions are slow or missing on CPU")
        build = OnnxRuntimeBackend
        options.setdefault("trt_cache_dir", cache_dir() / "onnxruntime-trt")
    else:
        from .trt_backend import TensorRTBackend, import_tensorrt

        if resolve_device(device).type != "cuda":
            raise ValueError("the tensorrt backend needs a CUDA GPU; none is visible to torch")
        import_tensorrt()
        build = TensorRTBackend
    if onnx_dir:  # a deployment may have the files and only their label, not the model itself
        label = model_label(model) if model in FAMILIES or checkpoint_file(model) else model
        exports = find_exports(onnx_dir, label, levels, precision)
    else:
        exports = cached_exports(model, levels, precision=precision, padding=PADDING[name], weights_dir=weights_dir)
    return build(exports, device=device, **options)
