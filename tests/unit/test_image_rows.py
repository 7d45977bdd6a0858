"""Decoding by rows gives the pixels of a whole read, for every layout it takes, and fails as
a whole read fails: one line naming the file."""
import zlib

import numpy as np
import pytest
import tifffile
from PIL import Image

from stylize.engine.store import read_rows
from stylize.image_guard import ImageError
from stylize.image_rows import RowReader
from stylize.imageio import _into_ram, probe_image, read_image, read_by_rows

pyvips = pytest.importorskip("pyvips", reason="libvips decodes JPEG/PNG by rows (pyvips, pyvips-binary: dependencies)")


def _pixels(h=301, w=457, seed=0) -> np.ndarray:
    """Noise with smooth structure: JPEG keeps both, and the resampler sees real edges."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    smooth = np.stack([np.sin(x / 17.0 + c) * np.cos(y / 23.0 - c) for c in range(4)], -1) * 100 + 128
    return np.clip(smooth + rng.normal(0, 20, (h, w, 4)), 0, 255).astype(np.uint8)


def _write(kind: str, path, a: np.ndarray):
    rgb, rgba = a[..., :3], a
    if kind == "png-rgb":
        Image.fromarray(rgb).save(path)
    elif kind == "png-rgba":
        Image.fromarray(rgba).save(path)
    elif kind == "png-l":
        Image.fromarray(a[..., 0]).save(path)
    elif kind == "png-la":
        Image.fromarray(a[..., :2], "LA").save(path)
    elif kind == "png-palette-transparent":
        Image.fromarray(rgb).convert("P").save(path, transparency=3)
    elif kind == "jpeg":
        Image.fromarray(rgb).save(path, quality=90)
    elif kind == "jpeg-cmyk":  # Pillow writes Adobe's marker; the values are stored inverted
        Image.fromarray(a, "CMYK").save(path, quality=90)
    elif kind == "jpeg-cmyk-libvips":
        pyvips.Image.new_from_array(a).copy(interpretation="cmyk").jpegsave(str(path), Q=90)
    elif kind == "jpeg-gray":
        Image.fromarray(a[..., 0]).save(path, quality=90)
    elif kind == "tiff-tiled-deflate":
        tifffile.imwrite(path, rgb, tile=(64, 64), compression="zlib")
    elif kind == "tiff-strips-rgba":
        tifffile.imwrite(path, rgba, rowsperstrip=37, extrasamples=["unassalpha"])
    elif kind == "tiff-planar":
        tifffile.imwrite(path, np.moveaxis(rgb, -1, 0), planarconfig="separate", rowsperstrip=50, photometric="rgb")
    elif kind == "tiff-16bit-tiled":
        tifffile.imwrite(path, rgb.astype(np.uint16) * 257, tile=(32, 48))
    elif kind == "tiff-float":
        tifffile.imwrite(path, rgb.astype(np.float32) / 200, photometric="rgb")  # above 1: clipped, as a whole read does
    elif kind == "tiff-int16-gray":
        tifffile.imwrite(path, a[..., 0].astype(np.int16) * 100 - 12000)
    elif kind == "tiff-one-strip":
        tifffile.imwrite(path, rgb, rowsperstrip=rgb.shape[0])
    elif kind == "tiff-raw-strips-16bit-bigendian":
        tifffile.imwrite(path, rgb.astype(">u2") * 257, rowsperstrip=100, byteorder=">")
    elif kind == "tiff-ycbcr":  # uncompressed YCbCr: tifffile gives the samples as stored
        tifffile.imwrite(path, rgb, photometric="ycbcr", subsampling=(1, 1), rowsperstrip=41)
    elif kind == "tiff-ycbcr-planar":
        tifffile.imwrite(path, np.moveaxis(rgb, -1, 0), photometric="ycbcr", subsampling=(1, 1),
                         planarconfig="separate", rowsperstrip=7)
    elif kind == "tiff-jpeg-tiled":
        tifffile.imwrite(path, rgb, tile=(64, 64), compression="jpeg", photometric="rgb")
    elif kind == "webp-lossy":
        Image.fromarray(rgb).save(path, quality=80)
    elif kind == "webp-lossy-rgba":
        Image.fromarray(rgba).save(path, quality=60, method=6)
    elif kind == "webp-lossless-rgba":
        Image.fromarray(rgba).save(path, lossless=True)


KINDS = ["png-rgb", "png-rgba", "png-l", "png-la", "png-palette-transparent", "jpeg", "jpeg-gray", "jpeg-cmyk",
         "jpeg-cmyk-libvips",
         "tiff-tiled-deflate", "tiff-strips-rgba", "tiff-planar", "tiff-16bit-tiled", "tiff-float",
         "tiff-int16-gray", "tiff-jpeg-tiled", "tiff-one-strip", "tiff-raw-strips-16bit-bigendian",
         "tiff-ycbcr", "tiff-ycbcr-planar",
         "webp-lossy", "webp-lossy-rgba", "webp-lossless-rgba"]
SUFFIX = {"png": "x.png", "jpeg": "x.jpg", "tiff": "x.tif", "webp": "x.webp"}


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("long_side", [None, 1000, 200])
def test_rows_give_the_pixels_of_a_whole_read(kind, long_side, tmp_path):
    path = tmp_path / SUFFIX[kind.split("-")[0]]
    _write(kind, path, _pixels())
    whole = read_image(path, long_side)
    got = []
    assert read_by_rows(path, long_side, 10**9, _into_ram(got)), f"{kind} was not decoded by rows"
    assert got[0].rgb.shape == whole.rgb.shape
    assert np.array_equal(got[0].rgb, whole.rgb)
    assert (got[0].alpha is None) == (whole.alpha is None)
    if whole.alpha is not None:
        assert np.array_equal(got[0].alpha, whole.alpha)


def test_an_uncompressed_ycbcr_tiff_shows_the_colours_pillow_shows_and_a_broken_one_is_refused(tmp_path):
    """tifffile returns YCbCr samples as stored; they used to be taken for RGB (a mean error of
    97 levels on this image). A YCbCr page with one sample, from the fuzz harness (seed 29, case
    11543), was decoded by rows and refused whole: both now refuse it from its header."""
    a = _pixels()[..., :3]
    tifffile.imwrite(tmp_path / "y.tif", a, photometric="ycbcr", subsampling=(1, 1))
    shown = np.asarray(Image.open(tmp_path / "y.tif").convert("RGB"), np.float32) / 255
    ours = read_image(tmp_path / "y.tif").rgb.transpose(1, 2, 0)
    assert np.abs(ours - shown).max() <= 1 / 255 and np.abs(ours - a / 255).mean() > 0.1
    tifffile.imwrite(tmp_path / "g.tif", a[..., 0])
    with tifffile.TiffFile(tmp_path / "g.tif", mode="r+b") as tf:
        tf.pages[0].tags["PhotometricInterpretation"].overwrite(6)
    for read in (lambda p: read_image(p), lambda p: read_by_rows(p, None, 10**9, _into_ram([]))):
        with pytest.raises(ImageError, match="g.tif: unsupported TIFF .(YCbCr|chroma)"):
            read(tmp_path / "g.tif")


def test_a_chroma_subsampling_tag_without_jpeg_is_refused_by_rows_as_whole(tmp_path):
    """tifffile refuses a subsampled page that is not JPEG-compressed whatever its photometric;
    the reader by rows read such an RGB page (fuzz seed 143, case 29558: a photometric the
    fuzzer had broken, a YCbCrSubSampling tag of (2, 2)). Both now refuse it from its header."""
    tifffile.imwrite(tmp_path / "s.tif", _pixels()[..., :3], photometric="rgb",
                     extratags=[(530, "H", 2, (2, 2), True)])
    for read in (lambda p: read_image(p), lambda p: read_by_rows(p, None, 10**9, _into_ram([]))):
        with pytest.raises(ImageError, match=r"s.tif: unsupported TIFF \(chroma subsampling \(2, 2\)"):
            read(tmp_path / "s.tif")


@pytest.mark.parametrize("bands", [1, 2, 3, 4])
def test_a_16_bit_png_keeps_all_16_bits_at_any_size(bands, tmp_path):
    """Pillow would keep only the high byte of a 16-bit RGB PNG; these are read by libvips,
    small or large, whole read or rows, and the low byte reaches the engine."""
    rng = np.random.default_rng(bands)
    a = rng.integers(0, 65536, (37, 53, bands), dtype=np.uint16)
    a[0, 0] = 257 * 200 + 1  # not a multiple of 257: an 8-bit decode cannot give this value
    kind = "grey16" if bands <= 2 else "rgb16"
    pyvips.Image.new_from_array(a).copy(interpretation=kind).write_to_file(str(tmp_path / "x.png"))
    want = np.multiply(a, np.float32(1 / 65535), dtype=np.float32)
    colour = want[..., :3] if bands >= 3 else np.repeat(want[..., :1], 3, -1)
    whole = read_image(tmp_path / "x.png")
    got = []
    assert read_by_rows(tmp_path / "x.png", None, 10**9, _into_ram(got))
    for image in (whole, got[0]):
        assert np.array_equal(image.rgb, np.moveaxis(colour, -1, 0))
        if bands in (2, 4):
            assert np.array_equal(image.alpha, want[..., -1])
        else:
            assert image.alpha is None


def _with_index(im: Image.Image, index: int) -> Image.Image:
    im.paste(index, (40, 30, 200, 100))
    return im


PILLOW_KINDS = {  # formats neither libvips nor tifffile reads by rows: Pillow decodes them, then rows
    "x.gif": lambda a: Image.fromarray(a[..., :3]).convert("P"),
    "t.gif": lambda a: _with_index(Image.fromarray(a[..., :3]).convert("P"), 3),  # saved with 3 transparent
    "anim.webp": lambda a: Image.fromarray(a),  # an animation (libvips reads stills), with alpha
    "x.bmp": lambda a: Image.fromarray(a[..., :3]),
    "x.ppm": lambda a: Image.fromarray(a[..., 0].astype(np.uint16) * 200),  # 16-bit grey
    "x.tga": lambda a: Image.fromarray(a),
}


@pytest.mark.parametrize("name", PILLOW_KINDS)
@pytest.mark.parametrize("long_side", [None, 200])
def test_formats_pillow_decodes_are_served_by_rows_with_the_pixels_of_a_whole_read(name, long_side, tmp_path):
    """Decoded whole by Pillow, but resized a band of rows at a time (never a float copy of the
    whole source): the same pixels, alpha and full scale as the whole read."""
    path = tmp_path / name
    opts = ({"transparency": 3} if name == "t.gif" else {} if name != "anim.webp" else
            {"save_all": True, "append_images": [Image.fromarray(_pixels(seed=1))], "lossless": True})
    PILLOW_KINDS[name](_pixels()).save(path, **opts)
    whole = read_image(path, long_side)
    got = []
    assert read_by_rows(path, long_side, 10**9, _into_ram(got)), f"{name} was not served by rows"
    assert np.array_equal(got[0].rgb, whole.rgb)
    assert (got[0].alpha is None) == (whole.alpha is None) == (name not in ("t.gif", "anim.webp", "x.tga"))
    if whole.alpha is not None:
        assert np.array_equal(got[0].alpha, whole.alpha)


def test_a_still_webp_is_libvips_decode_charged_what_it_holds_and_an_animation_is_left_to_pillow(tmp_path):
    """libvips decodes a still WebP whole at 8.3-8.9 bytes a pixel (Pillow: 16); the reader is
    charged that for its whole life, and an animation (Pillow composes its first frame) is not
    libvips's."""
    from stylize.image_guard import Limits
    from stylize.image_rows import WEBP_BYTES, _vips_rows

    a = _pixels()
    Image.fromarray(a).save(tmp_path / "still.webp", quality=80)
    Image.fromarray(a).save(tmp_path / "anim.webp", save_all=True, append_images=[Image.fromarray(a[::-1].copy())])
    limits = Limits.of(10**9, None, 1 << 20)
    with open(tmp_path / "still.webp", "rb") as f:
        reader = _vips_rows(f, tmp_path / "still.webp", limits, 0)
    assert reader is not None and reader.held == WEBP_BYTES * a.shape[0] * a.shape[1] and reader.has_alpha
    reader.close()
    with open(tmp_path / "anim.webp", "rb") as f:
        assert _vips_rows(f, tmp_path / "anim.webp", limits, 0) is None


