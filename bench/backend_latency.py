"""Latency of the torch and onnxruntime backends on this machine: per level, and a 2k image.

``python -m stylize.bench.backend_latency --out DIR`` writes ``backend_latency.json`` and
``backend_latency.md``. Both backends get the same thread count and the same engine (tile
plan, statistics, transform): only encode/decode differ, which is what a deployment chooses.

* per level: encode + decode of one fixed-size tile, median (and min) of ``--repeats`` runs
  after one warm-up, with the throughput it implies (multiply-accumulates per second);
* 2k: a full five-level stylization of the sample photo at 2048 px long side, median of
  ``--image-repeats`` runs, and the PSNR between the two backends' outputs.

The load average is recorded before and after: on a shared machine it explains outliers.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

from stylize.bench.measure import psnr_db
from stylize.models.weights import SAMPLE_CONTENT, SAMPLE_STYLE

LEVELS = (5, 4, 3, 2, 1)


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _timed(fn, repeats: int) -> list[float]:
    fn()  # warm-up: first-run allocation and kernel selection are not latency
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return times


def level_latency(backend, level: int, tile: int, repeats: int) -> dict:
    g = backend.geometry(level)
    x = torch.rand(1, 3, tile, tile, generator=torch.Generator().manual_seed(level)).to(backend.device)
    times = _timed(lambda: backend.decode(level, backend.encode(level, x)), repeats)
    median = statistics.median(times)
    return {"level": level, "tile": tile, "median_s": median, "min_s": min(times), "runs": len(times),
            "gmacs_per_s": g.macs_per_pixel * tile * tile / median / 1e9}


def image_latency(backend, content: np.ndarray, style: np.ndarray, repeats: int, max_memory: str):
    from stylize.engine.stylizer import Stylizer

    stylizer = Stylizer(backend, max_memory=max_memory)
    out = {}
    times = _timed(lambda: out.__setitem__("result", stylizer.stylize(content, style)), repeats)
    report = out["result"].report
    plans = [{"level": p.level, "tile": p.tile} for p in report.plans]
    return {"median_s": statistics.median(times), "min_s": min(times), "runs": len(times),
            "tiles": report.tiles, "plans": plans}, out["result"].image


def make_backends(threads: int, weights_dir, onnx_dir):
    from stylize.export.registry import create_backend

    torch.set_num_threads(threads)
    torch_backend = create_backend("torch", device="cpu", weights_dir=weights_dir)
    ort_backend = create_backend("onnxruntime", device="cpu", weights_dir=weights_dir, onnx_dir=onnx_dir,
                                 threads=threads)
    return {"torch": torch_backend, "onnxruntime": ort_backend}


def markdown(report: dict) -> str:
    env = report["environment"]
    lines = [f"# Backend latency: torch vs onnxruntime ({env['device']})", "",
             f"torch {env['torch']}, onnxruntime {env['onnxruntime']}, {env['threads']} threads, "
             f"load average {env['load_before']} before, {env['load_after']} after.", "",
             f"## Per level: encode + decode of one {report['tile']}x{report['tile']} tile "
             f"(median of {report['repeats']})", "",
             "| level | torch ms | onnxruntime ms | speed-up | torch GMAC/s | onnxruntime GMAC/s |",
             "|---|---|---|---|---|---|"]
    for t, o in zip(report["levels"]["torch"], report["levels"]["onnxruntime"]):
        lines.append(f"| {t['level']} | {t['median_s'] * 1e3:.1f} | {o['median_s'] * 1e3:.1f} | "
                     f"{t['median_s'] / o['median_s']:.2f}x | {t['gmacs_per_s']:.1f} | {o['gmacs_per_s']:.1f} |")
    im = report["image"]
    lines += ["", f"## Full stylization, levels 5-1, content {im['content_size']}, style {im['style_size']} "
              f"(median of {im['repeats']})", "",
              "| backend | seconds | tiles |", "|---|---|---|"]
    for name in ("torch", "onnxruntime"):
        r = im[name]
        lines.append(f"| {name} | {r['median_s']:.2f} | {r['tiles']} |")
    lines += ["", f"Speed-up {im['torch']['median_s'] / im['onnxruntime']['median_s']:.2f}x; "
              f"torch vs onnxruntime output PSNR {im['psnr_db']:.1f} dB.", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(prog="python -m stylize.bench.backend_latency", description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True, help="folder for the JSON and markdown reports")
    parser.add_argument("--tile", type=int, default=512, help="tile side for the per-level latency")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per level (after one warm-up)")
    parser.add_argument("--res", type=int, default=2048, help="content long side for the full image")
    parser.add_argument("--style-res", type=int, default=1024, help="style long side")
    parser.add_argument("--image-repeats", type=int, default=2, help="timed full runs (after one warm-up)")
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="threads for both backends")
    parser.add_argument("--max-memory", default="8G", help="engine memory budget, same for both; it bounds the "
                        "whole process, which here holds both backends, hence more than the CLI default")
    parser.add_argument("--content", type=Path, help=f"content image (default: the sample {SAMPLE_CONTENT})")
    parser.add_argument("--style", type=Path, help=f"style image (default: the sample {SAMPLE_STYLE})")
    parser.add_argument("--weights-dir", type=Path)
    parser.add_argument("--onnx-dir", type=Path, help="use these exports instead of the cache")
    args = parser.parse_args(argv)

    import onnxruntime

    from stylize.imageio import read_image
    from stylize.models.weights import resolve

    load_before = os.getloadavg()
    backends = make_backends(args.threads, args.weights_dir, args.onnx_dir)
    levels = {}
    for name, be in backends.items():
        _say(f"per-level latency: {name}")
        levels[name] = [level_latency(be, k, args.tile, args.repeats) for k in LEVELS]

    content = read_image(args.content or resolve(SAMPLE_CONTENT), args.res).rgb
    style = read_image(args.style or resolve(SAMPLE_STYLE), args.style_res).rgb
    image = {"content_size": f"{content.shape[2]}x{content.shape[1]}",
             "style_size": f"{style.shape[2]}x{style.shape[1]}", "repeats": args.image_repeats}
    outputs = {}
    for name, be in backends.items():
        _say(f"full image {image['content_size']}: {name}")
        image[name], outputs[name] = image_latency(be, content, style, args.image_repeats, args.max_memory)
    image["psnr_db"] = psnr_db(*(np.round(outputs[n] * 255) for n in ("torch", "onnxruntime")))

    report = {
        "environment": {"device": f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)",
                        "torch": torch.__version__, "onnxruntime": onnxruntime.__version__,
                        "threads": args.threads, "load_before": [round(v, 2) for v in load_before],
                        "load_after": [round(v, 2) for v in os.getloadavg()]},
        "tile": args.tile, "repeats": args.repeats, "levels": levels, "image": image,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "backend_latency.json").write_text(json.dumps(report, indent=2))
    (args.out / "backend_latency.md").write_text(markdown(report))
    print(markdown(report))
    return report


if __name__ == "__main__":
    main()
