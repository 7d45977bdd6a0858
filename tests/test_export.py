"""ONNX export and the onnxruntime / TensorRT backends against the torch reference.

Exports are made once per session into a temporary folder. TensorRT and GPU-provider tests
skip, saying why, where those are absent; everything else runs on any machine with the data.
"""
from __future__ import annotations

import shutil

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from onnx import numpy_helper
from typer.testing import CliRunner

from conftest import REFERENCE, REFERENCE_CASES, load_rgb, psnr, to_uint8
from stylize.engine.backend import Backend
from stylize.engine.errors import UserError
from stylize.engine.stylizer import Stylizer
from stylize.export.onnx_export import export_model, find_exports, onnx_filename, read_metadata, verify_against_torch
from stylize.export.ort_backend import OnnxRuntimeBackend
from stylize.export.registry import cached_exports, create_backend
from stylize.export.torch_backend import TorchBackend
from stylize.export.trt_backend import bucket_shape, cached_shapes, engine_filename, pick_engine
from stylize.export_cli import app
from stylize.models.zoo import get_family, load_levels, resolve_model

LEVELS = (1, 2, 3, 4, 5)
CASE_IDS = [c[2].name for c in REFERENCE_CASES]

try:
    import tensorrt  # noqa: F401

    TRT_MISSING = None if torch.cuda.is_available() else "no CUDA GPU visible to torch"
except ImportError:
    TRT_MISSING = "tensorrt is not installed"
requires_trt = pytest.mark.skipif(TRT_MISSING is not None,
                                  reason=f"TensorRT tests need TensorRT and a GPU: {TRT_MISSING}")
ORT_GPU = "CUDAExecutionProvider" in ort.get_available_providers() and torch.cuda.is_available()
requires_ort_gpu = pytest.mark.skipif(not ORT_GPU, reason="needs onnxruntime-gpu (CUDA provider) and a CUDA GPU")


def _export(tmp_path_factory, precision, padding):
    folder = tmp_path_factory.mktemp(f"onnx-{precision}-{padding}")
    export_model("cd16x", folder, precision=precision, padding=padding, verify=False)
    return find_exports(folder, "cd16x", LEVELS, precision)


@pytest.fixture(scope="session")
def fp32_exports(tmp_path_factory):
    return _export(tmp_path_factory, "fp32", "reflect")


@pytest.fixture(scope="session")
def slice_exports(tmp_path_factory):
    return _export(tmp_path_factory, "fp32", "slice")


@pytest.fixture(scope="session")
def fp16_exports(tmp_path_factory):
    return _export(tmp_path_factory, "fp16", "reflect")


@pytest.fixture(scope="session")
def modules():
    return load_levels("cd16x", LEVELS)


@pytest.fixture(scope="session")
def ort_cpu(fp32_exports):
    return OnnxRuntimeBackend(fp32_exports, device="cpu")


@pytest.fixture(scope="session")
def torch_outputs(cd16x):
    """Whole-image torch outputs per reference case, computed once and compared with every backend."""
    cache = {}

    def get(name, alpha):
        if (name, alpha) not in cache:
            content, style = load_rgb(REFERENCE / f"{name}.content.png"), load_rgb(REFERENCE / f"{name}.style.png")
            cache[(name, alpha)] = to_uint8(cd16x.stylize(content, style, alpha=alpha).image)
        return cache[(name, alpha)]

    return get


def folder(exports) -> str:
    return str(exports[(1, "enc")].path.parent)


def _stylize(backend, name, alpha, tile=None):
    content, style = load_rgb(REFERENCE / f"{name}.content.png"), load_rgb(REFERENCE / f"{name}.style.png")
    result = Stylizer(backend, tile=tile, max_memory="4G").stylize(content, style, alpha=alpha)
    if tile is not None:
        assert any(p.tile == tile for p in result.report.plans), "tiled mode did not tile"
    return to_uint8(result.image)


