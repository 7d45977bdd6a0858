"""The creative controls at a large size: time and peak RSS of each against the plain run, and
a picture of each (the README's), with a 1:1 crop across the mask's edge.

    python -m stylize.bench.controls --res 8k --out out/controls
    python -m stylize.bench.controls --res 16k --mask-side 15360 --only plain,mask   # a mask painted at print size

Every run is the ``stylize`` command as a child process (peak RSS from the kernel). The mask is
made here: left third keeps the photo, middle third the first style, right third the second,
so the sheet shows both a style-to-style and a photo-to-style edge.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from stylize.bench.measure import run_child
from stylize.models.weights import SAMPLE_CONTENT, resolve

Image.MAX_IMAGE_PIXELS = None  # a script of its own, reading its own outputs
STYLES = ("style/wct_in1_2048.jpg", "style/brushstrokes.jpg")


def find(key: str) -> str:
    from stylize.bench.stroke_scale import find_image

    return find_image(key)


def make_mask(content: str, out: Path, long_side: int | None = None) -> Path:
    """Three flat labels in vertical thirds, at the content's size or scaled to ``long_side``."""
    w, h = Image.open(content).size
    if long_side:
        w, h = round(w * long_side / max(w, h)), round(h * long_side / max(w, h))
    mask = np.zeros((h, w, 3), np.uint8)
    mask[:, w // 3:] = 128
    mask[:, 2 * w // 3:] = 255
    Image.fromarray(mask).save(out)
    return out


def runs(content: str, styles: list[str], mask: Path) -> dict[str, list[str]]:
    return {"plain": [styles[0]], "mix 0.5/0.5": [*styles, "--style-weights", "0.5,0.5"],
            "preserve luminance": [styles[0], "--preserve-color", "luminance"],
            "preserve style colours": [styles[0], "--preserve-color", "style"],
            "mask (photo | a | b)": [*styles, "--mask", str(mask)]}


def sheet(images: dict[str, Path], out: Path, view: int = 640, crop: int = 320) -> Path:
    """Each output downscaled, and under it a 1:1 crop at the photo|style edge of the mask."""
    names = list(images)
    ims = {n: Image.open(p).convert("RGB") for n, p in images.items()}
    w, h = next(iter(ims.values())).size
    vh = round(view * h / w)
    x0, y0 = w // 3 - crop // 2, h // 2 - crop // 2
    pad = 24
    canvas = Image.new("RGB", (len(names) * (view + pad), pad + vh + pad + crop + pad), "white")
    draw = ImageDraw.Draw(canvas)
    for i, n in enumerate(names):
        x = i * (view + pad)
        draw.text((x + 4, 6), n, fill="black")
        canvas.paste(ims[n].resize((view, vh), Image.LANCZOS), (x, pad))
        draw.text((x + 4, pad + vh + 6), "1:1 crop at the mask's left edge", fill="black")
        canvas.paste(ims[n].crop((x0, y0, x0 + crop, y0 + crop)), (x, 2 * pad + vh))
    canvas.save(out, quality=90)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--res", default="8k")
    ap.add_argument("--out", type=Path, default=Path("out/controls"))
    ap.add_argument("--mask-side", type=int, default=None, help="the mask's long side (default: the content's size)")
    ap.add_argument("--only", default=None, help="comma-separated controls to run (a prefix of each name), plain first")
    ap.add_argument("extra", nargs="*", help="more stylize options after --")
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    content = str(resolve(SAMPLE_CONTENT))
    styles = [find(k) for k in STYLES]
    mask = make_mask(content, a.out / "mask.png", a.mask_side)
    chosen = runs(content, styles, mask)
    if a.only:
        wanted = [w.strip() for w in a.only.split(",")]
        chosen = {n: v for n, v in chosen.items() if any(n.startswith(w) for w in wanted)}
    rows, images = [], {}
    for name, args in chosen.items():
        out = a.out / (re.sub(r"[^a-z0-9]+", "_", name).strip("_") + ".png")
        r = run_child([sys.executable, "-m", "stylize.cli", content, *args, "-o", str(out), "-q", "--device", "cpu",
                       "--res", a.res, *a.extra])
        rows.append({"control": name, "res": a.res, "mask_size": "x".join(map(str, Image.open(mask).size)),
                     "returncode": r.returncode, "wall_s": round(r.wall_s, 1),
                     "peak_rss_gib": round(r.peak_rss_gib, 3)})
        print(json.dumps(rows[-1]), flush=True)
        if r.ok:
            images[name] = out
    base = rows[0]
    lines = [f"Sample content at {a.res}, styles {STYLES[0]} and {STYLES[1]}, mask {rows[0]['mask_size']}.", "",
             "| control | s | peak RSS GiB | time vs plain | memory vs plain |", "|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['control']} | {r['wall_s']} | {r['peak_rss_gib']} | "
                     f"{r['wall_s'] / base['wall_s']:.2f}x | {r['peak_rss_gib'] / base['peak_rss_gib']:.2f}x |")
    (a.out / "controls.md").write_text("\n".join(lines) + "\n")
    (a.out / "controls.json").write_text(json.dumps(rows, indent=2))
    print("\n".join(lines))
    if images:
        print(f"wrote {sheet(images, a.out / 'controls_sheet.jpg')}")


if __name__ == "__main__":
    main()