def test_a_large_webp_is_charged_libvips_decode_not_pillows(tmp_path, monkeypatch):
    """Past ``STREAM_ABOVE`` (lowered here) a WebP is libvips's: a budget of 10 bytes a pixel
    holds its decode, one of 8 is refused before it starts, with the way out named."""
    import stylize.image_rows as image_rows

    monkeypatch.setattr(image_rows, "STREAM_ABOVE", 1000)
    Image.fromarray(_pixels()[..., :3]).save(tmp_path / "x.webp")
    pixels = 301 * 457
    assert probe_image(tmp_path / "x.webp", max_bytes=pixels * 10) == (457, 301)
    with pytest.raises(ImageError, match=r"\(webpload 3 x uint8\) takes 1.2 MiB, over the 1.0 MiB left of the memory "
                                         r"budget; raise it with --max-memory, or convert the file to PNG, JPEG or TIFF"):
        probe_image(tmp_path / "x.webp", max_bytes=pixels * 8)


def test_a_small_webp_decode_is_charged_what_pillow_holds_for_it(tmp_path):
    """Under ``STREAM_ABOVE`` a WebP is Pillow's, whose animation decoder holds two RGBA canvases
    and the frame's bytes beside the image: a budget that holds the pixels alone refuses the
    file before it is decoded."""
    Image.fromarray(_pixels()[..., :3]).save(tmp_path / "x.webp")
    Image.fromarray(_pixels()[..., :3]).save(tmp_path / "x.bmp")
    pixels = 301 * 457
    for name, ok in (("x.bmp", True), ("x.webp", False)):
        try:
            probe_image(tmp_path / name, max_bytes=pixels * 8)
            assert ok, f"{name} was allowed"
        except ImageError as e:
            assert not ok and "takes 2.1 MiB, over the 1.0 MiB left of the memory budget; raise it with --max-memory, or convert" in str(e), e


