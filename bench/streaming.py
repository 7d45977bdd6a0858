"""Memory flat in resolution: time, peak RSS and time per megapixel from 8K to 32K and beyond.

Each run is the ``stylize`` command as a child process (peak RSS from the kernel, ``wait4``),
on the sample content upscaled to each size, with the default budget unless told otherwise.

    python -m stylize.bench.streaming --res 8k,16k,32k --modes native,auto --out out/streaming
    python -m stylize.bench.streaming --res 8k --modes native --out out/stream-1g -- --max-memory 1G
    python -m stylize.bench.streaming --res 16k --modes native --tiles 1024,1536 --out out/stream-exact

With ``--tiles`` each size runs once per forced tile size and the outputs are compared (PSNR):
tiled output must not depend on the tile size. Writes ``streaming.json`` and ``streaming.md``.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from stylize.bench.measure import psnr_db, run_child
from stylize.imageio import RESOLUTIONS
from stylize.models.weights import SAMPLE_CONTENT, SAMPLE_STYLE, resolve


def _size(res: str, content: Path) -> tuple[int, int]:
    from PIL import Image

    long_side = RESOLUTIONS.get(res) or int(res)
    w, h = Image.open(content).size
    s = long_side / max(w, h)
    return round(w * s), round(h * s)


def _compare(a: Path, b: Path, rows: int = 1024) -> float:
    """PSNR of two large PNG/TIFF files, read in bands (a 16K pair is 800 MB as uint8)."""
    import tifffile
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = None  # our own outputs
    read = (lambda p: tifffile.imread(p)) if a.suffix == ".tif" else (lambda p: np.asarray(Image.open(p)))
    x, y = read(a), read(b)
    se, n = 0.0, 0
    for y0 in range(0, x.shape[0], rows):
        d = x[y0:y0 + rows].astype(np.float64) - y[y0:y0 + rows]
        se, n = se + float((d * d).sum()), n + d.size
    return psnr_db(np.zeros(1), np.full(1, np.sqrt(se / n)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--res", default="8k,16k,32k")
    ap.add_argument("--modes", default="native,auto", help="--stroke-scale values")
    ap.add_argument("--tiles", default="", help="comma list of forced tile sizes to compare (exactness)")
    ap.add_argument("--format", default="png", choices=["png", "tif"])
    ap.add_argument("--out", type=Path, default=Path("out/streaming"))
    ap.add_argument("--timeout", type=float, default=7200)
    ap.add_argument("--keep", action="store_true", help="keep the output images (default: delete after measuring)")
    ap.add_argument("extra", nargs="*", help="more stylize options after --")
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    content, style = resolve(SAMPLE_CONTENT), resolve(SAMPLE_STYLE)
    rows = []
    for res in a.res.split(","):
        w, h = _size(res, content)
        for mode in a.modes.split(","):
            outputs = []
            for tile in (a.tiles.split(",") if a.tiles else [""]):
                out = a.out / f"{res}_{mode}{f'_t{tile}' if tile else ''}.{a.format}"
                cmd = [sys.executable, "-m", "stylize.cli", str(content), str(style), "-o", str(out), "-q",
                       "--device", "cpu", "--res", res, "--stroke-scale", mode, *(["--tile", tile] if tile else []),
                       *a.extra]
                r = run_child(cmd, timeout=a.timeout)
                row = {"res": res, "size": f"{w}x{h}", "megapixels": round(w * h / 1e6, 1), "mode": mode,
                       "tile": tile or "auto", "options": " ".join(a.extra), "returncode": r.returncode,
                       "wall_s": round(r.wall_s, 1), "peak_rss_gib": round(r.peak_rss_gib, 3),
                       "s_per_mp": round(r.wall_s / (w * h / 1e6), 3), "timed_out": r.timed_out}
                if not r.ok:
                    row["error"] = r.output_tail[-400:]
                rows.append(row)
                print(json.dumps(row), flush=True)
                if r.ok:
                    outputs.append(out)
            if len(outputs) == 2:
                db = _compare(*outputs)
                rows.append({"res": res, "mode": mode, "compare": [p.name for p in outputs], "psnr_db": round(db, 2)})
                print(json.dumps(rows[-1]), flush=True)
            if not a.keep:
                for p in outputs:
                    p.unlink(missing_ok=True)
    (a.out / "streaming.json").write_text(json.dumps(rows, indent=2))
    lines = ["| res | size | MP | stroke scale | tile | options | s | peak RSS GiB | s/MP |", "|---" * 9 + "|"]
    for r in rows:
        if "compare" in r:
            lines.append(f"| {r['res']} | | | {r['mode']} | {' vs '.join(r['compare'])} | | PSNR {r['psnr_db']} dB | | |")
        else:
            status = "" if r["returncode"] == 0 else f" (rc {r['returncode']})"
            lines.append(f"| {r['res']} | {r['size']} | {r['megapixels']} | {r['mode']} | {r['tile']} | "
                         f"{r['options']} | {r['wall_s']}{status} | {r['peak_rss_gib']} | {r['s_per_mp']} |")
    (a.out / "streaming.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
