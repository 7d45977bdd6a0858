"""TensorRT engines built from the exported graphs, behind the engine's one backend protocol.

Which shapes get an engine. The tiled engine hands a backend a few different tile sizes in
one run (interior tiles, smaller edge and corner tiles, larger encoder tiles when features
are recomputed) and whole-image runs of any size. Two obvious designs are wrong or wasteful:

* one fixed shape, padding smaller tiles up to it: not exact. The halo was sized so that the
  tile's own edge handling at the *true* image border is what the whole image has there;
  extra padding moves that border, and reflection past it differs from the real pixels.
* one fixed-shape engine per distinct tile shape: exact, but whole-image runs of new sizes
  each pay a build (tens of seconds), and a tiled run pays one per border shape.

So each engine has a dynamic-shape optimisation profile: min = the smallest valid input
(2 feature pixels, the least a reflection pad accepts), opt = max = the tile's side rounded
up to ``bucket`` pixels. A tile runs, at its own exact shape, on the smallest engine (in
memory or on disk) whose max covers it; a first run builds at most a couple per level and
part (the first corner tile, then an interior one), later runs load them. Only the current
level's engines stay in GPU memory, since each context holds memory for its largest shape.
The cache key is the model, level, part, bucket shape, precision, the ONNX file's sha256
(which covers the weights and the export format), the TensorRT version and the GPU (name
and compute capability).

Precision lives in the graph (the fp16 export has fp16 weights and casts at a float32
boundary) and networks are built strongly typed: that is the route TensorRT 10 recommends
and the only one TensorRT 11 keeps (``BuilderFlag.FP16`` is gone there). TF32 is switched off
for fp32 engines so that fp32 means fp32. The graphs TensorRT gets use Slice + Concat
reflection padding by default (``padding="slice"`` export), which any parser version takes.

``tensorrt`` is imported only when this backend is created, so the project works without it.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import torch

from stylize.engine.atomic import atomic_path
from stylize.engine.backend import resolve_device
from stylize.engine.errors import UserError
from stylize.models.weights import cache_dir, sha256_of

from .graph_backend import GraphBackend
from .onnx_export import ExportedFile, check_export_set

DEFAULT_BUCKET = 256


def import_tensorrt():
    try:
        import tensorrt
    except ImportError as e:
        raise UserError(f"the tensorrt backend needs TensorRT 10+ (pip install tensorrt): {e}") from None
    return tensorrt


def bucket_shape(height: int, width: int, bucket: int = DEFAULT_BUCKET) -> tuple[int, int]:
    """The profile max an engine is built for: each side rounded up to ``bucket`` pixels."""
    return -(-height // bucket) * bucket, -(-width // bucket) * bucket


def pick_engine(built: Mapping[tuple[int, int], object], height: int, width: int) -> tuple[int, int] | None:
    """The smallest built max shape covering ``height × width`` (image pixels), or None."""
    covering = [hw for hw in built if hw[0] >= height and hw[1] >= width]
    return min(covering, key=lambda hw: (hw[0] * hw[1], hw)) if covering else None


def gpu_tag(device: torch.device) -> str:
    name = torch.cuda.get_device_name(device)
    major, minor = torch.cuda.get_device_capability(device)
    return f"{re.sub(r'[^A-Za-z0-9]+', '-', name).strip('-')}-sm{major}{minor}"


def engine_filename(exported: ExportedFile, onnx_sha: str, max_hw: tuple[int, int], trt_version: str,
                    gpu: str) -> str:
    """Every input that changes an engine's bytes is in its name, so a stale engine is never loaded."""
    prefix, suffix = _name_parts(exported, onnx_sha, trt_version, gpu)
    return f"{prefix}{max_hw[0]}x{max_hw[1]}{suffix}"


def _name_parts(exported: ExportedFile, onnx_sha: str, trt_version: str, gpu: str) -> tuple[str, str]:
    return (f"{exported.model}-{exported.part}{exported.level}-",
            f"-{exported.precision}-onnx{onnx_sha[:16]}-trt{trt_version}-{gpu}.engine")