def _turned(path, a: np.ndarray, orientation: int) -> None:
    """``a`` stored with the orientation tag, where each kind of file keeps it."""
    exif = Image.Exif()
    exif[0x0112] = orientation
    if path.name.endswith("-xmp.jpg"):  # in XMP only, as some editors write it
        xmp = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
               b'<rdf:Description xmlns:tiff="http://ns.adobe.com/tiff/1.0/" tiff:Orientation="%d"/></rdf:RDF>'
               b'</x:xmpmeta>' % orientation)
        Image.fromarray(a).save(path, xmp=xmp, quality=90)
    elif path.name.endswith("-after.png"):  # an eXIf chunk after the image data
        Image.fromarray(a).save(path)
        data, exif_bytes = path.read_bytes(), exif.tobytes()
        chunk = (len(exif_bytes).to_bytes(4, "big") + b"eXIf" + exif_bytes
                 + zlib.crc32(b"eXIf" + exif_bytes).to_bytes(4, "big"))
        path.write_bytes(data[:-12] + chunk + data[-12:])
    elif path.suffix == ".tif":  # the TIFF Orientation tag (274), tiled
        tifffile.imwrite(path, a, tile=(64, 64), photometric="rgb", extratags=[(274, "H", 1, orientation, True)])
    else:
        Image.fromarray(a).save(path, exif=exif, **({"quality": 90} if path.suffix == ".jpg" else {}))


