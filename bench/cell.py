"""One benchmark cell, run as its own child process by :mod:`bench.suite`.

    python -m stylize.bench.cell --json SPEC [--result FILE]

A fresh process per cell is what makes the numbers honest: peak RSS (read by the parent
with ``wait4``) and peak GPU memory belong to this one setting and nothing run before it,
and a cell that runs out of memory ends only itself. Out-of-memory is an outcome to report,
so it is caught here and written as a result with status ``"oom"``; anything the child
cannot catch (the kernel's OOM killer, a timeout) the parent records from the exit status.

The setup (imports, weights, ONNX export, image decoding and resizing) is not timed; each
timed run is one full ``stylize`` call (or the paper's pipeline), synchronised on CUDA.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import threading
import time
from pathlib import Path

import numpy as np
import torch

RESULT_PREFIX = "BENCH_RESULT "
# Messages by which torch, numpy, onnxruntime and glibc say an allocation failed.
OOM_MARKERS = ("out of memory", "can't allocate memory", "cannot allocate memory", "failed to allocate",
               "bad_alloc", "unable to allocate")


class Skip(Exception):
    """The cell cannot run here (package, device or size); the reason goes in the table."""


def is_oom(error: BaseException) -> bool:
    if isinstance(error, (MemoryError, torch.OutOfMemoryError)):
        return True
    return any(m in str(error).lower() for m in OOM_MARKERS)


def _import_everything() -> None:
    """Load every module and shared library a cell uses, so that the address-space cap meets
    allocations and not a library being mapped (which fails as an ImportError)."""
    from PIL import Image

    import stylize.bench.paper_baseline  # noqa: F401
    import stylize.imageio  # noqa: F401
    import stylize.engine.stylizer  # noqa: F401
    import stylize.models.zoo  # noqa: F401

    Image.init()


def cap_address_space(extra_bytes: int) -> int:
    """Let this process map at most ``extra_bytes`` more than it has mapped now.

    Relative to the current size because importing torch alone maps gigabytes it never
    touches. Over the cap an allocation fails inside the process (and is reported as OOM)
    instead of the kernel's OOM killer picking a victim on a shared machine. Not used with
    CUDA, whose driver reserves large address ranges up front.
    """
    _import_everything()
    with open("/proc/self/statm") as f:
        mapped = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    limit = mapped + int(extra_bytes)
    _, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    resource.setrlimit(resource.RLIMIT_AS, (limit, hard))
    return limit


class NvmlPeak:
    """Samples the driver's view of GPU memory in a thread while the cell runs.

    torch's own counter sees only its caching allocator; NVML also sees the CUDA context,
    cuDNN workspaces and other runtimes' allocations (onnxruntime, TensorRT). Sampling every
    ``interval`` seconds can miss a short spike, so these peaks are lower bounds. Per-process
    numbers need NVML to report this process's pid (not the case in some containers); the
    device-wide peak minus what was in use before the cell started is always recorded.
    """

    def __init__(self, device: torch.device, interval: float = 0.01):
        import pynvml

        self.nvml, self.interval, self.pid = pynvml, interval, os.getpid()
        pynvml.nvmlInit()
        self.handle = self._handle(device)
        self.before = pynvml.nvmlDeviceGetMemoryInfo(self.handle).used
        self.device_peak, self.process_peak = self.before, None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _handle(self, device: torch.device):
        """The NVML handle of torch's device, matched by UUID (CUDA_VISIBLE_DEVICES may renumber)."""
        nvml = self.nvml
        index = device.index if device.index is not None else torch.cuda.current_device()
        uuid = str(torch.cuda.get_device_properties(index).uuid).lower().removeprefix("gpu-")
        for i in range(nvml.nvmlDeviceGetCount()):
            h = nvml.nvmlDeviceGetHandleByIndex(i)
            u = nvml.nvmlDeviceGetUUID(h)
            u = (u.decode() if isinstance(u, bytes) else u).lower().removeprefix("gpu-")
            if u == uuid:
                return h
        return nvml.nvmlDeviceGetHandleByIndex(index)

    def _sample(self) -> None:
        nvml = self.nvml
        self.device_peak = max(self.device_peak, nvml.nvmlDeviceGetMemoryInfo(self.handle).used)
        for p in nvml.nvmlDeviceGetComputeRunningProcesses(self.handle):
            if p.pid == self.pid and p.usedGpuMemory is not None:
                self.process_peak = max(self.process_peak or 0, p.usedGpuMemory)

    def _poll(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self._sample()
            except self.nvml.NVMLError:
                return

    def stop(self) -> dict:
        self._stop.set()
        self._thread.join()
        try:
            self._sample()
        except self.nvml.NVMLError:
            pass
        self.nvml.nvmlShutdown()
        return {"nvml_process_peak_bytes": self.process_peak,
                "nvml_device_peak_bytes": self.device_peak,
                "nvml_device_used_before_bytes": self.before}


def _image(key_or_path: str, long_side: int | None) -> np.ndarray:
    from stylize.imageio import read_image
    from stylize.models.weights import resolve

    path = Path(key_or_path) if Path(key_or_path).is_file() else resolve(key_or_path, download=False)
    return read_image(path, long_side).rgb


def load_modules(model: str, levels: tuple[int, ...], weights_dir: str | None):
    """Real weights where the files are here, random ones of the right shapes elsewhere.

    Timing does not depend on the values, so a model whose files are missing (the original
    VGG-19 WCT levels 4-5) can still be timed; the result says which levels were random.
    """
    from stylize.models.weights import WeightsError
    from stylize.models.zoo import load_levels

    modules, random_levels = {}, []
    for k in sorted(set(levels)):
        try:
            modules.update(load_levels(model, (k,), weights_dir, download=False))
        except WeightsError:
            modules.update(load_levels(model, (k,), weights_dir, pretrained=False))
            random_levels.append(k)
    return modules, random_levels


def _engine(spec: dict, device: torch.device):
    """(the stylizer, levels with random weights) for an engine cell."""
    from stylize.engine.stylizer import Stylizer
    from stylize.export.torch_backend import TorchBackend

    levels = tuple(spec["levels"])
    random_levels: list[int] = []
    if spec["backend"] == "torch":
        modules, random_levels = load_modules(spec["model"], levels, spec.get("weights_dir"))
        backend = TorchBackend(modules, device, spec.get("half", False))
    else:
        from stylize.engine.errors import UserError
        from stylize.export.registry import create_backend
        try:
            backend = create_backend(spec["backend"], spec["model"], levels, device=str(device),
                                     half=spec.get("half", False), weights_dir=spec.get("weights_dir"))
        except (ImportError, UserError) as e:
            raise Skip(f"{spec['backend']} unavailable: {e}") from None
    if spec["mode"] == "whole":
        stylizer = Stylizer(backend, levels=levels, max_memory=spec.get("whole_budget"))
    else:
        stylizer = Stylizer(backend, levels=levels, tile=spec.get("tile"), max_memory=spec.get("max_memory"))
    return stylizer, random_levels


def _check_whole_fits(stylizer, content: np.ndarray, style: np.ndarray) -> None:
    """Whole-image mode only where the engine's own estimate fits the machine, planned as the
    run plans it: two more image buffers, beside the content and the style it holds (planned
    without them, an 8K cell passed here and then tiled level 1)."""
    _, h, w = content.shape
    tiled = [p.level for p in stylizer.plan(h, w, extra_buffers=2, held=content.nbytes + style.nbytes)
             if p.tile is not None]
    if tiled:
        budget = stylizer.max_memory
        raise Skip(f"whole image does not fit{f' {budget / 2**30:.1f} GiB' if budget else ''} "
                   f"(level(s) {','.join(map(str, tiled))} would tile)")


def prepare(spec: dict, device: torch.device, facts: dict):
    """Load everything a timed run needs and return the run; ``facts`` collects what the table
    shows about the cell (sizes, random-weight levels, and after a run its tile plan)."""
    content = _image(spec["content"], spec["long_side"])
    style = _image(spec["style"], spec.get("style_long_side"))
    facts["style_hw"] = list(style.shape[1:])
    if spec["mode"] == "paper":
        from stylize.bench.paper_baseline import paper_stylize

        levels = tuple(spec["levels"])
        modules, random_levels = load_modules(spec["model"], levels, spec.get("weights_dir"))
        # As the published code: sides that survive four poolings.
        content = np.ascontiguousarray(content[:, : content.shape[1] // 16 * 16, : content.shape[2] // 16 * 16])

        def run():
            paper_stylize(content, style, model=spec["model"], levels=levels, device=str(device), modules=modules)
    else:
        stylizer, random_levels = _engine(spec, device)
        if spec["mode"] == "whole":
            _check_whole_fits(stylizer, content, style)

        def run():
            report = stylizer.stylize(content, style).report
            facts["plans"] = [p.describe() for p in report.plans]
            facts["tiles"] = report.tiles
    facts.update(content_hw=list(content.shape[1:]), random_weight_levels=random_levels)
    return run


def _timed_runs(run, spec: dict, device: torch.device) -> list[float]:
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)
    for _ in range(spec.get("warmup", 0)):
        run()
    times = []
    for _ in range(max(1, spec.get("repeats", 1))):
        sync()
        t0 = time.perf_counter()
        run()
        sync()
        times.append(time.perf_counter() - t0)
    return times


def run_cell(spec: dict) -> dict:
    """Everything about one cell except what only the parent can see (its peak RSS)."""
    result: dict = {"status": "ok", "threads": torch.get_num_threads()}
    device = torch.device(spec["device"])
    monitor, facts = None, {}
    try:
        if device.type == "cuda":
            if not torch.cuda.is_available():
                raise Skip("no CUDA device visible to torch")
            try:
                monitor = NvmlPeak(device)
            except Exception as e:  # noqa: BLE001 - NVML is optional: torch's counters remain
                result["nvml"] = f"unavailable: {type(e).__name__}: {e}"
            result["gpu"] = torch.cuda.get_device_name(device)
        elif spec.get("memory_cap"):
            result["address_space_limit_bytes"] = cap_address_space(spec["memory_cap"])
        run = prepare(spec, device, facts)
        result["times_s"] = _timed_runs(run, spec, device)
        result["median_s"] = statistics.median(result["times_s"])
    except Skip as e:
        result.update(status="skipped", reason=str(e))
    except Exception as e:  # noqa: BLE001 - every outcome is a row in the table
        result.update(status="oom" if is_oom(e) else "error", reason=": ".join(filter(None, [type(e).__name__, _first_line(e)])))
    result.update(facts)
    if device.type == "cuda" and torch.cuda.is_available():
        result["gpu_peak_allocated_bytes"] = torch.cuda.max_memory_allocated(device)
        result["gpu_peak_reserved_bytes"] = torch.cuda.max_memory_reserved(device)
    if monitor is not None:
        result.update(monitor.stop())
    return result


def _first_line(e: BaseException) -> str:
    lines = [ln.strip() for ln in str(e).strip().splitlines() if ln.strip()]
    return lines[0][:300] if lines else ""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", required=True, help="the cell spec (see bench.suite.cell_spec)")
    ap.add_argument("--result", type=Path, default=None, help="also write the result JSON here")
    a = ap.parse_args()
    result = run_cell(json.loads(a.json))
    text = json.dumps(result)
    if a.result:
        a.result.write_text(text)
    print(RESULT_PREFIX + text, flush=True)


if __name__ == "__main__":
    main()
