"""Turning benchmark results into what a user reads: a markdown table and two plots.

Users pick hardware and settings from these, so every number says how it was obtained
(runs, warm-up, style size, nominal FLOPs) and on what (CPU, GPU, library versions, load).
Cells that failed stay visible: an out-of-memory at 8K is an answer, not a gap.
"""
from __future__ import annotations

import os
import platform
from importlib import metadata
from pathlib import Path

GiB = 2**30
STATUS_MARK = {"oom": "OOM", "timeout": "timeout", "error": "error", "skipped": "skipped"}


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _ram_bytes() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return None


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def machine_info() -> dict:
    """What the numbers were measured on; nothing that identifies the machine or its paths."""
    import torch

    info = {
        "cpu": _cpu_model(), "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "ram_gib": round((_ram_bytes() or 0) / GiB, 1), "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "versions": {p: v for p in ("torch", "numpy", "onnxruntime", "onnxruntime-gpu", "tensorrt", "nvidia-ml-py")
                     if (v := _version(p))},
        "gpus": [],
    }
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            info["gpus"].append({"name": p.name, "memory_gib": round(p.total_memory / GiB, 1),
                                 "capability": f"{p.major}.{p.minor}"})
        info["cuda"] = torch.version.cuda
        info["cudnn"] = torch.backends.cudnn.version()
    return info


def _label(spec: dict) -> str:
    if spec["mode"] == "paper":
        return f"paper pipeline ({spec['model']}, fp64 SVD on CPU) [{spec['device']}]"
    mode = spec["mode"]
    if mode == "tiled":
        mode = f"tiled {spec['tile']} px" if spec.get("tile") else f"tiled, budget {spec['max_memory']}"
    half = " fp16" if spec.get("half") else ""
    return f"{spec['model']} {spec['backend']} {mode} [{spec['device']}{half}]"


def _weights(result: dict) -> str:
    rnd = result.get("random_weight_levels") or []
    return f"random weights (levels {','.join(map(str, rnd))})" if rnd else "trained"


def _megapixels(cell: dict) -> float | None:
    hw = cell["result"].get("content_hw")
    if hw:
        return hw[0] * hw[1] / 1e6
    side = cell["spec"]["long_side"]  # a cell that never loaded its image: the sample is 16:9
    return side * round(side * 9 / 16) / 1e6


def _fmt(v, spec: str = ".2f", empty: str = "") -> str:
    return empty if v is None else format(v, spec)


def _runs(spec: dict, result: dict) -> str:
    if result["status"] != "ok":
        return ""
    return f"{len(result['times_s'])}" + (f" (+{spec['warmup']} warm-up)" if spec.get("warmup") else "")


def _gpu_peak(r: dict) -> str:
    parts = []
    if r.get("gpu_peak_allocated_bytes") is not None:
        parts.append(f"{r['gpu_peak_allocated_bytes'] / GiB:.2f}")
    nvml = r.get("nvml_process_peak_bytes")
    if nvml is None and r.get("nvml_device_peak_bytes") is not None:
        nvml = r["nvml_device_peak_bytes"] - r["nvml_device_used_before_bytes"]
    if nvml is not None:
        parts.append(f"NVML {nvml / GiB:.2f}")
    return " / ".join(parts)


def sorted_cells(data: dict) -> list[dict]:
    """Device, resolution, the paper pipeline first, then model, backend, mode."""
    from stylize.export.registry import BACKENDS

    modes, backends = ("paper", "whole", "tiled"), tuple(BACKENDS)
    index = lambda seq, v: seq.index(v) if v in seq else len(seq)  # noqa: E731
    return sorted(data["cells"], key=lambda c: (
        c["spec"]["device"], c["spec"]["long_side"], c["spec"]["mode"] != "paper", c["spec"]["model"],
        index(backends, c["spec"]["backend"]), index(modes, c["spec"]["mode"])))