@pytest.mark.parametrize("orientation", range(1, 9))
def test_an_exif_orientation_is_what_pillow_displays(orientation, tmp_path):
    """Unresized, the image is Pillow's ``exif_transpose`` of the decode, pixel for pixel, whole
    and by rows, alpha included, wherever the file keeps the tag (EXIF, XMP, a PNG's eXIf after
    the image data, TIFF's own tag): the tag means what every viewer shows."""
    from PIL import ImageOps

    for name, a in (("x.jpg", _pixels()[..., :3]), ("x.png", _pixels()), ("x-xmp.jpg", _pixels()[..., :3]),
                    ("x-after.png", _pixels()[..., :3]), ("x.tif", _pixels()[..., :3])):
        path = tmp_path / name
        _turned(path, a, orientation)
        with Image.open(path) as im:
            shown = np.multiply(np.asarray(ImageOps.exif_transpose(im)), np.float32(1 / 255), dtype=np.float32)
        got = []
        assert read_by_rows(path, None, 10**9, _into_ram(got)), f"{name} {orientation} was not decoded by rows"
        assert probe_image(path) == shown.shape[1::-1], (name, orientation)
        for image in (read_image(path, by_rows=False), got[0]):
            assert np.array_equal(image.rgb, np.moveaxis(shown[..., :3], -1, 0)), (name, orientation)
            if name == "x.png":
                assert np.array_equal(image.alpha, shown[..., 3])


