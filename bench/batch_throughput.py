"""Throughput of ``stylize batch`` against a shell loop of single ``stylize`` commands, and
what each batch optimisation is worth, on a generated folder of real photos.

    python -m stylize.bench.batch_throughput --out out/batch-bench [--res 1k] [--subset 3] [--rounds 1] [--skip-full]

Builds OUT/photos: the project's content images plus resized / cropped / re-encoded variants
(20 photos of mixed sizes and formats, nested folders, one without an extension), two
truncated JPEGs and a text file named notes.jpg. Then, back to back (timings on a shared
machine drift, so the variants run close together, in --rounds interleaved rounds, and each
variant is judged by its fastest round):

- full: ``stylize batch`` over the whole folder (skip with --skip-full);
- on the first --subset photos: the batch, the batch with style statistics recomputed per
  photo (--no-style-cache), the batch with reading/writing in line with compute
  (--no-overlap), and a bash loop running one ``stylize`` command per pair.

Every run is a fresh process timed end to end (start-up and model loading included: the
loop pays them per image, which is part of what a batch saves). Prints images/minute for
each and writes OUT/throughput.json. Needs STYLIZE_WEIGHTS_PATH (or --weights-dir) like the CLI.
"""
from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

from PIL import Image


CONTENT = ["avril.jpg", "brad_pitt.jpg", "cornell.jpg", "fullhd_1920x1080.jpg", "golden_gate.jpg", "lenna.jpg",
           "sailboat.jpg", "wct_in1_2048.jpg", "wct_in2.jpg"]
# (source, destination under photos/, operation): 11 variants → 20 photos with the originals.
VARIANTS = [
    ("fullhd_1920x1080.jpg", "variants/fullhd_720p.jpg", ("resize", (1280, 720))),
    ("wct_in1_2048.jpg", "variants/wct_in1_crop_4x3.jpg", ("crop", (224, 424, 1824, 1624))),
    ("avril.jpg", "variants/avril_square.png", ("crop", (315, 0, 1365, 1050))),
    ("cornell.jpg", "variants/cornell_x2.jpg", ("resize", (1458, 1024))),
    ("lenna.jpg", "variants/lenna_small.jpg", ("resize", (320, 320))),
    ("sailboat.jpg", "variants/sailboat_wide.jpg", ("crop", (0, 112, 512, 400))),
    ("golden_gate.jpg", "variants/golden_gate_tall.tif", ("crop", (112, 0, 400, 512))),
    ("brad_pitt.jpg", "variants/deep/brad_pitt_900", ("resize", (900, 900))),  # JPEG without extension
    ("wct_in2.jpg", "variants/deep/wct_in2_x2.jpg", ("resize", (840, 840))),
    ("fullhd_1920x1080.jpg", "variants/fullhd_portrait.jpg", ("crop", (420, 0, 1284, 1080))),
    ("wct_in1_2048.jpg", "variants/wct_in1_3000.jpg", ("resize", (3000, 3000))),
]
BROKEN = [("cornell.jpg", "broken/truncated_cornell.jpg", 0.4), ("avril.jpg", "broken/truncated_avril.jpg", 0.15)]
SUBSET = ["originals/avril.jpg", "variants/wct_in1_3000.jpg", "originals/lenna.jpg",
          "variants/golden_gate_tall.tif", "variants/fullhd_720p.jpg", "originals/cornell.jpg",
          "variants/deep/wct_in2_x2.jpg", "originals/sailboat.jpg"]
STYLES = ["style/brushstrokes.jpg", "style/picasso_seated_nude_hr.jpg"]
# The project's shared data lives beside the checkout (or at $STYLIZE_SHARED), never inside it.
DEFAULT_IMAGES = Path(os.environ.get("STYLIZE_SHARED", Path(__file__).resolve().parents[2] / "shared")) / "images"


