"""Each level's encoder and decoder as ONNX graphs, checked, verified and labelled.

Why the graphs hold only the convolutions: WCT needs the whole image's mean and covariance
and an eigendecomposition in fp64, which no inference engine offers (TensorRT has no eigh,
and Σx² overflows fp16). So a level is two graphs, image → features and features → image,
and the statistics and the affine transform between them stay in torch, the same code for
every backend.

What decides whether an export runs everywhere and stays exact:

* Reflection padding. The TorchScript exporter writes ``ReflectionPad2d`` as
  ``Pad(mode="reflect")`` but computes its ``pads`` with a Slice/Transpose subgraph;
  :func:`fold_constants` turns that into an initializer, because TensorRT's parser (and some
  other runtimes) accept only constant pads. ``padding="slice"`` instead writes the
  one-pixel reflection as Slice + Concat, ops every runtime has; both are exact.
* Odd sizes. Heights and widths are dynamic axes; pooling floors (or ceils for the
  Torch7-converted VGG) exactly as torch does, so any size ≥ 2 · stride runs, and the graphs
  are verified at a size different from the one they were traced at.
* Precision is a property of the graph, not a builder hint (TensorRT's strong typing): the
  fp16 variant has fp16 weights and activations and casts at a float32 boundary, so the
  tensors statistics are taken from are float32 whatever runs inside.

The legacy TorchScript exporter (``dynamo=False``) is used because the torch.export-based one
needs onnxscript, which is not a dependency; its output is plain opset-17 ONNX.
"""
from __future__ import annotations

import copy
import functools
import json
import os
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import onnx
import torch
from onnx import numpy_helper
from torch import nn

from stylize.engine.geometry import LevelGeometry
from stylize.engine.atomic import atomic_path, output_folder
from stylize.engine.errors import UserError
from stylize.models.zoo import ModelFamily, ResolvedModel, resolve_model

# Bump when the exported graphs change, so cached exports made by older code are redone.
FORMAT_VERSION = "1"
DEFAULT_OPSET = 17
try:  # the newest opset this PyTorch exports (23 for torch 2.13)
    from torch.onnx._constants import ONNX_MAX_OPSET as MAX_OPSET
except ImportError:
    MAX_OPSET = 23
PARTS = ("enc", "dec")
PRECISIONS = ("fp32", "fp16")
PADDINGS = ("reflect", "slice")
IO_NAMES = {"enc": ("image", "features"), "dec": ("features", "image")}


@dataclass(frozen=True)
class ExportedFile:
    """One exported graph and what its metadata says it is."""

    path: Path
    model: str
    level: int
    part: str  # "enc" or "dec"
    weights_sha256: str
    precision: str
    padding: str
    opset: int
    format_version: str
    geometry: LevelGeometry  # from the metadata: a deployment needs no model code or weights
    ceil_mode: bool

    @property
    def input_name(self) -> str:
        return IO_NAMES[self.part][0]

    @property
    def output_name(self) -> str:
        return IO_NAMES[self.part][1]


def onnx_filename(model: str, part: str, level: int, precision: str = "fp32") -> str:
    return f"{model}-{part}{level}{'-fp16' if precision == 'fp16' else ''}.onnx"


@functools.lru_cache(maxsize=None)
def current_geometry(family: ModelFamily, level: int, precision: str = "fp32") -> LevelGeometry:
    """What the architecture code says now; exports carry a copy for deployments without it."""
    return family.build(level).geometry(dtype_bytes=2 if precision == "fp16" else 4)