def results_table(data: dict) -> str:
    head = ("| res | MP | model | backend | mode | device | weights | runs | median s | peak RSS GiB "
            "| peak GPU GiB | GFLOP/s | speed-up vs paper | memory vs paper | notes |")
    rows = [head, "|" + "---|" * (head.count("|") - 1)]
    failed_baselines = {(c["spec"]["res"], c["spec"]["device"]): STATUS_MARK.get(c["result"]["status"], "")
                        for c in data["cells"] if c["spec"]["mode"] == "paper" and c["result"]["status"] != "ok"}
    for c in sorted_cells(data):
        s, r = c["spec"], c["result"]
        ok = r["status"] == "ok"
        mode = s["mode"] if s["mode"] != "tiled" else (f"tiled {s['tile']}" if s.get("tile") else
                                                      f"tiled ({s['max_memory']})")
        if ok and s["mode"] in ("whole", "tiled") and r.get("tiles") is not None:
            per_level = r["tiles"] == len(s["levels"])
            mode += " (1 tile per level)" if per_level else f" ({r['tiles']} tiles over {len(s['levels'])} levels)"
        notes = STATUS_MARK.get(r["status"], "")
        if r.get("reason"):
            reason = r["reason"].replace("[enforce fail at alloc_cpu.cpp:127] err == 0. ", "")
            notes = f"{notes}: {reason[:160]}" if notes else reason[:160]
        speed = _fmt(r.get("speedup_vs_paper"), ".2f") + ("×" if r.get("speedup_vs_paper") else "")
        memory = _fmt(r.get("memory_vs_paper"), ".2f") + ("×" if r.get("memory_vs_paper") else "")
        failed = failed_baselines.get((s["res"], s["device"]))
        if ok and s["mode"] != "paper" and not speed and failed:
            speed = memory = f"paper {failed}"
        rows.append("| " + " | ".join([
            s["res"], _fmt(_megapixels(c), ".3g"), s["model"], s["backend"],
            mode, s["device"] + (" fp16" if s.get("half") else ""), _weights(r) if ok else "",
            _runs(s, r), _fmt(r.get("median_s"), ".2f") if ok else "—",
            _fmt(r.get("peak_rss_bytes") / GiB if r.get("peak_rss_bytes") else None, ".2f"),
            _gpu_peak(r), _fmt(r.get("gflops"), ".1f"), speed, memory, notes.replace("|", "/"),
        ]) + " |")
    return "\n".join(rows)


def macs_table(data: dict) -> str:
    rows = ["| model | level | encoder MACs/px | decoder MACs/px | total MACs/px | GFLOP per MP |",
            "|---|---|---|---|---|---|"]
    for model, levels in sorted(data["macs_per_pixel"].items()):
        total = 0.0
        for k, m in sorted(levels.items()):
            total += m["total"]
            rows.append(f"| {model} | {k} | {m['encoder']:,.0f} | {m['decoder']:,.0f} | {m['total']:,.0f} "
                        f"| {2 * m['total'] / 1e3:.1f} |")
        rows.append(f"| {model} | all | | | {total:,.0f} | {2 * total / 1e3:.1f} |")
    return "\n".join(rows)


def machine_line(m: dict) -> str:
    gpus = ", ".join(f"{g['name']} ({g['memory_gib']} GiB)" for g in m.get("gpus", [])) or "none visible to torch"
    versions = ", ".join(f"{k} {v}" for k, v in m["versions"].items())
    return (f"CPU: {m['cpu']}, {m['cores']} cores ({m['torch_threads']} torch threads), {m['ram_gib']} GiB RAM; "
            f"GPU: {gpus}; {m['os']}, Python {m['python']}; {versions}")