# ----------------------------------------------------------------------------------- export
@pytest.mark.parametrize("variant", ["fp32_exports", "slice_exports", "fp16_exports"])
def test_every_file_passes_checker_with_metadata(variant, request):
    exports = request.getfixturevalue(variant)
    assert sorted(exports) == sorted((k, p) for k in LEVELS for p in ("enc", "dec"))
    for (level, part), f in exports.items():
        onnx.checker.check_model(str(f.path), full_check=True)
        proto = onnx.load(str(f.path))
        assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) >= 17
        assert (f.model, f.level, f.part, f.opset) == ("cd16x", level, part, 17)
        assert f.weights_sha256 == resolve_model("cd16x").sha256[(level, part)]
        for value in (proto.graph.input[0], proto.graph.output[0]):
            dims = value.type.tensor_type.shape.dim
            assert dims[2].dim_param and dims[3].dim_param, f"{f.path.name}: height/width are not dynamic"
            assert value.type.tensor_type.elem_type == onnx.TensorProto.FLOAT  # fp16 graphs too
        dtype_bytes = 2 if f.precision == "fp16" else 4
        assert f.geometry == get_family("cd16x").build(level).geometry(dtype_bytes=dtype_bytes)


def test_reflection_padding_is_a_constant_reflect_pad(fp32_exports, slice_exports):
    """TensorRT's parser needs constant pads; the folded graph has them, the slice form has no Pad."""
    for f in fp32_exports.values():
        proto = onnx.load(str(f.path))
        inits = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
        pads = [n for n in proto.graph.node if n.op_type == "Pad"]
        assert pads and len(proto.graph.node) == len({n.name for n in proto.graph.node})
        for node in pads:
            assert onnx.helper.get_attribute_value(node.attribute[0]) == b"reflect"
            assert inits[node.input[1]].tolist() == [0, 0, 1, 1, 0, 0, 1, 1]
        assert not {"ConstantOfShape", "Transpose", "Constant"} & {n.op_type for n in proto.graph.node}
    for f in slice_exports.values():
        ops = {n.op_type for n in onnx.load(str(f.path)).graph.node}
        assert "Pad" not in ops and {"Slice", "Concat"} <= ops


@pytest.mark.parametrize("size", ["aligned", "odd"])
@pytest.mark.parametrize("variant", ["fp32_exports", "slice_exports"])
def test_graphs_run_at_other_sizes_like_torch(variant, size, modules, request):
    """Sizes the trace never saw: stride-aligned but not multiples of 16 (odd feature maps), and truly odd."""
    for (level, part), f in request.getfixturevalue(variant).items():
        s = f.geometry.stride
        hw = (13 * s, 7 * s) if size == "aligned" else (67, 45)
        seq = getattr(modules[level], "encoder" if part == "enc" else "decoder")
        err = verify_against_torch(f, seq, hw)
        assert err < 1e-4, f"{f.path.name} at {hw}: relative error {err:.2e}"


def test_fp16_graph_matches_fp32_within_fp16_precision(fp16_exports, modules):
    for (level, part), f in fp16_exports.items():
        assert f.precision == "fp16"
        err = verify_against_torch(f, getattr(modules[level], "encoder" if part == "enc" else "decoder"), (67, 45))
        assert err < 1e-2, f"{f.path.name}: relative error {err:.2e}"


def _intermediate_session(path):
    """The graph with every Conv and Relu output exposed, and which outputs are which."""
    proto = onnx.shape_inference.infer_shapes(onnx.load(str(path)))
    kinds = {n.output[0]: n.op_type for n in proto.graph.node if n.op_type in ("Conv", "Relu")}
    proto.graph.output.extend(v for v in proto.graph.value_info if v.name in kinds)
    session = ort.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"])
    return session, [kinds.get(o.name, "Relu") for o in session.get_outputs()]  # graph outputs end in ReLU