@pytest.mark.parametrize("orientation", [2, 3, 5, 6, 7, 8])
@pytest.mark.parametrize("long_side", [1000, 200])
def test_a_turned_photo_resized_by_rows_equals_the_whole_read(orientation, long_side, tmp_path):
    """Resized, then turned strip by strip into RAM and into a scratch file (rows or columns of
    the displayed image): the pixels of the whole read, which turns after the resize too."""
    from stylize.engine.store import StoreFactory
    from stylize.image_stream import load_into_store

    path = tmp_path / "x.jpg"
    _turned(path, _pixels()[..., :3], orientation)
    whole = read_image(path, long_side, by_rows=False)
    assert whole.size[0] < whole.size[1] if orientation >= 5 else whole.size[0] > whole.size[1]
    got = []
    assert read_by_rows(path, long_side, 10**9, _into_ram(got))
    assert np.array_equal(got[0].rgb, whole.rgb)
    rgb, _ = load_into_store(path, long_side, 10**9, StoreFactory(tmp_path, ram_pixels=0))
    try:
        assert type(rgb).__name__ == "DiskStore"
        assert np.array_equal(read_rows(rgb, 0, rgb.shape[1]), whole.rgb)
    finally:
        rgb.close()
@pytest.mark.parametrize("suffix", [".png", ".jpg", ".tif", ".webp"])
def test_a_truncated_file_read_by_rows_is_one_line_naming_it(suffix, tmp_path):
    path = tmp_path / f"cut{suffix}"
    big = np.tile(_pixels(), (4, 4, 1))
    if suffix == ".tif":
        tifffile.imwrite(path, big[..., :3], tile=(64, 64), compression="zlib")
    else:
        Image.fromarray(big[..., :3]).save(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) * 2 // 3])
    with pytest.raises(ImageError, match="cut"):
        read_by_rows(path, None, 10**9, _into_ram([]), role="content")