def markdown(data: dict) -> str:
    runs = data["runs"]
    commands = "\n".join(f"    {r['command']}" for r in runs if r.get("command"))
    loads = "; ".join(f"{r['started']}: {r['load_average_start'][0]:.1f} → {r.get('load_average_end', ['?'])[0]:.1f}"
                      if r.get("load_average_end") else f"{r['started']}: {r['load_average_start'][0]:.1f}"
                      for r in runs)
    style = {c["spec"].get("style_long_side") for c in data["cells"]}
    return "\n\n".join([
        "# stylize benchmark",
        f"**Machine.** {machine_line(data['machine'])}.",
        f"**Commands.**\n\n{commands}" if commands else "",
        "**How measured.** Every cell is its own child process. *median s*: median wall time of the timed "
        "runs (each one full stylization: style statistics, all levels, output buffer; no file I/O), after "
        "the warm-up runs shown (a cell timed once without warm-up also pays first-call setup, such as "
        "oneDNN kernel creation, a few seconds on CPU); *peak RSS*: the child's own peak resident memory (kernel `wait4` "
        "accounting: interpreter, weights, input images and everything else included); *peak GPU*: "
        "`torch.cuda.max_memory_allocated`, and NVML's view (sampled, a lower bound) where available. "
        f"Style image at {', '.join(str(s) for s in sorted(x for x in style if x))} px long side in every "
        "cell. *GFLOP/s* is on the nominal FLOPs (2 per MAC of the architecture, table below: content "
        "through encoder and decoder, style through the encoder, once per level); tiled mode also "
        "recomputes halos and some levels re-encode, which is not counted, so its GFLOP/s understates what "
        "the hardware executed. *speed-up vs paper* = the paper pipeline's median time / the cell's "
        "(above 1 is faster); *memory vs paper* = the cell's peak / the paper pipeline's (RSS on CPU, "
        "torch GPU peak on CUDA), both at the same resolution and device. The paper pipeline is the "
        "published procedure: whole image, fp64 covariance and SVD on the CPU, same 16x weights. "
        "OOM, timeout and skipped cells are results: the note says why.",
        f"**Load average (1 min) at start → end of each run.** {loads}. The machine may be shared: "
        "a high load means slower, noisier times.",
        "## Results", results_table(data),
        "## Compute per pixel, from the architecture",
        "Per pixel of the level's input image (decoder MACs counted per input pixel too).",
        macs_table(data),
        "![time vs megapixels](time_vs_mp.png)\n\n![peak memory vs megapixels](memory_vs_mp.png)",
    ]).replace("\n\n\n\n", "\n\n") + "\n"


def _ticks(data: dict) -> dict[float, str]:
    """megapixels → 'res (MP)' for each resolution in the results."""
    ticks = {}
    for c in data["cells"]:
        mp = _megapixels(c)
        ticks[mp] = f"{c['spec']['res']}\n{mp:.3g} MP"
    return ticks


def _series(data: dict, value) -> dict[str, list]:
    """label → [(MP, value or None, status)] over resolutions, None where the cell failed."""
    out: dict[str, list] = {}
    for c in sorted_cells(data):
        mp, v = _megapixels(c), value(c) if c["result"]["status"] == "ok" else None
        rnd = c["result"].get("random_weight_levels")
        label = _label(c["spec"]) + (f", random weights L{','.join(map(str, rnd))}" if rnd else "")
        out.setdefault(label, []).append((mp, v, c["result"]["status"]))
    return out


def _plain_log_axes(ax, ticks: dict[float, str]) -> None:
    """Log axes with numbers a reader can read (0.5, 2, 30, not 10^-0.3), and the x ticks at
    the benchmarked resolutions, named."""
    from matplotlib.ticker import FuncFormatter, NullFormatter, NullLocator

    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticks(sorted(ticks), [ticks[x] for x in sorted(ticks)])
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}" if f"{v:g}"[0] in "25" else ""))
    if len(ax.get_yticks()) > 8:
        ax.yaxis.set_minor_formatter(NullFormatter())