def test_activations_stay_in_fp16_range(fp32_exports):
    """Every activation on real images: post-ReLU below ~200, pre-ReLU below 1e3; fp16 (max 65504,
    11-bit significand) holds them with room. Statistics never see fp16 (next test)."""
    name = "goldengate_x_antimono"  # the pair with the largest activations measured
    peak = {"Relu": 0.0, "Conv": 0.0}
    for kind in ("content", "style"):
        x = load_rgb(REFERENCE / f"{name}.{kind}.png")[None]
        for level in LEVELS:
            feed = {"image": x}
            for part in ("enc", "dec"):
                session, kinds = _intermediate_session(fp32_exports[(level, part)].path)
                outputs = session.run(None, feed)
                for op, a in zip(kinds, outputs):
                    peak[op] = max(peak[op], float(np.abs(a).max()))
                feed = {"features": outputs[0]}
    assert 50 < peak["Relu"] < 256, peak
    assert peak["Conv"] < 1024, peak


def test_fp16_backend_returns_float32_and_stays_close(fp16_exports, ort_cpu):
    """fp16 graphs end to end against the same graphs in fp32 (which match torch to > 70 dB), at
    half the reference size: fp16 on a CPU is emulated and slow, the numerics are the same."""
    backend = OnnxRuntimeBackend(fp16_exports, device="cpu")
    f = backend.encode(5, torch.rand(1, 3, 96, 80))
    assert f.dtype == torch.float32 and backend.decode(5, f).dtype == torch.float32
    name = "face_x_matisse"
    content, style = (load_rgb(REFERENCE / f"{name}.{kind}.png")[:, ::2, ::2].copy() for kind in ("content", "style"))
    half, full = (to_uint8(Stylizer(be, max_memory="4G").stylize(content, style).image) for be in (backend, ort_cpu))
    got = psnr(half, full)
    assert got >= 40.0, f"fp16 vs fp32 graphs: {got:.2f} dB"


# ----------------------------------------------------------------------------------- onnxruntime
@pytest.mark.parametrize("tile", [None, 256], ids=["whole", "tile256"])
@pytest.mark.parametrize("name,alpha,expected", REFERENCE_CASES, ids=CASE_IDS)
def test_onnxruntime_matches_torch(ort_cpu, torch_outputs, name, alpha, expected, tile, measured):
    got = _stylize(ort_cpu, name, alpha, tile)
    vs_torch = psnr(got, torch_outputs(name, alpha))
    assert vs_torch >= 45.0, f"{expected.name} ({tile or 'whole'}): torch vs onnxruntime {vs_torch:.2f} dB"
    vs_paper = psnr(got, to_uint8(load_rgb(expected)))
    measured(f"{vs_torch:.2f} dB vs torch, {vs_paper:.2f} dB vs the paper's output")
    assert vs_paper >= 45.0, f"{expected.name}: onnxruntime vs the paper's output {vs_paper:.2f} dB"


def test_backends_implement_the_protocol(ort_cpu):
    assert isinstance(ort_cpu, Backend) and ort_cpu.device.type == "cpu"
    assert ort_cpu.active_providers() == ["CPUExecutionProvider"]
    assert set(ort_cpu.levels()) == set(LEVELS) and ort_cpu.geometry(3).stride == 4
    torch_backend = create_backend("torch", levels=(1,), device="cpu")
    assert isinstance(torch_backend, TorchBackend)
    assert ort_cpu.geometry(1) == torch_backend.geometry(1)  # same tiling decisions on both


def test_factory_rejects_what_it_cannot_run():
    with pytest.raises(UserError, match="unknown backend"):
        create_backend("tflite")
    with pytest.raises(UserError, match="(CUDA|tensorrt)"):
        create_backend("tensorrt", device="cpu")
    with pytest.raises(UserError, match="half"):
        create_backend("onnxruntime", device="cpu", half=True)
    with pytest.raises(UserError, match="takes no options"):
        create_backend("torch", onnx_dir="somewhere")


