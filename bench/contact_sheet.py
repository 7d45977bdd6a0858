"""A contact sheet of two large outputs: each downscaled whole, then 1:1 crops side by side.

What a reader needs to judge stroke scale: at screen size the two pictures (does the large
one still look painted?), then the same regions at 1:1 (is there detail, halo, blur, seam?).
Crops are taken at fixed fractions of the frame (a centre and an off-centre region) so both
images show the same pixels.

    python -m stylize.bench.contact_sheet A.png B.png -o sheet.jpg --labels "native 8k" "auto 8k"
"""
from __future__ import annotations

import argparse
from pathlib import Path

from PIL import Image, ImageDraw

Image.MAX_IMAGE_PIXELS = None  # a script of its own: it opens our own 16K outputs

CROPS = ((0.5, 0.5), (0.28, 0.62))  # centres, as fractions of (width, height)


def contact_sheet(a: Path, b: Path, out: Path, labels: tuple[str, str] = ("A", "B"), view: int = 1280,
                  crop: int = 640) -> Path:
    ims = [Image.open(p).convert("RGB") for p in (a, b)]
    w, h = ims[0].size
    vh = round(view * h / w)
    rows = [[im.resize((view, vh), Image.LANCZOS) for im in ims]]
    for fx, fy in CROPS:
        x0, y0 = int(fx * w - crop / 2), int(fy * h - crop / 2)
        box = (x0, y0, x0 + crop, y0 + crop)
        rows.append([im.crop(box).resize((view // 2, view // 2), Image.NEAREST) if crop != view // 2
                     else im.crop(box) for im in ims])
    pad = 32
    sheet_h = pad + vh + pad + len(CROPS) * (view // 2 + pad)
    sheet = Image.new("RGB", (2 * view + pad, sheet_h), "white")
    draw = ImageDraw.Draw(sheet)
    for i, label in enumerate(labels):
        draw.text((i * (view + pad) + 4, 8), f"{label}: whole frame, downscaled", fill="black")
    y = pad
    for r, row in enumerate(rows):
        for i, tile in enumerate(row):
            sheet.paste(tile, (i * (view + pad), y))
            if r:
                draw.text((i * (view + pad) + 4, y - 14), f"{labels[i]}: 1:1 crop {crop}px at "
                          f"({CROPS[r - 1][0]:.2f}, {CROPS[r - 1][1]:.2f}) of the frame", fill="black")
        y += row[0].size[1] + pad
    out.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(out, quality=90)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("a", type=Path)
    ap.add_argument("b", type=Path)
    ap.add_argument("-o", "--out", type=Path, required=True)
    ap.add_argument("--labels", nargs=2, default=("A", "B"))
    a = ap.parse_args()
    print(f"wrote {contact_sheet(a.a, a.b, a.out, tuple(a.labels))}")


if __name__ == "__main__":
    main()
