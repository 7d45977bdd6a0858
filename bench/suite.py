"""The benchmark matrix: resolutions x models x backends x modes x devices, plus the paper's
pipeline at every resolution and device as the yardstick.

Each cell runs as its own child (:mod:`bench.cell`) under :func:`bench.measure.run_child`, so
its peak RSS is its own and a crash, a timeout or an out-of-memory is a row in the table,
not the end of the suite. Results are saved after every cell; ``append`` keeps the cells of
an earlier run in the same folder, so a costly matrix can be run in parts (for example the
original VGG-19 at small sizes only) and reported as one.

Compute is counted from the architecture, not measured: per level the content passes once
through encoder and decoder and the style once through the encoder, which is the paper's
pipeline exactly. The engine may do more (tiles recompute their halos; levels whose
features are not cached encode twice), so its GFLOP/s is on these *nominal* FLOPs: a
figure to compare settings by, and a lower bound of what the hardware executed.
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from stylize.engine.errors import UserError
from stylize.export.registry import BACKENDS
from stylize.imageio import parse_resolution
from stylize.settings import positive_size
from stylize.models.weights import SAMPLE_CONTENT, SAMPLE_STYLE

from .cell import RESULT_PREFIX
from .measure import run_child

MODES = ("whole", "tiled")
BASELINE = "paper"


@dataclass
class SuiteOptions:
    """Every axis and setting of a run; the CLI maps its options one to one onto these."""

    res: list[str] = field(default_factory=lambda: ["1k", "2k", "4k"])
    models: list[str] = field(default_factory=lambda: ["cd16x"])
    backends: list[str] = field(default_factory=lambda: ["auto"])
    modes: list[str] = field(default_factory=lambda: list(MODES))
    devices: list[str] = field(default_factory=lambda: ["auto"])
    levels: tuple[int, ...] = (5, 4, 3, 2, 1)
    repeats: int = 3
    warmup: int = 1
    single_run_from: str | None = "4k"  # CPU cells this large: one run, no warm-up
    tile: int = 1024
    max_memory: str | None = None  # tiled mode: the engine's planner under this budget instead of --tile
    style_res: str | None = "512"
    baseline: bool = True
    baseline_model: str = "cd16x"
    max_baseline_res: str | None = "4k"
    timeout: float = 3600.0
    memory_cap: str | None = "auto"  # CPU cells: address-space cap; auto = MemAvailable at start
    half: bool = False
    append: bool = False
    content: str = SAMPLE_CONTENT
    style: str = SAMPLE_STYLE
    weights_dir: str | None = None
    command: str = ""  # the command line, recorded with the results


def split(text: str | list[str]) -> list[str]:
    items = text if isinstance(text, list) else str(text).split(",")
    return [s.strip() for s in items if s.strip()]


def mem_available() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def resolve_devices(devices: list[str]) -> list[str]:
    """'auto' is the CPU, and CUDA too when torch sees a GPU; a name torch does not know
    (``gpu``) is a usage error, not a matrix of failed cells."""
    import torch

    from stylize.engine.backend import parse_device

    out: list[str] = []
    for d in devices:
        try:
            parse_device(d)
        except UserError as e:
            raise UserError(f"--devices: {e}") from None
        for x in (["cpu"] + (["cuda"] if torch.cuda.is_available() else []) if d == "auto" else [d]):
            if x not in out:
                out.append(x)
    return out


def resolve_backends(backends: list[str]) -> list[str]:
    """'auto' is torch, plus onnxruntime and TensorRT where their packages are installed."""
    out: list[str] = []
    for b in backends:
        if b == "auto":
            chosen = [name for name, spec in BACKENDS.items() if spec.installed()]
        elif b in BACKENDS:
            chosen = [b]
        else:
            raise UserError(f"unknown backend '{b}': choose from auto, {', '.join(BACKENDS)}")
        out += [c for c in chosen if c not in out]
    return out


def level_macs(model: str, levels: tuple[int, ...]) -> dict[int, dict[str, float]]:
    """Multiply-accumulates per pixel of each level's input, from the layer specification."""
    import torch

    from stylize.models.architecture import _macs_per_pixel
    from stylize.models.zoo import get_family

    family, out = get_family(model), {}
    for k in sorted(set(levels)):
        with torch.device("meta"):  # shapes only: no weights are allocated
            m = family.build(k)
        total = m.geometry().macs_per_pixel
        enc = _macs_per_pixel(m.enc_layers, 1)
        out[k] = {"encoder": enc, "decoder": total - enc, "total": total}
    return out


def nominal_flops(macs: dict[int, dict[str, float]], content_hw, style_hw) -> float:
    """2 FLOP per MAC: content through encoder and decoder, style through the encoder, per level."""
    c, s = content_hw[0] * content_hw[1], style_hw[0] * style_hw[1]
    return 2.0 * sum(m["total"] * c + m["encoder"] * s for m in macs.values())


def cell_id(spec: dict) -> str:
    device = spec["device"] + ("-fp16" if spec.get("half") else "")
    return "|".join([spec["model"], spec["backend"], spec["mode"], device, spec["res"]])