def test_user_folder_is_checked_and_cache_is_never_stale(fp32_exports, tmp_path):
    folder = tmp_path / "cache"
    folder.mkdir()
    for part in ("enc", "dec"):
        shutil.copy(fp32_exports[(1, part)].path, folder / onnx_filename("cd16x", part, 1))
    with pytest.raises(UserError, match="stylize export"):
        find_exports(folder, "cd16x", (1, 2))
    enc = folder / onnx_filename("cd16x", "enc", 1)
    before = enc.stat().st_mtime_ns
    model = resolve_model("cd16x")
    cached_exports(model, (1,), folder=folder)
    assert enc.stat().st_mtime_ns == before, "a fresh cached export was redone"
    proto = onnx.load(str(enc))  # pretend it was made from other weights
    onnx.helper.set_model_props(proto, {p.key: ("0" * 64 if p.key == "weights_sha256" else p.value)
                                        for p in proto.metadata_props})
    onnx.save(proto, str(enc))
    assert read_metadata(enc).weights_sha256 == "0" * 64
    exports = cached_exports(model, (1,), folder=folder)
    assert exports[(1, "enc")].weights_sha256 == model.sha256[(1, "enc")], "stale export was used"
    shutil.copy(folder / onnx_filename("cd16x", "dec", 1), enc)  # a decoder under an encoder's name
    with pytest.raises(UserError, match="metadata says"):
        find_exports(folder, "cd16x", (1,))


def test_cli_exports_checked_files(tmp_path):
    result = CliRunner().invoke(app, ["--model", "cd16x", "-o", str(tmp_path), "--levels", "2,1"])
    assert result.exit_code == 0, result.output
    assert result.output.count("checker ok") == 4 and "verified against torch" in result.output
    for level in (1, 2):
        for part in ("enc", "dec"):
            onnx.checker.check_model(str(tmp_path / onnx_filename("cd16x", part, level)), full_check=True)
    bad = CliRunner().invoke(app, ["--model", "cd16x", "-o", str(tmp_path), "--padding", "zeros"])
    assert bad.exit_code == 2 and bad.output == "error: padding must be one of reflect, slice, got 'zeros'\n"
    (tmp_path / "file").write_bytes(b"x")
    for out, why in ((tmp_path / "file", "not a folder"), (tmp_path / "file" / "sub", "cannot write the export folder")):
        bad = CliRunner().invoke(app, ["--model", "cd16x", "-o", str(out), "--levels", "1"])
        assert bad.exit_code == 2 and bad.output.startswith(f"error: {out}: {why}"), bad.output
        assert len(bad.output.splitlines()) == 1


def test_a_graph_that_fails_its_check_is_not_left_for_the_cache(tmp_path, monkeypatch):
    """The failing graph stayed in the folder, and the next ``cached_exports`` took it as
    fresh and used it unchecked; an opset past what torch exports was a traceback."""
    import stylize.export.onnx_export as onnx_export

    monkeypatch.setattr(onnx_export, "verify_against_torch", lambda f, seq, *a, **k: 1.0 if f.part == "dec" else 0.0)
    with pytest.raises(RuntimeError, match="onnxruntime differs from torch"):
        cached_exports(resolve_model("cd16x"), (1,), folder=tmp_path)
    assert not (tmp_path / onnx_filename("cd16x", "dec", 1)).exists()
    bad = CliRunner().invoke(app, ["--model", "cd16x", "-o", str(tmp_path / "x"), "--opset", "30"])
    assert bad.exit_code == 2 and bad.output.startswith("error: opset must be 17..")


# ----------------------------------------------------------------------------------- TensorRT
def test_engine_cache_key_changes_with_every_input(fp32_exports):
    f = fp32_exports[(3, "enc")]
    base = dict(exported=f, onnx_sha="a" * 64, max_hw=(512, 768), trt_version="10.3.0", gpu="H100-sm90")
    names = {engine_filename(**base)}
    for change in ({"exported": fp32_exports[(3, "dec")]}, {"exported": fp32_exports[(4, "enc")]},
                   {"onnx_sha": "b" * 64}, {"max_hw": (768, 512)}, {"trt_version": "10.4.0"}, {"gpu": "A100-sm80"}):
        names.add(engine_filename(**{**base, **change}))
    assert len(names) == 7
    assert "fp32" in engine_filename(**base) and "cd16x-enc3" in engine_filename(**base)