def output_shape(exported: ExportedFile, shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    """Shape a graph produces for an input shape: pools halve (floor, or ceil for VGG-19), ups double."""
    g = exported.geometry
    n, _, h, w = shape
    if exported.part == "dec":
        return n, 3, h * g.stride, w * g.stride
    for _ in range(exported.level - 1):
        h, w = ((h + 1) // 2, (w + 1) // 2) if exported.ceil_mode else (h // 2, w // 2)
    return n, g.channels, h, w


class SliceReflectionPad2d(nn.Module):
    """ReflectionPad2d(1) as Slice + Concat: same values, exported without a Pad op."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.cat([x[:, :, 1:2], x, x[:, :, -2:-1]], dim=2)
        return torch.cat([x[:, :, :, 1:2], x, x[:, :, :, -2:-1]], dim=3)


class _Fp16Graph(nn.Module):
    """fp16 inside, float32 at the boundary (the engine's statistics never see fp16)."""

    def __init__(self, body: nn.Module):
        super().__init__()
        self.body = body.half()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x.half()).float()


def check_choices(precision: str, padding: str, opset: int = DEFAULT_OPSET) -> None:
    """Each choice on its own line-worth of error, before any model loads."""
    if precision not in PRECISIONS:
        raise UserError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if padding not in PADDINGS:
        raise UserError(f"padding must be one of {', '.join(PADDINGS)}, got {padding!r}")
    if not 17 <= opset <= MAX_OPSET:
        raise UserError(f"opset must be 17..{MAX_OPSET} (what this PyTorch exports), got {opset}")


def exportable(seq: nn.Sequential, precision: str, padding: str) -> nn.Module:
    """A copy of an encoder or decoder rewritten for export (``precision`` and ``padding``
    checked by :func:`check_choices`); the original is untouched."""
    body = copy.deepcopy(seq).float().eval()
    if padding == "slice":
        for i, m in enumerate(body):
            if isinstance(m, nn.ReflectionPad2d):
                if tuple(m.padding) != (1, 1, 1, 1):
                    raise ValueError(f"slice padding handles 1-pixel reflection only, got {m.padding}")
                body[i] = SliceReflectionPad2d()
    return _Fp16Graph(body) if precision == "fp16" else body


def fold_constants(model: onnx.ModelProto) -> onnx.ModelProto:
    """Evaluate every node whose inputs are all constants and store its outputs as initializers.

    Generic on purpose (any op the ONNX reference evaluator knows): what it removes in
    practice is the subgraph computing reflection-pad widths. Unused initializers are dropped.
    """
    from onnx.reference import ReferenceEvaluator

    graph = model.graph
    known = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    kept = []
    for node in graph.node:
        inputs = [i for i in node.input if i]
        if node.op_type != "Constant" and (not inputs or not all(i in known for i in inputs)):
            kept.append(node)
            continue
        feeds = {i: known[i] for i in inputs}
        outputs = ReferenceEvaluator(node).run(None, feeds)
        known.update({name: np.asarray(v) for name, v in zip(node.output, outputs)})
    used = {i for n in kept for i in n.input} | {o.name for o in graph.output}
    del graph.node[:]
    graph.node.extend(kept)
    del graph.initializer[:]
    graph.initializer.extend(numpy_helper.from_array(v, name) for name, v in known.items() if name in used)
    return model


def export_graph(seq: nn.Sequential, path: Path, *, model: ResolvedModel, level: int, part: str,
                 precision: str = "fp32", padding: str = "reflect", opset: int = DEFAULT_OPSET) -> ExportedFile:
    """Trace one encoder or decoder, fold, label, check (full) and write it atomically."""
    check_choices(precision, padding, opset)
    family = model.family
    g = current_geometry(family, level, precision)
    side = max(64, 4 * g.stride)  # the trace size; verification runs at another one
    sample = torch.rand(1, 3, side, side) if part == "enc" else torch.rand(1, g.channels, side // g.stride,
                                                                           side // g.stride)
    in_name, out_name = IO_NAMES[part]
    axes = {in_name: {2: f"{in_name}_height", 3: f"{in_name}_width"},
            out_name: {2: f"{out_name}_height", 3: f"{out_name}_width"}}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # legacy-exporter deprecation and constant-folding notes
            torch.onnx.export(exportable(seq, precision, padding), (sample,), tmp, opset_version=opset,
                              input_names=[in_name], output_names=[out_name], dynamic_axes=axes,
                              do_constant_folding=True, dynamo=False)
        proto = fold_constants(onnx.load(tmp))
        proto.producer_name, proto.doc_string = "stylize", f"{model.label} level {level} {part} ({precision})"
        meta = {"model": model.label, "level": str(level), "part": part,
                "weights_sha256": model.sha256[(level, part)],
                "precision": precision, "padding": padding, "opset": str(opset), "format_version": FORMAT_VERSION,
                "geometry": json.dumps(asdict(g)), "ceil_mode": str(int(family.ceil_mode))}
        onnx.helper.set_model_props(proto, meta)
        proto = onnx.shape_inference.infer_shapes(proto, strict_mode=True)
        onnx.checker.check_model(proto, full_check=True)
        onnx.save(proto, tmp)
    return read_metadata(path)


def read_metadata(path: str | os.PathLike) -> ExportedFile:
    """What an exported file says it is; a file without our metadata is an error, not a guess."""
    path = Path(path)
    proto = onnx.load(str(path), load_external_data=False)
    props = {p.key: p.value for p in proto.metadata_props}
    missing = [k for k in ("model", "level", "part", "weights_sha256", "precision", "opset", "geometry")
               if k not in props]
    if missing:
        raise UserError(f"{path}: not a stylize export (metadata lacks {', '.join(missing)})")
    return ExportedFile(path, props["model"], int(props["level"]), props["part"], props["weights_sha256"],
                        props["precision"], props.get("padding", "reflect"), int(props["opset"]),
                        props.get("format_version", ""), LevelGeometry(**json.loads(props["geometry"])),
                        props.get("ceil_mode", "0") == "1")


def export_model(model: str | os.PathLike | ResolvedModel, out_dir: str | os.PathLike, *,
                 levels: tuple[int, ...] | None = None, weights_dir: str | os.PathLike | None = None,
                 precision: str = "fp32", padding: str = "reflect", opset: int = DEFAULT_OPSET,
                 verify: bool = True) -> list[ExportedFile]:
    """Export encoder and decoder of each level into ``out_dir``; optionally verify against torch."""
    check_choices(precision, padding, opset)
    model = resolve_model(model, levels, weights_dir)
    levels = tuple(levels or model.levels)
    output_folder(out_dir, "export folder")
    out: list[ExportedFile] = []
    for level in levels:
        module = model.load((level,))[level]
        for part, seq in (("enc", module.encoder), ("dec", module.decoder)):
            exported = export_graph(seq, Path(out_dir) / onnx_filename(model.label, part, level, precision),
                                    model=model, level=level, part=part, precision=precision, padding=padding,
                                    opset=opset)
            if verify:
                err = verify_against_torch(exported, seq)
                tol = 5e-2 if precision == "fp16" else 1e-3
                if err > tol:  # not left in place, where a cache would take it as a good export
                    exported.path.unlink(missing_ok=True)
                    raise RuntimeError(f"{exported.path.name}: onnxruntime differs from torch by {err:.3g} "
                                       f"(relative), more than {tol}")
            out.append(exported)
    return out


def verify_against_torch(exported: ExportedFile, seq: nn.Sequential, size: tuple[int, int] | None = None,
                         seed: int = 0) -> float:
    """Largest |onnxruntime − torch| relative to the output's range, at a size the trace never saw.

    The default size is stride-aligned but neither square nor a power of two, which is what the
    tiled engine feeds; callers pass truly odd sizes too.
    """
    import onnxruntime as ort

    g = exported.geometry
    h, w = size or (3 * g.stride + 5 * 16, 5 * g.stride + 3 * 16)
    gen = torch.Generator().manual_seed(seed)
    if exported.part == "enc":
        x = torch.rand(1, 3, h, w, generator=gen)
    else:  # decoder inputs are non-negative post-ReLU features of realistic size
        x = 4 * torch.rand(1, g.channels, max(2, h // g.stride), max(2, w // g.stride), generator=gen)
    with torch.no_grad():
        ref = seq(x).numpy()
    sess = ort.InferenceSession(str(exported.path), providers=["CPUExecutionProvider"])
    got = sess.run([exported.output_name], {exported.input_name: x.numpy()})[0]
    if got.shape != ref.shape:
        raise RuntimeError(f"{exported.path.name}: output shape {got.shape}, torch gives {ref.shape}")
    return float(np.abs(got - ref).max() / max(np.abs(ref).max(), 1e-6))


def check_export_set(exports: dict[tuple[int, str], ExportedFile]) -> tuple[str, str, dict[int, LevelGeometry]]:
    """(model, precision, geometry per level) of a set a backend runs: one model, one precision,
    both parts for every level."""
    models, precisions = {f.model for f in exports.values()}, {f.precision for f in exports.values()}
    if len(models) != 1 or len(precisions) != 1:
        raise ValueError(f"exports must be one model in one precision, got {sorted(models)} {sorted(precisions)}")
    levels = sorted({level for level, _ in exports})
    incomplete = [k for k in levels if (k, "enc") not in exports or (k, "dec") not in exports]
    if incomplete:
        raise ValueError(f"level(s) {incomplete} lack an encoder or a decoder graph")
    return models.pop(), precisions.pop(), {k: exports[(k, "enc")].geometry for k in levels}


def find_exports(onnx_dir: str | os.PathLike, model: str, levels: tuple[int, ...],
                 precision: str = "fp32") -> dict[tuple[int, str], ExportedFile]:
    """The exported files for ``levels`` in a folder, each checked to be what its name says.

    ``model`` is the label the files carry (:attr:`ResolvedModel.label`).
    """
    found: dict[tuple[int, str], ExportedFile] = {}
    for level in levels:
        for part in PARTS:
            path = Path(onnx_dir) / onnx_filename(model, part, level, precision)
            if not path.is_file():
                raise UserError(f"{path}: missing; run 'stylize export --model {model} -o {onnx_dir}'"
                                        f"{' --half' if precision == 'fp16' else ''}")
            meta = read_metadata(path)
            if (meta.model, meta.level, meta.part, meta.precision) != (model, level, part, precision):
                raise UserError(f"{path}: metadata says {meta.model} level {meta.level} {meta.part} "
                                 f"{meta.precision}, expected {model} level {level} {part} {precision}")
            found[(level, part)] = meta
    return found
