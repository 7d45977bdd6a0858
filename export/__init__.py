"""Runtimes: the torch backend, onnxruntime and TensorRT over exported ONNX graphs, the ONNX
exporter, and the one registry of backends (:mod:`stylize.export.registry`)."""
from .registry import BACKENDS, BackendSpec, create_backend

__all__ = ["BACKENDS", "BackendSpec", "create_backend"]