def build_folder(photos: Path, images: Path) -> None:
    """20 good photos, 2 truncated JPEGs and a text file named .jpg (rebuilt from scratch)."""
    if photos.exists():
        shutil.rmtree(photos)
    for name in CONTENT:
        dest = photos / "originals" / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(images / "content" / name, dest)
    for src, dest, (op, arg) in VARIANTS:
        im = Image.open(images / "content" / src).convert("RGB")
        im = im.resize(arg, Image.LANCZOS) if op == "resize" else im.crop(arg)
        out = photos / dest
        out.parent.mkdir(parents=True, exist_ok=True)
        fmt = {".png": "PNG", ".tif": "TIFF"}.get(out.suffix, "JPEG")
        im.save(out, format=fmt, **({"quality": 92} if fmt == "JPEG" else {}))
    for src, dest, keep in BROKEN:
        data = (images / "content" / src).read_bytes()
        (photos / dest).parent.mkdir(parents=True, exist_ok=True)
        (photos / dest).write_bytes(data[: int(len(data) * keep)])
    (photos / "notes.jpg").write_text("client notes: crop the sky, warmer tones\n")


def timed(cmd: list[str], label: str) -> dict:
    print(f"\n$ {' '.join(shlex.quote(c) for c in cmd)}", flush=True)
    t = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wall = time.perf_counter() - t
    tail = [line for line in proc.stdout.splitlines() if line.strip()][-8:]
    print("\n".join(f"  {line}" for line in tail))
    print(f"  [{label}: exit {proc.returncode}, {wall:.1f}s wall]", flush=True)
    return {"label": label, "rc": proc.returncode, "wall_s": wall}


CLI_MODULE = "stylize.cli"  # what the ``stylize`` command runs, for both the batch and the loop


def batch_cmd(photos: Path, styles: list[Path], out: Path, res: str, extra: list[str]) -> list[str]:
    return [sys.executable, "-m", CLI_MODULE, "batch", str(photos), *map(str, styles), "-o", str(out),
            "--res", res, "-q", *extra]


