"""Measure a command as a child process: wall time and peak RSS, the way a user lives it.

Peak RSS comes from the kernel's accounting of that one child (``wait4`` rusage, taken by a
small launcher process), so it includes everything the process touched, interpreter and
libraries too, and nothing of the parent. An out-of-memory kill or a crash is a recorded
result, not an exception.

    python -m stylize.bench.measure --res 4k --out out/compare   # engine vs the paper's pipeline
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from stylize.allocator import tuned_environ
from stylize.models.weights import SAMPLE_CONTENT, SAMPLE_STYLE


@dataclass
class ChildResult:
    command: list[str]
    returncode: int
    wall_s: float
    peak_rss_bytes: int
    output_tail: str
    timed_out: bool = False  # killed by us at ``timeout``, not by the kernel or itself

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    @property
    def peak_rss_gib(self) -> float:
        return self.peak_rss_bytes / 2**30


# The kernel carries a process's peak RSS across exec, and a child spawned from this process
# starts as a copy (or a vfork) of it, so the child's ru_maxrss is at least this process's own
# peak: a 16K controls bench, whose parent drew a 400-MB mask, reported 1.09 GiB for runs that
# peaked at 0.68. This launcher is exec'd first (a fresh, small image) and spawns the command
# itself: its wait4 rusage is the command's alone. It writes "exit code, peak RSS KiB, wall s".
LAUNCHER = ("import os, subprocess, sys, time; t = time.perf_counter(); p = subprocess.Popen(sys.argv[2:]); "
            "_, status, usage = os.wait4(p.pid, 0); w = time.perf_counter() - t; "
            "open(sys.argv[1], 'w').write(f'{os.waitstatus_to_exitcode(status)} {usage.ru_maxrss} {w}')")


def run_child(command: list[str], env: dict[str, str] | None = None, timeout: float | None = None,
              tuned: bool = True) -> ChildResult:
    """Run ``command`` and return its wall time and its own peak RSS (``wait4`` rusage, taken
    by :data:`LAUNCHER`, so none of this process's memory counts). ``tuned``: with the command
    line's allocator settings (:mod:`stylize.allocator`); without them, as a program that
    imports the library runs."""
    env = tuned_environ(env) if tuned else dict(os.environ if env is None else env)
    env["STYLIZE_NO_REEXEC"] = "1"  # set or deliberately not: measure this very process
    with tempfile.TemporaryFile("w+") as log, tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "rusage"
        t0 = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-c", LAUNCHER, str(report), *command], stdout=log,
                                stderr=subprocess.STDOUT, env=env, start_new_session=True)
        killed = threading.Event()
        def kill() -> None:  # the launcher and the command: one session
            killed.set()
            os.killpg(proc.pid, signal.SIGKILL)

        timer = threading.Timer(timeout, kill) if timeout else None
        if timer:
            timer.start()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        if timer:
            timer.cancel()
        code, peak_kib = os.waitstatus_to_exitcode(status), usage.ru_maxrss
        if report.is_file():  # the launcher ran to the end: the command's own figures
            code_text, peak_text, wall_text = report.read_text().split()
            code, peak_kib, wall = int(code_text), int(peak_text), float(wall_text)
        log.seek(0)
        tail = log.read()[-2000:]
    return ChildResult(command, code, wall, peak_kib * 1024, tail, killed.is_set())


def call_child(function, *args, timeout: float | None = None, tuned: bool = True) -> ChildResult:
    """Call a module-level ``function`` with ``args`` in a child process, measured as a command:
    making a bench's inputs (a gigapixel TIFF, a 200-MP JPEG) must not count in any peak of the
    bench itself. Arguments travel as JSON, a Path as its string: the function takes either."""
    module = function.__module__
    if module == "__main__":  # a bench run as `python -m stylize.bench.NAME`
        module = sys.modules["__main__"].__spec__.name
    code = ("import importlib, json, sys; module, name = sys.argv[1].split(':'); "
            "getattr(importlib.import_module(module), name)(*json.loads(sys.argv[2]))")
    given = json.dumps([str(a) if isinstance(a, Path) else a for a in args])
    return run_child([sys.executable, "-c", code, f"{module}:{function.__qualname__}", given], timeout=timeout,
                     tuned=tuned)


def psnr_db(a: np.ndarray, b: np.ndarray, peak: float = 255.0) -> float:
    """PSNR of two same-shape arrays on a 0..peak scale; identical arrays give inf."""
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return float("inf") if mse == 0 else float(10 * np.log10(peak**2 / mse))


def _sample(key: str) -> str:
    from stylize.models.weights import resolve

    return str(resolve(key))


def compare(res: str, out: Path, style_res: str | None, max_memory: str | None, tile: int | None,
            engine_only: bool = False, stroke_scale: str = "native") -> dict:
    """The engine (defaults, at ``stroke_scale``: native is the paper's own algorithm, so the
    comparison is like for like) and the paper's whole-image pipeline on the sample pair."""
    from PIL import Image

    out.mkdir(parents=True, exist_ok=True)
    content, style = _sample(SAMPLE_CONTENT), _sample(SAMPLE_STYLE)
    common = ["--res", res] + (["--style-res", style_res] if style_res else [])
    engine_cmd = [sys.executable, "-m", "stylize.cli", content, style, "-o", str(out / f"engine_{res}.png"), "-q",
                  "--device", "cpu", "--stroke-scale", stroke_scale, *common]
    engine_cmd += (["--max-memory", max_memory] if max_memory else []) + (["--tile", str(tile)] if tile else [])
    paper_cmd = [sys.executable, "-m", "stylize.bench.paper_baseline", content, style, "-o", str(out / f"paper_{res}.png"),
                 *common]
    # Recorded without this machine's paths: the interpreter, the sample pair's registry keys, $OUT.
    names = {sys.executable: "python", content: SAMPLE_CONTENT, style: SAMPLE_STYLE}

    def recorded(r: ChildResult) -> dict:
        command = [names.get(a, a.replace(str(out), "$OUT")) for a in r.command]
        return {**asdict(r), "command": command, "peak_rss_gib": round(r.peak_rss_gib, 3)}

    rows = {"engine": run_child(engine_cmd)}
    if engine_only:
        (out / f"engine_{res}.json").write_text(json.dumps(recorded(rows["engine"]), indent=2))
        return {"engine": recorded(rows["engine"])}
    rows["paper"] = run_child(paper_cmd)
    report = {name: recorded(r) for name, r in rows.items()}
    e, p = rows["engine"], rows["paper"]
    if e.ok and p.ok:
        a = np.asarray(Image.open(out / f"engine_{res}.png").convert("RGB"), dtype=np.float64)
        b = np.asarray(Image.open(out / f"paper_{res}.png").convert("RGB"), dtype=np.float64)
        h, w = min(a.shape[0], b.shape[0]), min(a.shape[1], b.shape[1])
        report["ratios"] = {"speedup_vs_paper": round(p.wall_s / e.wall_s, 3),
                            "memory_fraction_of_paper": round(e.peak_rss_bytes / p.peak_rss_bytes, 3),
                            "psnr_engine_vs_paper_db": round(psnr_db(a[:h, :w], b[:h, :w]), 2)}
    (out / f"compare_{res}.json").write_text(json.dumps(report, indent=2))
    return report


def main() -> None:
    ap = argparse.ArgumentParser(description="engine vs the paper's pipeline, each as a measured child process")
    ap.add_argument("--res", default="4k")
    ap.add_argument("--style-res", default=None)
    ap.add_argument("--max-memory", default=None)
    ap.add_argument("--tile", type=int, default=None)
    ap.add_argument("--out", type=Path, default=Path("out/compare"))
    ap.add_argument("--engine-only", action="store_true", help="measure the engine alone (e.g. 8K)")
    ap.add_argument("--stroke-scale", default="native", help="the engine's --stroke-scale (default native: the "
                    "paper's algorithm, comparable pixel for pixel)")
    a = ap.parse_args()
    report = compare(a.res, a.out, a.style_res, a.max_memory, a.tile, a.engine_only, a.stroke_scale)
    for name, r in report.items():
        if name == "ratios":
            continue
        print(f"{name:7s} rc={r['returncode']} wall={r['wall_s']:.1f}s peak_rss={r['peak_rss_gib']:.2f} GiB")
    if "ratios" in report:
        print(json.dumps(report["ratios"]))


if __name__ == "__main__":
    main()
