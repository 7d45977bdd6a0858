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


def contact_sheet(a: Path, b: Path, out: Path, labels: tuple[str, str] = ("A", "B"), view: int = 1280) -> Path:
    """Rows: both frames downscaled to ``view`` px wide, then for each crop centre a 1:1 crop of
    ``view`` x ``view/2`` pixels of each image."""
    ims = [Image.open(p).convert("RGB") for p in (a, b)]
    w, h = ims[0].size
    vh = round(view * h / w)
    rows = [[im.resize((view, vh), Image.LANCZOS) for im in ims]]
    ch = view // 2
    for fx, fy in CROPS:
        x0, y0 = int(fx * w - view / 2), int(fy * h - ch / 2)
        rows.append([im.crop((x0, y0, x0 + view, y0 + ch)) for im in ims])
    pad = 32
    sheet = Image.new("RGB", (2 * view + pad, pad + sum(r[0].size[1] + pad for r in rows)), "white")
    draw = ImageDraw.Draw(sheet)
    y = pad
    for r, row in enumerate(rows):
        for i, tile in enumerate(row):
            sheet.paste(tile, (i * (view + pad), y))
            what = "whole frame, downscaled" if r == 0 else \
                f"1:1 crop at ({CROPS[r - 1][0]:.2f}, {CROPS[r - 1][1]:.2f}) of the frame"
            draw.text((i * (view + pad) + 4, y - 14), f"{labels[i]}: {what}", fill="black")
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