def cached_shapes(folder: Path, exported: ExportedFile, onnx_sha: str, trt_version: str,
                  gpu: str) -> set[tuple[int, int]]:
    """Bucket shapes already built for this graph, TensorRT and GPU, from the file names."""
    prefix, suffix = _name_parts(exported, onnx_sha, trt_version, gpu)
    pattern = re.compile(re.escape(prefix) + r"(\d+)x(\d+)" + re.escape(suffix))
    found = (pattern.fullmatch(p.name) for p in folder.glob("*.engine")) if folder.is_dir() else ()
    return {(int(m[1]), int(m[2])) for m in found if m}


@dataclass
class _Engine:
    engine: object  # trt.ICudaEngine
    context: object  # trt.IExecutionContext
    input_name: str
    output_name: str
    path: Path


class TensorRTBackend(GraphBackend):
    """Runs ``{(level, "enc"|"dec"): ExportedFile}`` graphs as TensorRT engines on one GPU."""

    name = "tensorrt"

    def __init__(self, exports: Mapping[tuple[int, str], ExportedFile], *, device: str | torch.device | None = "auto",
                 engine_dir: str | os.PathLike | None = None, bucket: int = DEFAULT_BUCKET,
                 workspace_bytes: int | None = None, verbose: bool = False):
        self.trt = import_tensorrt()
        self.device = resolve_device(device)
        if self.device.type != "cuda":
            raise UserError("the tensorrt backend needs a CUDA GPU (device 'cuda'); none is selected or visible")
        if self.device.index is None:
            self.device = torch.device("cuda", torch.cuda.current_device())
        self.exports = dict(exports)
        self.model, self.precision, self._geometry = check_export_set(self.exports)
        self._levels = tuple(self._geometry)
        self.bucket = bucket
        self.workspace_bytes = workspace_bytes
        self.engine_dir = Path(engine_dir) if engine_dir else cache_dir() / "tensorrt"
        self.logger = self.trt.Logger(self.trt.Logger.INFO if verbose else self.trt.Logger.WARNING)
        self.runtime = self.trt.Runtime(self.logger)
        self.gpu = gpu_tag(self.device)
        self._onnx_sha = {key: sha256_of(f.path) for key, f in self.exports.items()}
        self._engines: dict[tuple[int, str], dict[tuple[int, int], _Engine]] = {key: {} for key in self.exports}
        self._resident_level: int | None = None
        self._known: dict[tuple[int, str], set[tuple[int, int]]] = {}  # shapes built or on disk
        self.builds = 0  # engines built (not loaded) by this backend: benchmarks and tests read it

    # ------------------------------------------------------------------------- engines
    def _engine_for(self, key: tuple[int, str], height: int, width: int) -> _Engine:
        """Engine covering a tile of ``height × width`` image pixels: resident, on disk, or built.

        Shapes on disk count: a later run's first (corner) tile uses the interior tiles'
        engine instead of building one of its own.
        """
        if key[0] != self._resident_level:
            self._evict_other_levels(key[0])
        if key not in self._known:
            self._known[key] = cached_shapes(self.engine_dir, self.exports[key], self._onnx_sha[key],
                                             self.trt.__version__, self.gpu)
        hw = pick_engine(dict.fromkeys(self._known[key]), height, width) or bucket_shape(height, width, self.bucket)
        built = self._engines[key]
        if hw not in built:
            built[hw] = self._load_or_build(key, hw)
            self._known[key].add(hw)
        return built[hw]

    def _evict_other_levels(self, level: int) -> None:
        """Free the engines of other levels: the engine runs one level at a time, and each
        execution context holds device memory for its profile's largest shape, which the
        tile planner (it measures free memory) should get back. Reloading from disk is cheap."""
        for (k, _), built in self._engines.items():
            if k != level:
                for e in built.values():
                    e.context = None  # contexts go before their engine
                built.clear()
        self._resident_level = level

    def _load_or_build(self, key: tuple[int, str], max_hw: tuple[int, int]) -> _Engine:
        exported = self.exports[key]
        path = self.engine_dir / engine_filename(exported, self._onnx_sha[key], max_hw, self.trt.__version__, self.gpu)
        engine = None
        with torch.cuda.device(self.device):
            if path.is_file():
                engine = self.runtime.deserialize_cuda_engine(path.read_bytes())
            if engine is None:  # absent, or unreadable by this runtime: rebuild and replace
                self._write_atomic(path, self._build(exported, max_hw))
                engine = self.runtime.deserialize_cuda_engine(path.read_bytes())
                self.builds += 1
            if engine is None:
                raise RuntimeError(f"TensorRT could not load the engine it just built: {path}")
            context = engine.create_execution_context()
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == self.trt.TensorIOMode.INPUT]
        outputs = [n for n in names if n not in inputs]
        if inputs != [exported.input_name] or outputs != [exported.output_name]:
            raise RuntimeError(f"{path}: engine I/O {inputs} → {outputs} does not match the graph")
        for n in names:
            if engine.get_tensor_dtype(n) != self.trt.float32:
                raise RuntimeError(f"{path}: tensor {n} is {engine.get_tensor_dtype(n)}, the boundary must be float32")
        return _Engine(engine, context, exported.input_name, exported.output_name, path)

    def _build(self, exported: ExportedFile, max_hw: tuple[int, int]):
        trt = self.trt
        g = self._geometry[exported.level]
        builder = trt.Builder(self.logger)
        network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
        parser = trt.OnnxParser(network, self.logger)
        if not parser.parse_from_file(str(exported.path)):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise RuntimeError(f"TensorRT cannot parse {exported.path}: {errors}")
        config = builder.create_builder_config()
        if self.workspace_bytes:
            config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, self.workspace_bytes)
        if hasattr(trt.BuilderFlag, "TF32"):
            config.clear_flag(trt.BuilderFlag.TF32)
        if exported.part == "enc":  # image pixels; the deepest feature map must be ≥ 2 to reflect-pad
            lo, hi, channels = (2 * g.stride, 2 * g.stride), max_hw, 3
        else:
            lo, hi, channels = (2, 2), (max_hw[0] // g.stride, max_hw[1] // g.stride), g.channels
        profile = builder.create_optimization_profile()
        profile.set_shape(exported.input_name, (1, channels, *lo), (1, channels, *hi), (1, channels, *hi))
        config.add_optimization_profile(profile)
        blob = builder.build_serialized_network(network, config)
        if blob is None:
            raise RuntimeError(f"TensorRT failed to build {exported.path.name} for {max_hw} (see its log above)")
        return blob

    @staticmethod
    def _write_atomic(path: Path, blob) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            tmp.write_bytes(memoryview(blob))

    # ------------------------------------------------------------------------- protocol
    def _run(self, key: tuple[int, str], x: torch.Tensor) -> torch.Tensor:
        with torch.cuda.device(self.device):
            return self._enqueue(key, x.detach().to(self.device, torch.float32).contiguous())

    def _enqueue(self, key: tuple[int, str], x: torch.Tensor) -> torch.Tensor:
        _, _, h, w = x.shape
        scale = 1 if key[1] == "enc" else self._geometry[key[0]].stride
        e = self._engine_for(key, h * scale, w * scale)
        if not e.context.set_input_shape(e.input_name, tuple(x.shape)):
            raise RuntimeError(f"{e.path.name}: input shape {tuple(x.shape)} is outside the engine's profile "
                               "(too small to reflect-pad at the deepest level?)")
        y = torch.empty(tuple(e.context.get_tensor_shape(e.output_name)), device=self.device, dtype=torch.float32)
        e.context.set_tensor_address(e.input_name, x.data_ptr())
        e.context.set_tensor_address(e.output_name, y.data_ptr())
        # Enqueued on torch's current stream: later torch work is ordered after it, and x's
        # memory cannot be reused before the engine has read it (same stream).
        if not e.context.execute_async_v3(torch.cuda.current_stream(self.device).cuda_stream):
            raise RuntimeError(f"{e.path.name}: TensorRT execution failed")
        return y