def report(out: Path) -> list[dict]:
    path = out / "batch-report.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def loop_script(photos: list[Path], styles: list[Path], out: Path, res: str, extra: list[str]) -> str:
    """The shell loop a user would write: one process per photo × style."""
    py, opts = shlex.quote(sys.executable), " ".join(shlex.quote(e) for e in ["--res", res, "-q", *extra])
    lines = [f"mkdir -p {shlex.quote(str(out))}", f"for photo in {' '.join(shlex.quote(str(p)) for p in photos)}; do",
             f"  for style in {' '.join(shlex.quote(str(s)) for s in styles)}; do",
             '    name=$(basename "$photo"); sname=$(basename "$style")',
             f'    {py} -m {CLI_MODULE} "$photo" "$style" -o {shlex.quote(str(out))}/"${{name%.*}}__${{sname%.*}}.png" '
             f'{opts} || echo "failed: $photo"', "  done", "done"]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--res", default="1k")
    ap.add_argument("--subset", type=int, default=3, help="photos in the batch-vs-loop comparison (max 8)")
    ap.add_argument("--rounds", type=int, default=1, help="interleaved repetitions of the comparison")
    ap.add_argument("--skip-full", action="store_true", help="skip the batch over the whole 20-photo folder")
    ap.add_argument("--prepare-only", action="store_true", help="build the folder and stop")
    ap.add_argument("--images", type=Path, default=DEFAULT_IMAGES, help="the shared images folder")
    ap.add_argument("--weights-dir", default=None)
    args = ap.parse_args()
    extra = ["--weights-dir", args.weights_dir] if args.weights_dir else []
    args.out.mkdir(parents=True, exist_ok=True)
    photos = args.out / "photos"
    build_folder(photos, args.images)
    styles = [args.images / s for s in STYLES]
    print(f"built {photos}: 20 photos + 2 truncated JPEGs + notes.jpg; styles: "
          + ", ".join(f"{s.name} {Image.open(s).size[0]}x{Image.open(s).size[1]}" for s in styles))
    if args.prepare_only:
        return
    runs: dict[str, list[dict]] = {}
    full: dict = {}
    if not args.skip_full:
        out = args.out / "full"
        shutil.rmtree(out, ignore_errors=True)
        full = timed(batch_cmd(photos, styles, out, args.res, extra), "batch, 20 photos")
        rows = report(out)
        full.update(pairs=sum(r["status"] == "done" for r in rows), failed=sum(r["status"] == "failed" for r in rows),
                    engine_s=sum(r["compute_seconds"] + r["style_seconds"] for r in rows))
        full["images_per_min"] = 60 * full["pairs"] / full["wall_s"]
        print(f"  20-photo batch: {full['pairs']} pairs ({full['failed']} failed) in {full['wall_s']:.1f}s = "
              f"{full['images_per_min']:.2f} images/min")

    subset_dir = args.out / "subset"
    shutil.rmtree(subset_dir, ignore_errors=True)
    chosen = SUBSET[: max(1, min(args.subset, len(SUBSET)))]
    for rel in chosen:
        (subset_dir / Path(rel).name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(photos / rel, subset_dir / Path(rel).name)
    n = len(chosen) * len(styles)
    print(f"\ncomparison on {len(chosen)} photos × {len(styles)} styles = {n} pairs: {', '.join(chosen)}")
    variants = [("batch", []), ("batch --no-style-cache", ["--no-style-cache"]),
                ("batch --no-overlap", ["--no-overlap"]), ("shell loop of stylize", None)]
    loop_out = args.out / "loop"
    script = loop_script(sorted(subset_dir.iterdir()), styles, loop_out, args.res, extra)
    print("\nloop script:\n" + script)
    for round_ in range(args.rounds):  # interleaved rounds; each variant keeps its fastest (least disturbed) run
        for label, flags in variants:
            out = loop_out if flags is None else args.out / label.replace(" --", "-").replace(" ", "_")
            shutil.rmtree(out, ignore_errors=True)
            cmd = ["bash", "-c", script] if flags is None else batch_cmd(subset_dir, styles, out, args.res,
                                                                         flags + extra)
            run = timed(cmd, f"{label}, round {round_ + 1}")
            rows = report(out)
            run["pairs"] = len(list(loop_out.glob("*.png"))) if flags is None else \
                sum(r["status"] == "done" for r in rows)
            run["engine_s"] = sum(r["compute_seconds"] + r["style_seconds"] for r in rows)
            run["io_s"] = sum(r["read_seconds"] + r["write_seconds"] for r in rows)
            run["style_s"] = {r["style"].rsplit("/", 1)[-1]: r["style_seconds"] for r in rows if r["style_seconds"]}
            runs.setdefault(label, []).append(run)

    short = {label: r["pairs"] for label, rs in runs.items() for r in rs if r["pairs"] != n}
    if short:  # a comparison with a variant that failed is no comparison
        raise SystemExit(f"pairs done out of {n}: {short}; see the runs' output above")
    best = {label: min(rs, key=lambda r: r["wall_s"]) for label, rs in runs.items()}
    print(f"\n{'run (fastest of ' + str(args.rounds) + ')':<28}{'pairs':>6}{'wall s':>9}{'images/min':>12}"
          f"{'engine s':>10}{'read+write s':>14}")
    for label, r in best.items():
        r["images_per_min"] = 60 * r["pairs"] / r["wall_s"]
        engine = f"{r['engine_s']:>10.1f}{r['io_s']:>14.1f}" if r["engine_s"] else f"{'-':>10}{'-':>14}"
        print(f"{label:<28}{r['pairs']:>6}{r['wall_s']:>9.1f}{r['images_per_min']:>12.2f}{engine}")
    base, loop = best["batch"], best["shell loop of stylize"]
    nocache, noover = best["batch --no-style-cache"], best["batch --no-overlap"]
    print(f"\nbatch vs loop: {base['images_per_min'] / loop['images_per_min']:.2f}x the throughput")
    print(f"cached style statistics save {nocache['wall_s'] - base['wall_s']:.1f}s of {nocache['wall_s']:.1f}s wall "
          f"({100 * (1 - base['wall_s'] / nocache['wall_s']):.0f}%); computing them once per style took "
          + ", ".join(f"{k} {v:.1f}s" for k, v in base["style_s"].items()))
    print(f"I/O overlap saves {noover['wall_s'] - base['wall_s']:.1f}s of {noover['wall_s']:.1f}s wall "
          f"({100 * (1 - base['wall_s'] / noover['wall_s']):.0f}%); reading + writing in line took "
          f"{noover['io_s']:.1f}s in the --no-overlap run: the most the threads can hide")
    (args.out / "throughput.json").write_text(json.dumps({"res": args.res, "subset": chosen, "styles": STYLES,
                                                          "full": full, "runs": runs}, indent=2))


if __name__ == "__main__":
    main()