def _plot(ax, series: dict[str, list], ylabel: str, title: str, ticks: dict[float, str]) -> None:
    import matplotlib.transforms as mtransforms

    marks = mtransforms.blended_transform_factory(ax.transData, ax.transAxes)
    for i, (label, points) in enumerate(series.items()):
        ok = [(x, y) for x, y, _ in points if y is not None]
        baseline = label.startswith("paper")
        style = dict(color="black", linestyle="--", marker="s") if baseline else dict(marker="o", color=f"C{i % 10}")
        if ok:
            line, = ax.plot(*zip(*ok), label=label, linewidth=2 if baseline else 1.5, markersize=5, **style)
            color = line.get_color()
        else:
            color = style["color"]
        for x, y, status in points:  # failures sit on the top edge, named
            if y is None and status in ("oom", "timeout", "error"):
                ax.plot([x], [0.97], marker="x", color=color, markersize=9, transform=marks, clip_on=False)
                who = "paper " if baseline else ""
                ax.annotate(who + STATUS_MARK[status], (x, 0.97), xycoords=marks, textcoords="offset points",
                            xytext=(-8, -4), ha="right", fontsize=9, color=color)
    failures = any(y is None and st in ("oom", "timeout", "error") for pts in series.values() for _, y, st in pts)
    values = [y for points in series.values() for _, y, _ in points if y is not None]
    if values and failures:  # headroom, so the failure marks on the top edge clear the data
        ax.set_ylim(min(values) / 1.3, max(values) * 2.5)
    if not values:
        ax.set_ylim(0.1, 10)  # nothing succeeded: an empty, still log-scaled frame
        ax.text(0.5, 0.5, "no cell succeeded", transform=ax.transAxes, ha="center")
    _plain_log_axes(ax, ticks)
    ax.set_xlabel("image size (megapixels, log scale)")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=11)
    ax.grid(True, which="both", alpha=0.3)


def _legend_below(fig, axes) -> None:
    handles, labels = {}, []
    for ax in axes:
        for h, l in zip(*ax.get_legend_handles_labels()):
            if l not in handles:
                handles[l] = h
                labels.append(l)
    if labels:
        fig.legend([handles[l] for l in labels], labels, loc="lower center", ncol=2 if len(labels) > 3 else 1,
                   fontsize=9, frameon=False)
        fig.subplots_adjust(bottom=0.12 + 0.045 * ((len(labels) + 1) // 2))


def plot_time(data: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(10, 7))
    _plot(ax, _series(data, lambda c: c["result"]["median_s"]), "median wall time per image (s, log scale)",
          "Stylization time vs image size (x on the top edge: out of memory / timeout)", _ticks(data))
    fig.tight_layout()
    _legend_below(fig, [ax])
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_memory(data: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    gpu = any(c["result"].get("gpu_peak_allocated_bytes") for c in data["cells"])
    fig, axes = plt.subplots(1, 2 if gpu else 1, figsize=(14 if gpu else 10, 7), squeeze=False)
    _plot(axes[0][0], _series(data, lambda c: c["result"]["peak_rss_bytes"] / GiB),
          "peak resident memory of the process (GiB, log scale)", "Peak host memory (RSS) vs image size",
          _ticks(data))
    if gpu:
        cuda = {**data, "cells": [c for c in data["cells"] if c["spec"]["device"].startswith("cuda")]}
        _plot(axes[0][1], _series(cuda, lambda c: (c["result"].get("gpu_peak_allocated_bytes") or 0) / GiB or None),
              "torch.cuda.max_memory_allocated (GiB, log scale)", "Peak GPU memory vs image size",
              _ticks(cuda))
    fig.tight_layout()
    _legend_below(fig, axes[0])
    fig.savefig(path, dpi=90)
    plt.close(fig)


def write_report(data: dict, out: Path) -> None:
    """bench.md and the two plots beside results.json."""
    (out / "bench.md").write_text(markdown(data))
    plot_time(data, out / "time_vs_mp.png")
    plot_memory(data, out / "memory_vs_mp.png")