def test_engine_choice_covers_tiles_without_padding_them(fp32_exports, tmp_path):
    assert bucket_shape(416, 576) == (512, 768) and bucket_shape(512, 512) == (512, 512)
    built = {(512, 512): "small", (768, 768): "large"}
    assert pick_engine(built, 400, 500) == (512, 512)
    assert pick_engine(built, 600, 300) == (768, 768)
    assert pick_engine(built, 800, 100) is None
    f, other = fp32_exports[(2, "dec")], fp32_exports[(2, "enc")]
    for exported, hw, gpu in ((f, (512, 768), "H100-sm90"), (f, (1024, 256), "H100-sm90"),
                              (f, (256, 256), "A100-sm80"), (other, (256, 256), "H100-sm90")):
        (tmp_path / engine_filename(exported, "c" * 64, hw, "10.3.0", gpu)).write_bytes(b"")
    assert cached_shapes(tmp_path, f, "c" * 64, "10.3.0", "H100-sm90") == {(512, 768), (1024, 256)}
    assert cached_shapes(tmp_path, f, "c" * 64, "10.4.0", "H100-sm90") == set()


@requires_trt
@pytest.mark.parametrize("tile", [None, 256], ids=["whole", "tile256"])
def test_tensorrt_matches_torch_and_caches_engines(slice_exports, torch_outputs, tmp_path, tile):
    name, alpha = "avril_x_brushstrokes", 1.0
    backend = create_backend("tensorrt", device="cuda", onnx_dir=folder(slice_exports), engine_dir=tmp_path)
    got = psnr(_stylize(backend, name, alpha, tile), torch_outputs(name, alpha))
    assert got >= 45.0, f"torch vs tensorrt: {got:.2f} dB"
    assert backend.builds > 0 and list(tmp_path.glob("*.engine"))
    again = create_backend("tensorrt", device="cuda", onnx_dir=folder(slice_exports), engine_dir=tmp_path)
    assert psnr(_stylize(again, name, alpha, tile), torch_outputs(name, alpha)) >= 45.0
    assert again.builds == 0, "engines cached on disk were rebuilt"


@requires_trt
def test_tensorrt_odd_sizes_and_fp16(slice_exports, fp16_exports, modules, torch_outputs, tmp_path):
    """Slice-padded fp32 graphs at odd sizes; the fp16 graphs use ONNX reflect Pad, TensorRT's own."""
    backend = create_backend("tensorrt", device="cuda", onnx_dir=folder(slice_exports), engine_dir=tmp_path)
    for level in LEVELS:
        x = torch.rand(1, 3, 67, 45, device="cuda")
        ref = modules[level].to("cuda").encode(x)
        got = backend.encode(level, x)
        assert got.shape == ref.shape and (got - ref).abs().max() < 1e-3 * ref.abs().max()
    half = create_backend("tensorrt", device="cuda", half=True, onnx_dir=folder(fp16_exports), engine_dir=tmp_path)
    assert half.encode(5, torch.rand(1, 3, 64, 64, device="cuda")).dtype == torch.float32
    assert psnr(_stylize(half, "face_x_matisse", 1.0, 256), torch_outputs("face_x_matisse", 1.0)) >= 40.0


@requires_ort_gpu
def test_onnxruntime_gpu_provider_matches_torch(fp32_exports, torch_outputs):
    backend = create_backend("onnxruntime", device="cuda", onnx_dir=folder(fp32_exports))
    assert backend.device.type == "cuda" and "CUDAExecutionProvider" in backend.active_providers()
    for tile in (None, 256):
        got = psnr(_stylize(backend, "avril_x_brushstrokes", 1.0, tile), torch_outputs("avril_x_brushstrokes", 1.0))
        assert got >= 45.0, f"torch vs onnxruntime-gpu ({tile or 'whole'}): {got:.2f} dB"
