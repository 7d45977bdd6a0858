"""Does the output still look painted at 4K, 8K, 16K? The stroke-scale measure, per mode and size.

Let SMALL be the stylization at screen size (long side 1280) and BIG the output at a large
size, both made by the ``stylize`` command as measured child processes (time, peak RSS):

* look kept: SSIM (grayscale, 11-tap Gaussian window, sigma 1.5) between BIG downscaled to
  SMALL's size (Lanczos) and SMALL; 1 = the same picture;
* detail added: mean absolute gradient (grayscale, the 2048x2048 centre crop) of BIG divided
  by that of SMALL upscaled to BIG's size (bicubic); 1 = nothing beyond an upscale.

    python -m stylize.bench.stroke_scale --res 4k,8k --modes native,auto --out out/stroke
    python -m stylize.bench.stroke_scale --pair fullhd --res 4k,8k --out out/stroke-fullhd

Writes ``stroke_scale.json`` and ``stroke_scale.md`` in ``--out``; with ``--sheet`` also the
contact sheet (see :mod:`stylize.bench.contact_sheet`).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from stylize.bench.measure import run_child
from stylize.imageio import RESOLUTIONS
from stylize.models.weights import SAMPLE_CONTENT, SAMPLE_STYLE, load_registry, resolve, search_dirs

SCREEN = 1280
PAIRS = {  # name: (content, style), registry keys (found through the weights path) or files
    "sample": (SAMPLE_CONTENT, SAMPLE_STYLE),
    "fullhd": ("content/fullhd_1920x1080.jpg", "style/picasso_seated_nude_hr.jpg"),
}


def gray(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("L"), dtype=np.float64) / 255.0


def ssim(a: np.ndarray, b: np.ndarray, sigma: float = 1.5, taps: int = 11) -> float:
    """Mean SSIM of two grayscale images in [0, 1] (Wang et al. 2004 constants, valid region)."""
    x = torch.arange(taps, dtype=torch.float64) - taps // 2
    g = torch.exp(-x**2 / (2 * sigma**2))
    g = (g / g.sum())
    blur = lambda t: torch.nn.functional.conv2d(  # noqa: E731
        torch.nn.functional.conv2d(t, g.view(1, 1, 1, -1)), g.view(1, 1, -1, 1))
    ta, tb = (torch.from_numpy(v)[None, None] for v in (a, b))
    mu_a, mu_b = blur(ta), blur(tb)
    var_a, var_b = blur(ta * ta) - mu_a**2, blur(tb * tb) - mu_b**2
    cov = blur(ta * tb) - mu_a * mu_b
    c1, c2 = 0.01**2, 0.03**2
    s = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)) / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2))
    return float(s.mean())


def mean_gradient(img: np.ndarray, crop: int = 2048) -> float:
    h, w = img.shape
    y0, x0 = max(0, (h - crop) // 2), max(0, (w - crop) // 2)
    c = img[y0:y0 + crop, x0:x0 + crop]
    return float((np.abs(np.diff(c, axis=0)).mean() + np.abs(np.diff(c, axis=1)).mean()) / 2)


def look_and_detail(big_path: Path, small_path: Path) -> dict:
    big_im, small_im = Image.open(big_path).convert("L"), Image.open(small_path).convert("L")
    down = np.asarray(big_im.resize(small_im.size, Image.LANCZOS), dtype=np.float64) / 255.0
    up = np.asarray(small_im.resize(big_im.size, Image.BICUBIC), dtype=np.float64) / 255.0
    big, small = gray(big_path), gray(small_path)
    return {"look_kept_ssim": round(ssim(down, small), 4),
            "detail_added": round(mean_gradient(big) / max(mean_gradient(up), 1e-12), 3)}


def find_image(key: str) -> str:
    """A file, a registry key, or a path under a folder of $STYLIZE_WEIGHTS_PATH (../shared/images)."""
    if Path(key).is_file():
        return key
    if key in load_registry():
        return str(resolve(key))
    for folder in search_dirs():
        if (folder / key).is_file():
            return str(folder / key)
    raise SystemExit(f"{key}: not found (a file, a registry key, or under a folder of $STYLIZE_WEIGHTS_PATH)")


def stylize_cmd(content: str, style: str, out: Path, res: int, mode: str, extra: list[str]) -> list[str]:
    return [sys.executable, "-m", "stylize.cli", content, style, "-o", str(out), "-q", "--device", "cpu",
            "--res", str(res), "--stroke-scale", mode, *extra]


def measure(pair: str, sizes: list[str], modes: list[str], out: Path, extra: list[str], timeout: float) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    content, style = (find_image(k) for k in PAIRS[pair])
    small = out / f"{pair}_small_{SCREEN}.png"
    rows = []
    r = run_child(stylize_cmd(content, style, small, SCREEN, "native", extra), timeout=timeout)
    if not r.ok:
        raise SystemExit(f"screen-size stylization failed: {r.output_tail}")
    for size in sizes:
        px = RESOLUTIONS.get(size) or int(size)
        for mode in modes:
            big = out / f"{pair}_{size}_{mode}.png"
            r = run_child(stylize_cmd(content, style, big, px, mode, extra), timeout=timeout)
            row = {"pair": pair, "res": size, "mode": mode, "returncode": r.returncode, "wall_s": round(r.wall_s, 1),
                   "peak_rss_gib": round(r.peak_rss_gib, 3), "timed_out": r.timed_out}
            if r.ok:
                row.update(look_and_detail(big, small))
            else:
                row["error"] = r.output_tail[-300:]
            rows.append(row)
            print(json.dumps(row), flush=True)
    return {"pair": pair, "content": PAIRS[pair][0], "style": PAIRS[pair][1], "screen": SCREEN, "rows": rows}


def markdown(report: dict) -> str:
    lines = [f"Pair `{report['content']}` × `{report['style']}`; SMALL = the {report['screen']}-px stylization.", "",
             "| res | stroke scale | look kept (SSIM) | detail added | time s | peak RSS GiB |",
             "|---|---|---|---|---|---|"]
    for r in report["rows"]:
        look = r.get("look_kept_ssim", "failed")
        lines.append(f"| {r['res']} | {r['mode']} | {look} | {r.get('detail_added', '')} | {r['wall_s']} | "
                     f"{r['peak_rss_gib']} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pair", default="sample", choices=sorted(PAIRS))
    ap.add_argument("--res", default="4k,8k", help="comma list of sizes (1k..32k or pixels)")
    ap.add_argument("--modes", default="native,auto", help="comma list of --stroke-scale values")
    ap.add_argument("--out", type=Path, default=Path("out/stroke"))
    ap.add_argument("--timeout", type=float, default=3600)
    ap.add_argument("--sheet", action="store_true", help="also make the contact sheet of native vs auto at "
                    "the largest size")
    ap.add_argument("extra", nargs="*", help="more stylize options after --, e.g. -- --max-memory 8G")
    a = ap.parse_args()
    report = measure(a.pair, a.res.split(","), a.modes.split(","), a.out, a.extra, a.timeout)
    (a.out / "stroke_scale.json").write_text(json.dumps(report, indent=2))
    (a.out / "stroke_scale.md").write_text(markdown(report))
    print(markdown(report))
    if a.sheet:
        from stylize.bench.contact_sheet import contact_sheet

        size = a.res.split(",")[-1]
        sheet = contact_sheet(a.out / f"{a.pair}_{size}_native.png", a.out / f"{a.pair}_{size}_auto.png",
                              a.out / f"contact_sheet_{size}.jpg", labels=(f"native {size}", f"auto {size}"))
        print(f"wrote {sheet}")


if __name__ == "__main__":
    main()