def test_the_reader_holds_a_band_not_the_image():
    """Rows above the last request are dropped: a forward read holds what it was asked for."""
    blocks = (np.full((3, 10, 5), float(i), np.float32) for i in range(100))
    r = RowReader((5, 1000), False, blocks, "x")
    for a in range(0, 990, 7):
        band = r.rows(a, a + 10)
        assert band.shape == (3, 10, 5) and band[:, 0, 0].tolist() == [a // 10] * 3
        assert band[0, -1, 0] == (a + 9) // 10 and r.held_rows <= 20  # the two blocks it spans
    with pytest.raises(RuntimeError):
        r.rows(0, 5)


def test_a_png_is_probed_and_its_orientation_read_without_decoding_it(tmp_path, monkeypatch):
    """Pillow's ``getexif`` decodes a whole PNG that has no eXIf chunk before its pixels (a
    32K PNG: gigabytes before any check): the header checks and the row reader never decode."""
    from PIL import PngImagePlugin

    plain, after = tmp_path / "plain.png", tmp_path / "x-after.png"
    Image.fromarray(_pixels()[..., :3]).save(plain)
    _turned(after, _pixels()[..., :3], 6)

    real_load = PngImagePlugin.PngImageFile.load

    def no_decode(self):
        if self.size != (1, 1):  # the 1-pixel PNG holding only the metadata may be loaded
            raise AssertionError("the PNG was decoded")
        return real_load(self)

    monkeypatch.setattr(PngImagePlugin.PngImageFile, "load", no_decode)
    assert probe_image(plain) == (457, 301) and probe_image(after) == (301, 457)
    got = []
    assert read_by_rows(after, 200, 10**9, _into_ram(got)) and got[0].size == (132, 200)


def test_a_file_decoded_by_rows_is_not_charged_a_whole_decode(tmp_path, monkeypatch):
    """A JPEG, PNG or TIFF past STREAM_ABOVE is decoded by rows (libvips, tifffile): a budget that
    could not hold it decoded whole must not refuse it at the probe (a 96-MP JPEG under
    --max-memory 600M was, and a 1-GP BigTIFF under the default budget), and its read gives the
    pixels a read without a budget gives. A BMP, decoded whole, is charged."""
    pytest.importorskip("pyvips", reason="libvips decodes JPEG and PNG by rows (pyvips, pyvips-binary: dependencies)")
    import stylize.image_rows as image_rows
    import stylize.imageio as imageio

    monkeypatch.setattr(image_rows, "STREAM_ABOVE", 100_000)
    monkeypatch.setattr(imageio, "STREAM_ABOVE", 100_000)
    a = np.tile(_pixels()[..., :3], (2, 2, 1))  # 914x602: 550,228 pixels, 2.1 MiB decoded whole
    for name in ("x.jpg", "x.png", "x.bmp"):
        Image.fromarray(a).save(tmp_path / name)
    tifffile.imwrite(tmp_path / "x.tif", a, tile=(64, 64), compression="zlib")
    budget = 1 << 20
    for name in ("x.jpg", "x.png", "x.tif"):
        assert probe_image(tmp_path / name, max_bytes=budget) == (914, 602)
        got = read_image(tmp_path / name, 300, max_bytes=budget).rgb
        assert np.array_equal(got, read_image(tmp_path / name, 300).rgb)
    with pytest.raises(ImageError, match="takes 2.1 MiB, over the 1.0 MiB left of the memory budget"):
        probe_image(tmp_path / "x.bmp", max_bytes=budget)


def test_the_band_a_read_resizes_in_is_a_quarter_of_the_memory_left():
    from stylize.engine.resample import BAND_BYTES
    from stylize.image_guard import Limits
    from stylize.image_rows import MIN_BAND, band_bytes

    assert band_bytes(Limits.of(10**9, None, 1)) == BAND_BYTES  # no budget: --max-pixels' limit
    assert band_bytes(Limits.of(10**9, 2 << 30, 1)) == BAND_BYTES
    assert band_bytes(Limits.of(10**9, 200 << 20, 1)) == 50 << 20
    assert band_bytes(Limits.of(10**9, 1 << 20, 1)) == MIN_BAND
