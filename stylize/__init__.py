"""Ultra-resolution universal style transfer (WCT) in bounded memory.

    import stylize
    stylize.stylize_file("photo.jpg", "painting.jpg", "out.png", stylize.Settings(resolution="8k"))
    result = stylize.stylize(content, style)        # arrays (3, H, W) or (H, W, 3), PIL images, tensors
    result.image, result.report

Layers, each importing only the ones below it: ``stylize.engine`` (WCT maths, tiles, memory
plan, the backend protocol, the stylizer) ← ``stylize.models`` (architectures, weights
registry) ← ``stylize.export`` (runtimes: torch, onnxruntime, TensorRT, ONNX export) ← this
package (settings, image I/O, files, batch, CLI). ``stylize.bench`` and
``stylize.models.training`` are clients. Names here load lazily, so ``import stylize.engine``
costs no more than the engine.
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "stylize": "stylize.api", "stylize_file": "stylize.api", "build_stylizer": "stylize.api",
    "style_statistics": "stylize.api",
    "Settings": "stylize.settings", "Stylized": "stylize.engine.stylizer", "Stylizer": "stylize.engine.stylizer",
    "run_batch": "stylize.batch_runner", "UserError": "stylize.engine.errors",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'stylize' has no attribute '{name}'")
