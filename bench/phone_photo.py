"""A phone photo at sensor size, stored turned (EXIF orientation 6), against the same photo upright.

Phones store a portrait photo as the sensor saw it, landscape, with an EXIF tag saying "turn
90 degrees". A 200-MP sensor (16320x12240) gives a 600 MB decode as 8 bits; turning it before
the resize needs it whole, and Pillow's path to floats held five copies (3 GiB, over the
default 2 GiB budget). Resized in its stored orientation and turned strip by strip
(:mod:`stylize.image_orient`), it should cost what the upright photo costs. Each run is the
``stylize`` command as a child process (peak RSS from the kernel); the peer in the same run is
Pillow decoding and turning the same file (``ImageOps.exif_transpose``, then float32), with no
resize and no stylization.

    python -m stylize.bench.phone_photo --out out/phone
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from stylize.bench.gigapixel import enlarged
from stylize.bench.measure import call_child, run_child
from stylize.models.weights import SAMPLE_CONTENT, SAMPLE_STYLE, resolve

PILLOW_WHOLE = """
import sys, numpy as np
from PIL import Image, ImageOps
Image.MAX_IMAGE_PIXELS = None
im = ImageOps.exif_transpose(Image.open(sys.argv[1]))
a = np.asarray(im.convert("RGB"), np.float32) / 255
print(a.shape)
"""


def make_inputs(content: Path, width: int, height: int, folder: Path) -> tuple[Path, Path]:
    """The content enlarged to cover width x height and cropped to it, as a JPEG stored upright
    and the same pixels tagged orientation 6 (shown as height x width), made by libvips."""
    import pyvips

    big = enlarged(content, width, height).copy_memory()
    folder = Path(folder)
    upright, turned = folder / f"upright_{width}x{height}.jpg", folder / f"turned6_{width}x{height}.jpg"
    big.jpegsave(str(upright), Q=90)
    tagged = big.copy()
    tagged.set_type(pyvips.GValue.gint_type, "orientation", 6)
    tagged.jpegsave(str(turned), Q=90)
    return upright, turned


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", default="16320x12240", help="the photo as stored (a 200-MP sensor)")
    ap.add_argument("--res", default="2k", help="stylize --res")
    ap.add_argument("--out", type=Path, default=Path("out/phone"))
    ap.add_argument("--keep", action="store_true", help="keep the photos and outputs")
    a = ap.parse_args()
    width, height = (int(v) for v in a.size.lower().split("x"))
    a.out.mkdir(parents=True, exist_ok=True)
    made = call_child(make_inputs, resolve(SAMPLE_CONTENT), width, height, a.out)
    if not made.ok:
        sys.exit(f"could not make the inputs: {made.output_tail}")
    upright, turned = a.out / f"upright_{width}x{height}.jpg", a.out / f"turned6_{width}x{height}.jpg"
    pixels = width * height
    rows = []
    for label, photo in (("upright", upright), ("turned (EXIF 6)", turned)):
        out = a.out / f"{photo.stem}_{a.res}.png"
        r = run_child([sys.executable, "-m", "stylize.cli", str(photo), str(resolve(SAMPLE_STYLE)), "-o", str(out),
                       "-q", "--device", "cpu", "--res", a.res, "--max-pixels", str(max(pixels, 200_000_000))])
        row = {"run": f"stylize --res {a.res}", "photo": label, "returncode": r.returncode,
               "wall_s": round(r.wall_s, 1), "peak_rss_gib": round(r.peak_rss_gib, 3)}
        if r.ok:
            from PIL import Image

            with Image.open(out) as im:
                row["output_size"] = f"{im.width}x{im.height}"
        else:
            row["error"] = r.output_tail[-400:]
        rows.append(row)
        print(json.dumps(row), flush=True)
        if not a.keep:
            out.unlink(missing_ok=True)
    peer = run_child([sys.executable, "-c", PILLOW_WHOLE, str(turned)])
    rows.append({"run": "Pillow: decode, exif_transpose, float32 (no resize, no stylization)",
                 "photo": "turned (EXIF 6)", "returncode": peer.returncode, "wall_s": round(peer.wall_s, 1),
                 "peak_rss_gib": round(peer.peak_rss_gib, 3)})
    print(json.dumps(rows[-1]), flush=True)
    report = {"size": a.size, "megapixels": round(pixels / 1e6, 1), "jpeg_mib": round(turned.stat().st_size / 2**20, 1),
              "make_inputs_s": round(made.wall_s, 1), "rows": rows}
    (a.out / "phone_photo.json").write_text(json.dumps(report, indent=2) + "\n")
    if not a.keep:
        upright.unlink(missing_ok=True)
        turned.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
