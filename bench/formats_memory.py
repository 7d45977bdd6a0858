"""One large photo in each input format: peak RSS of ``stylize --res 2k`` against the budget.

JPEG, PNG and TIFF are decoded by rows (libvips, tifffile); GIF, WebP and BMP have no decoder
by rows, so they are decoded whole (WebP by libvips, GIF and BMP by Pillow:
:mod:`stylize.pil_decode`) and the engine serves that decode a band of rows at a time, its
cost checked against what is left of ``--max-memory`` before a byte is decoded. Each run is the ``stylize`` command as a child process (peak RSS from the
kernel); a refusal is a result too (its error line is kept). The peer in the same run is Pillow
decoding each file whole into float32, as a script would (no resize, no stylization).

    python -m stylize.bench.formats_memory --size 12000x8000 --out out/formats
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from stylize.bench.gigapixel import enlarged
from stylize.bench.measure import call_child, run_child
from stylize.models.weights import SAMPLE_CONTENT, SAMPLE_STYLE, resolve

FORMATS = ("jpg", "png", "tif", "webp", "gif", "bmp")
PILLOW_FLOATS = """
import sys, numpy as np
from PIL import Image
Image.MAX_IMAGE_PIXELS = None
a = np.asarray(Image.open(sys.argv[1]).convert("RGB"), np.float32) / 255
print(a.shape)
"""


def make_inputs(content: Path, width: int, height: int, folder: Path, formats: list[str]) -> list[Path]:
    """The content enlarged to width x height (libvips), saved once per format."""
    import numpy as np
    from PIL import Image

    big = enlarged(content, width, height).copy_memory()
    made = []
    for ext in formats:
        path = Path(folder) / f"photo_{width}x{height}.{ext}"
        if ext == "jpg":
            big.jpegsave(str(path), Q=90)
        elif ext == "png":
            big.pngsave(str(path), compression=1)
        elif ext == "tif":
            big.tiffsave(str(path), tile=True, compression="deflate", bigtiff=True)
        elif ext == "webp":
            big.webpsave(str(path), Q=80, effort=0)  # Q 90 overflows VP8's first partition at this size
        else:  # GIF (palette) and BMP: Pillow's encoders
            im = Image.fromarray(np.ndarray(buffer=big.write_to_memory(), dtype=np.uint8, shape=(height, width, 3)))
            (im.quantize(256) if ext == "gif" else im).save(path)
        made.append(path)
    return made


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", default="12000x8000", help="the photo (96 MP: a WebP can be at most 16383 a side)")
    ap.add_argument("--formats", default=",".join(FORMATS), help="which of " + ", ".join(FORMATS))
    ap.add_argument("--res", default="2k", help="stylize --res")
    ap.add_argument("--max-memory", default="2G", help="stylize --max-memory (the default budget)")
    ap.add_argument("--out", type=Path, default=Path("out/formats"))
    ap.add_argument("--keep", action="store_true", help="keep the photos and outputs")
    a = ap.parse_args()
    width, height = (int(v) for v in a.size.lower().split("x"))
    formats = a.formats.split(",")
    if not set(formats) <= set(FORMATS):
        sys.exit(f"--formats: choose among {', '.join(FORMATS)}")
    a.out.mkdir(parents=True, exist_ok=True)
    made = call_child(make_inputs, resolve(SAMPLE_CONTENT), width, height, a.out, formats)
    if not made.ok:
        sys.exit(f"could not make the inputs: {made.output_tail}")
    rows = []
    for ext in formats:
        photo = a.out / f"photo_{width}x{height}.{ext}"
        out = a.out / f"{photo.stem}_{ext}_{a.res}.png"
        r = run_child([sys.executable, "-m", "stylize.cli", str(photo), str(resolve(SAMPLE_STYLE)), "-o", str(out),
                       "-q", "--device", "cpu", "--res", a.res, "--max-memory", a.max_memory,
                       "--max-pixels", str(max(width * height, 200_000_000))])
        peer = run_child([sys.executable, "-c", PILLOW_FLOATS, str(photo)])
        row = {"format": ext, "file_mib": round(photo.stat().st_size / 2**20, 1), "returncode": r.returncode,
               "wall_s": round(r.wall_s, 1), "peak_rss_gib": round(r.peak_rss_gib, 3),
               "pillow_floats_peak_rss_gib": round(peer.peak_rss_gib, 3) if peer.ok else None}
        if not r.ok:
            row["error"] = r.output_tail.strip().splitlines()[-1][-300:]
        rows.append(row)
        print(json.dumps(row), flush=True)
        if not a.keep:
            out.unlink(missing_ok=True)
            photo.unlink(missing_ok=True)
    report = {"size": a.size, "megapixels": round(width * height / 1e6, 1), "res": a.res,
              "max_memory": a.max_memory, "make_inputs_s": round(made.wall_s, 1), "rows": rows}
    (a.out / "formats_memory.json").write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