def cell_spec(opts: SuiteOptions, res: str, model: str, backend: str, mode: str, device: str,
              cap: int | None) -> dict:
    """The JSON the child gets: everything it needs and nothing of the parent's state."""
    long_side = parse_resolution(res)
    single = (device == "cpu" and opts.single_run_from is not None
              and long_side >= parse_resolution(opts.single_run_from))
    return {
        "res": res, "long_side": long_side, "model": model, "backend": backend, "mode": mode,
        "device": device, "half": opts.half and device.startswith("cuda"), "levels": list(opts.levels),
        "content": opts.content, "style": opts.style, "style_long_side": parse_resolution(opts.style_res),
        "repeats": 1 if single else opts.repeats, "warmup": 0 if single else opts.warmup,
        "tile": None if opts.max_memory else opts.tile, "max_memory": opts.max_memory,
        "whole_budget": cap if device == "cpu" else None,
        "memory_cap": cap if device == "cpu" else None, "weights_dir": opts.weights_dir,
    }


def _precheck(spec: dict, opts: SuiteOptions) -> str | None:
    """Why a cell cannot run at all here, found without starting a child."""
    import torch

    if spec["device"].startswith("cuda") and not torch.cuda.is_available():
        return "no CUDA device visible to torch"
    runtime = BACKENDS[spec["backend"]]
    if runtime.needs_cuda and not spec["device"].startswith("cuda"):
        return f"{runtime.name} runs on CUDA only"
    if not runtime.installed():
        return f"package '{runtime.requires}' is not installed"
    if spec["half"] and not spec["device"].startswith("cuda"):
        return "fp16 is for CUDA only"
    if (spec["mode"] == BASELINE and opts.max_baseline_res
            and spec["long_side"] > parse_resolution(opts.max_baseline_res)):
        return f"paper pipeline not run above {opts.max_baseline_res} (--max-baseline-res)"
    return None


def build_matrix(opts: SuiteOptions, cap: int | None) -> list[dict]:
    """Baseline first at each resolution and device, then every engine setting."""
    cells = []
    models, modes = split(opts.models), split(opts.modes)  # no modes: the paper pipeline only
    for m in modes:
        if m not in MODES:
            raise UserError(f"unknown mode '{m}': choose from {', '.join(MODES)}")
    backends, devices = resolve_backends(split(opts.backends)), resolve_devices(split(opts.devices))
    for res in split(opts.res):
        for device in devices:
            if opts.baseline:
                cells.append(cell_spec(opts, res, opts.baseline_model, "torch", BASELINE, device, cap))
            for model in models if modes else []:
                for backend in backends:
                    for mode in modes:
                        cells.append(cell_spec(opts, res, model, backend, mode, device, cap))
    return cells


def _outcome(child, result: dict | None, timeout: float) -> dict:
    """What the child said, or what its exit status says when it could say nothing."""
    if result is not None:
        return result
    if child.timed_out:
        return {"status": "timeout", "reason": f"no result within {timeout:.0f} s"}
    if child.returncode == -9:
        return {"status": "oom", "reason": "killed by SIGKILL (the kernel's out-of-memory killer)"}
    last = [ln for ln in child.output_tail.strip().splitlines() if ln.strip()][-1:] or [""]
    return {"status": "error", "reason": f"exit {child.returncode}: {scrub(last[0])[:300]}"}


def scrub(text: str) -> str:
    """No path of this machine goes into a result file."""
    for root in sorted({str(Path.cwd()), sys.prefix, str(Path.home()), tempfile.gettempdir()}, key=len, reverse=True):
        text = text.replace(root + os.sep, "").replace(root, ".")
    return text


def run_cell_child(spec: dict, opts: SuiteOptions) -> dict:
    reason = _precheck(spec, opts)
    if reason:
        return {"status": "skipped", "reason": reason}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        child = run_child([sys.executable, "-m", "stylize.bench.cell", "--json", json.dumps(spec), "--result", str(out)],
                          timeout=opts.timeout)
        result = json.loads(out.read_text()) if out.is_file() else None
        if result is None:  # a child that printed its result but could not write the file
            lines = [ln for ln in child.output_tail.splitlines() if ln.startswith(RESULT_PREFIX)]
            result = json.loads(lines[-1][len(RESULT_PREFIX):]) if lines else None
    result = _outcome(child, result, opts.timeout)
    if "reason" in result:
        result["reason"] = scrub(result["reason"])
    result.update(child_wall_s=round(child.wall_s, 3), peak_rss_bytes=child.peak_rss_bytes,
                  returncode=child.returncode)
    return result


