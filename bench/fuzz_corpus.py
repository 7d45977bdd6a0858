"""The fuzz's corpus: small images in every format and layout we read, headers that claim
huge images, and the mutations that make each case from them.

Every case is fully determined by ``(seed, case number)``, so a case found on one machine is
replayed on any other (``python -m stylize.bench.fuzz --replay N``).
"""
from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image

INTERESTING = (0, 1, 2, 7, 8, 15, 16, 0x7F, 0x80, 0xFF, 0x100, 0x7FFF, 0x8000, 0xFFFF, 14000, 65500,
               0x7FFFFFFF, 0x80000000, 0xFFFFFFFF)


def picture(w: int = 40, h: int = 30) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([x * 255 // w, y * 255 // h, (x * y * 7) % 256], -1).astype(np.uint8)


def _pil(im: Image.Image, fmt: str, **opts) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **opts)
    return buf.getvalue()


def _tif(a: np.ndarray, **opts) -> bytes:
    import tifffile

    buf = io.BytesIO()
    tifffile.imwrite(buf, a, **opts)
    return buf.getvalue()


def seed_images() -> dict[str, bytes]:
    """Small valid images, one per format and layout; the name's suffix is the file's."""
    rgb = picture()
    im = Image.fromarray(rgb)
    rgba = im.copy()
    rgba.putalpha(Image.linear_gradient("L").resize(im.size))
    exif = Image.Exif()
    exif[0x0112] = 6
    wide = rgb.astype(np.uint16) * 257
    seeds = {
        "rgb.png": _pil(im, "PNG"), "rgba.png": _pil(rgba, "PNG"),
        "p.png": _pil(im.convert("P"), "PNG", transparency=0),
        "l16.png": _pil(Image.fromarray(wide[..., 0]), "PNG"), "bilevel.png": _pil(im.convert("1"), "PNG"),
        "base.jpg": _pil(im, "JPEG"), "progressive.jpg": _pil(im, "JPEG", progressive=True),
        "grey.jpg": _pil(im.convert("L"), "JPEG"), "cmyk.jpg": _pil(im.convert("CMYK"), "JPEG"),
        "exif.jpg": _pil(im, "JPEG", exif=exif.tobytes()),
        "p.gif": _pil(im.convert("P"), "GIF"),
        "anim.gif": _pil(im.convert("P"), "GIF", save_all=True, append_images=[im.rotate(90).convert("P")]),
        "rgb.bmp": _pil(im, "BMP"), "p.bmp": _pil(im.convert("P"), "BMP"),
        "lossy.webp": _pil(im, "WEBP"), "lossless.webp": _pil(rgba, "WEBP", lossless=True),
        "icon.ico": _pil(im.resize((32, 32)), "ICO"), "rgb.pcx": _pil(im, "PCX"), "rgb.tga": _pil(im, "TGA"),
        "rgb.ppm": _pil(im, "PPM"), "rgb.jp2": _pil(im, "JPEG2000"), "rgba.dds": _pil(rgba, "DDS"),
        "rgb.avif": _pil(im, "AVIF"),
        "u8.tif": _tif(rgb, photometric="rgb"), "lzw.tif": _tif(rgb, photometric="rgb", compression="lzw"),
        "zlib.tif": _tif(rgb, photometric="rgb", compression="zlib"),
        "jpeg.tif": _tif(rgb, photometric="rgb", compression="jpeg"),
        "packbits.tif": _tif(rgb, photometric="rgb", compression="packbits"),
        "u16.tif": _tif(wide, photometric="rgb"),
        "i16.tif": _tif((wide[..., 0].astype(np.int32) - 32768).astype(np.int16)),
        "f32.tif": _tif(rgb.astype(np.float32) / 255, photometric="rgb"),
        "planar.tif": _tif(np.moveaxis(rgb, -1, 0), photometric="rgb", planarconfig="separate"),
        "tiled.tif": _tif(rgb[:32, :32], photometric="rgb", tile=(16, 16)),
        "big.tif": _tif(rgb, photometric="rgb", bigtiff=True),
        "rgba.tif": _tif(np.asarray(rgba), photometric="rgb", extrasamples=("unassalpha",)),
        "palette.tif": _tif(rgb[..., 0], photometric="palette",
                            colormap=np.tile(np.arange(256, dtype=np.uint16) * 257, (3, 1))),
        "g4.tif": _pil(im.convert("1"), "TIFF", compression="group4"),
        "cmyk.tif": _pil(im.convert("CMYK"), "TIFF"),
    }
    return seeds | bombs()


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def bombs(side: int = 14000) -> dict[str, bytes]:
    """Tiny files whose headers claim a ``side`` x ``side`` image: each must be refused from the
    header, in milliseconds, with no allocation of what it claims."""
    import tifffile

    small = Image.fromarray(picture(16, 16))
    gif = bytearray(_pil(small.convert("P"), "GIF"))
    gif[6:10] = struct.pack("<HH", side, side)  # the logical screen; the frame stays 16x16
    jpg = bytearray(_pil(small.convert("L"), "JPEG"))
    sof = jpg.index(b"\xff\xc0")
    jpg[sof + 5:sof + 9] = struct.pack(">HH", side, side)
    png = (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0))
           + _png_chunk(b"IDAT", zlib.compress(b"\0" * 64)) + _png_chunk(b"IEND", b""))
    tif = bytearray(_tif(np.zeros((8, 8, 3)), photometric="rgb"))  # float64 RGB
    with tifffile.TiffFile(io.BytesIO(bytes(tif))) as tf:
        page = tf.pages[0]
        for tag in ("ImageWidth", "ImageLength", "RowsPerStrip"):
            t = page.tags.get(tag)
            if t is not None:
                tif[t.valueoffset:t.valueoffset + 4] = struct.pack("<I", side)
        start = page.dataoffsets[0]
    return {"bomb.gif": bytes(gif), "bomb.jpg": bytes(jpg), "bomb.png": png, "bomb.tif": bytes(tif[:start])}


def mutate(seeds: dict[str, bytes], seed: int, case: int) -> tuple[str, bytes]:
    """Case ``case`` of run ``seed``: (seed name, mutated bytes); the same on every machine."""
    rng = np.random.default_rng([seed, case])
    names = sorted(seeds)
    name = names[rng.integers(len(names))]
    data = bytearray(seeds[name])
    for _ in range(rng.integers(1, 4)):
        if not data:
            break
        n, op = len(data), rng.integers(6)
        head = min(n, 256)  # sizes, offsets and flags live in headers: aim there most of the time
        at = int(rng.integers(head) if rng.random() < 0.7 else rng.integers(n))
        if op == 0:  # truncate
            del data[int(rng.integers(n)):]
        elif op == 1:  # flip bits
            for _ in range(rng.integers(1, 9)):
                data[int(rng.integers(head))] ^= 1 << int(rng.integers(8))
        elif op == 2:  # an interesting integer over a field
            width = int(rng.choice([1, 2, 4]))
            value = int(INTERESTING[rng.integers(len(INTERESTING))]) & ((1 << 8 * width) - 1)
            data[at:at + width] = value.to_bytes(width, "little" if rng.random() < 0.5 else "big")
        elif op == 3:  # delete a slice
            del data[at:at + int(rng.integers(1, 64))]
        elif op == 4:  # duplicate a slice
            data[at:at] = data[at:at + int(rng.integers(1, 256))]
        else:  # splice: this header, another seed's body
            other = seeds[names[rng.integers(len(names))]]
            data = data[:at] + other[int(rng.integers(len(other))):]
    return name, bytes(data)
