"""A gigapixel image in and out: a BigTIFF to a tiled TIFF at the input's own size, time and peak RSS.

The input is the sample content enlarged by libvips to cover ``--size`` and cropped to it, a
tiled, deflated BigTIFF made in constant memory (how a panorama arrives). The run is the
``stylize`` command as a child process (peak RSS from the kernel, ``wait4``) with no ``--res``:
it reads the TIFF by rows, keeps its images in scratch files and writes a tiled TIFF (a BigTIFF
only past 4 GB: the 40000x25000 output is 2.8 GiB). The
output is then checked from its header and a sample of its tiles (size, no NaN, not flat).

    python -m stylize.bench.gigapixel --size 40000x25000 --out out/giga
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from stylize.bench.measure import call_child, run_child
from stylize.models.weights import SAMPLE_CONTENT, SAMPLE_STYLE, resolve


def enlarged(content: Path, width: int, height: int):
    """The content enlarged by libvips (Lanczos 3) to cover width x height, centre-cropped: a
    lazy pyvips image, made in constant memory as it is saved."""
    import pyvips

    im = pyvips.Image.new_from_file(str(content), access="sequential")
    big = im.resize(max(width / im.width, height / im.height), kernel="lanczos3")
    return big.crop((big.width - width) // 2, (big.height - height) // 2, width, height)


def make_input(content: Path, width: int, height: int, path: Path) -> None:
    """:func:`enlarged`, as a tiled BigTIFF."""
    enlarged(content, width, height).tiffsave(str(path), tile=True, tile_width=256, tile_height=256, bigtiff=True,
                                              compression="deflate")


def check_output(path: Path, width: int, height: int, samples: int = 64) -> dict:
    """Size from the header; a spread of tiles decoded: finite, not one flat colour."""
    import tifffile

    with tifffile.TiffFile(path) as tf:
        page = tf.pages[0]
        fh, n = tf.filehandle, len(page.dataoffsets)
        stds = []
        for i in np.linspace(0, n - 1, samples).astype(int):
            fh.seek(page.dataoffsets[i])
            tile = page.decode(fh.read(page.databytecounts[i]), int(i), jpegtables=page.jpegtables)[0]
            stds.append(float(np.asarray(tile, np.float64).std()))
        return {"output_size": f"{page.imagewidth}x{page.imagelength}", "bigtiff": tf.is_bigtiff,
                "size_ok": (page.imagewidth, page.imagelength) == (width, height),
                "tiles_sampled": samples, "tiles_not_flat": int(sum(s > 1.0 for s in stds))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", default="40000x25000")
    ap.add_argument("--mode", default="auto", help="--stroke-scale")
    ap.add_argument("--out", type=Path, default=Path("out/gigapixel"))
    ap.add_argument("--timeout", type=float, default=7200)
    ap.add_argument("--keep", action="store_true", help="keep the input and output images")
    ap.add_argument("extra", nargs="*", help="more stylize options after --")
    a = ap.parse_args()
    width, height = (int(v) for v in a.size.lower().split("x"))
    a.out.mkdir(parents=True, exist_ok=True)
    src, out = a.out / f"in_{width}x{height}.tif", a.out / f"out_{width}x{height}_{a.mode}.tif"
    made = call_child(make_input, resolve(SAMPLE_CONTENT), width, height, src)
    if not made.ok:
        sys.exit(f"could not make the input: {made.output_tail}")
    mp = width * height / 1e6
    r = run_child([sys.executable, "-m", "stylize.cli", str(src), str(resolve(SAMPLE_STYLE)), "-o", str(out), "-q",
                   "--device", "cpu", "--stroke-scale", a.mode, "--max-pixels", str(max(width * height, 200_000_000)),
                   *a.extra], timeout=a.timeout)
    row = {"size": f"{width}x{height}", "megapixels": round(mp, 1), "mode": a.mode, "options": " ".join(a.extra),
           "input_gib": round(src.stat().st_size / 2**30, 2), "make_input_s": round(made.wall_s, 1),
           "make_input_peak_rss_gib": round(made.peak_rss_gib, 3), "returncode": r.returncode,
           "wall_s": round(r.wall_s, 1), "peak_rss_gib": round(r.peak_rss_gib, 3),
           "s_per_mp": round(r.wall_s / mp, 3), "timed_out": r.timed_out}
    if r.ok:
        row.update(check_output(out, width, height), output_gib=round(out.stat().st_size / 2**30, 2))
    else:
        row["error"] = r.output_tail[-400:]
    print(json.dumps(row), flush=True)
    (a.out / "gigapixel.json").write_text(json.dumps(row, indent=2) + "\n")
    if not a.keep:
        src.unlink(missing_ok=True)
        out.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