def add_derived(cells: list[dict], macs_by_model: dict[str, dict]) -> None:
    """Nominal GFLOP/s per cell, and each cell against the paper's pipeline at its resolution
    and device: speed-up (paper time / cell time) and memory (cell peak / paper peak; RSS on
    CPU, torch's GPU peak on CUDA)."""
    base = {(c["spec"]["res"], c["spec"]["device"]): c for c in cells
            if c["spec"]["mode"] == BASELINE and c["result"]["status"] == "ok"}
    for c in cells:
        spec, r = c["spec"], c["result"]
        macs = macs_by_model.get(spec["model"])
        if r["status"] != "ok" or macs is None:
            continue
        levels = {k: macs[str(k)] for k in spec["levels"]}
        r["nominal_gflop"] = nominal_flops(levels, r["content_hw"], r["style_hw"]) / 1e9
        r["gflops"] = r["nominal_gflop"] / r["median_s"]
        b = base.get((spec["res"], spec["device"]))
        if b is not None:
            br = b["result"]
            r["speedup_vs_paper"] = br["median_s"] / r["median_s"]
            key = "gpu_peak_allocated_bytes" if spec["device"].startswith("cuda") else "peak_rss_bytes"
            if br.get(key) and r.get(key):
                r["memory_vs_paper"] = r[key] / br[key]


def _load_previous(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _image_source(option: str, key_or_path: str, weights_dir: str | None) -> None:
    """A file that is an image, or a registry key present here: what every cell will read."""
    from stylize.imageio import probe_image
    from stylize.models.weights import load_registry, resolve

    if Path(key_or_path).is_file() or key_or_path not in load_registry():
        probe_image(key_or_path, role=option.lstrip("-"))  # a missing or unreadable file: one line
    else:
        resolve(key_or_path, weights_dir, download=False)


def check_options(opts: SuiteOptions) -> int | None:
    """Every option checked before any cell runs (a bad one would fail every cell, or none
    visibly); returns the memory cap in bytes for CPU cells (None: uncapped)."""
    for option, value in (("--res", ",".join(split(opts.res))), ("--style-res", opts.style_res),
                          ("--max-baseline-res", opts.max_baseline_res), ("--single-run-from", opts.single_run_from)):
        for item in split(value or ""):
            try:
                parse_resolution(item)
            except UserError as e:
                raise UserError(f"{option}: {e}") from None
    if not split(opts.res):
        raise UserError("--res: no resolution given")
    if not opts.timeout > 0:
        raise UserError(f"--timeout must be positive, got {opts.timeout}")
    if opts.max_memory is not None:
        positive_size("--max-memory", opts.max_memory)
    for option, value in (("--content", opts.content), ("--style", opts.style)):
        _image_source(option, value, opts.weights_dir)
    if not opts.memory_cap or opts.memory_cap == "none":
        return None
    return mem_available() if opts.memory_cap == "auto" else positive_size("--memory-cap", opts.memory_cap)


def run_suite(opts: SuiteOptions, out: Path, log=print) -> dict:
    """Run the matrix into ``out`` (results.json, bench.md, two PNG plots); returns the results."""
    from stylize.engine.atomic import output_folder

    from .report import machine_info, write_report

    cap = check_options(opts)
    cells = build_matrix(opts, cap)
    output_folder(out, "bench folder")
    path = out / "results.json"
    previous = _load_previous(path) if opts.append else {}
    ids = {cell_id(s) for s in cells}
    kept = [c for c in previous.get("cells", []) if c["id"] not in ids]
    run_info = {"command": scrub(opts.command), "started": time.strftime("%Y-%m-%d %H:%M:%S"),
                "options": {k: scrub(v) if isinstance(v, str) else v for k, v in asdict(opts).items()
                            if k != "command"},
                "memory_cap_bytes": cap, "load_average_start": os.getloadavg()}
    data = {"machine": machine_info(), "runs": previous.get("runs", []) + [run_info], "macs_per_pixel": {},
            "cells": kept}
    models = {s["model"] for s in cells} | {c["spec"]["model"] for c in kept}
    for model in sorted(models):
        data["macs_per_pixel"][model] = {str(k): v for k, v in level_macs(model, (1, 2, 3, 4, 5)).items()}
    for i, spec in enumerate(cells, 1):
        cid = cell_id(spec)
        log(f"[{i}/{len(cells)}] {cid} ...")
        result = run_cell_child(spec, opts)
        data["cells"].append({"id": cid, "spec": spec, "result": result})
        add_derived(data["cells"], data["macs_per_pixel"])
        log(f"[{i}/{len(cells)}] {cid}: {summary(result)}")
        path.write_text(json.dumps(data, indent=1))
    run_info.update(finished=time.strftime("%Y-%m-%d %H:%M:%S"), load_average_end=os.getloadavg())
    path.write_text(json.dumps(data, indent=1))
    write_report(data, out)
    return data


def summary(r: dict) -> str:
    if r["status"] != "ok":
        return f"{r['status']}: {r.get('reason', '')}"
    text = f"median {r['median_s']:.2f} s of {len(r['times_s'])}, peak RSS {r['peak_rss_bytes'] / 2**30:.2f} GiB"
    if r.get("gflops"):
        text += f", {r['gflops']:.1f} GFLOP/s"
    if r.get("speedup_vs_paper"):
        text += f", {r['speedup_vs_paper']:.2f}x paper speed"
    return text
