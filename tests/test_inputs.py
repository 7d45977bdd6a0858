"""Every kind of bad or unusual input: a clear one-line error or a sensible output, never a
traceback, NaN or half-written file. Runs the real CLI in-process on small real images."""
from __future__ import annotations

import numpy as np
import torch
import pytest
import tifffile
from PIL import Image
from typer.testing import CliRunner

from conftest import SHARED
import stylize
from stylize.cli import main
from stylize.imageio import ImageError, read_image, write_image

STYLE = SHARED / "images/style/sketch.png"
PHOTO = SHARED / "images/content/golden_gate.jpg"


def run(*args: str):
    """Invoke the CLI like a user; returns (exit code, stderr+stdout)."""
    from stylize.cli import app

    result = CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)
    return result.exit_code, result.output


def small_photo(tmp_path, mode="RGB", size=(96, 64), name="in.png", **save):
    src = Image.open(PHOTO).convert("RGB").resize(size)
    im = src.convert(mode) if mode != "RGB" else src
    path = tmp_path / name
    im.save(path, **save)
    return path


def stylize_ok(tmp_path, content, out_name="out.png", *extra):
    out = tmp_path / out_name
    code, text = run(content, STYLE, "-o", out, "--style-res", "128", "-q", *extra)
    assert code == 0, text
    return out


@pytest.mark.parametrize("make,message", [
    (lambda p: p / "missing.jpg", "no such file"),
    (lambda p: (p / "notes.jpg").write_text("hello, not a JPEG") and p / "notes.jpg", "not an image"),
    (lambda p: (p / "empty.png").write_bytes(b"") or p / "empty.png", "empty file"),
    (lambda p: p, "is a folder; for every photo in it: stylize batch"),
])
def test_unreadable_input_is_one_line(tmp_path, make, message):
    out = tmp_path / "out.png"
    code, text = run(make(tmp_path), STYLE, "-o", out)
    assert code == 2 and message in text and "Traceback" not in text
    assert len(text.strip().splitlines()) == 1
    assert not out.exists()


def test_truncated_image(tmp_path):
    data = PHOTO.read_bytes()
    bad = tmp_path / "cut.jpg"
    bad.write_bytes(data[: len(data) // 2])
    code, text = run(bad, STYLE, "-o", tmp_path / "o.png")
    assert code == 2 and "truncated" in text


def test_pixel_limit_and_override(tmp_path):
    big = small_photo(tmp_path, size=(400, 300))
    code, text = run(big, STYLE, "-o", tmp_path / "o.png", "--max-pixels", "100000")
    assert code == 2 and "over the limit" in text and "--max-pixels" in text
    code, text = run(big, STYLE, "-o", tmp_path / "o.png", "--res", "8k", "--max-pixels", "1000000")
    assert code == 2 and "requested output" in text
    assert stylize_ok(tmp_path, big, "o.png", "--max-pixels", "200000").exists()


def test_a_whole_decode_over_the_budget_left_is_refused_before_compute(tmp_path, monkeypatch):
    """A WebP has no decoder by rows: libvips decodes it whole at 9 bytes a pixel (206 MiB for
    24 MP; Pillow's decoder 16), which 500M less this process's own memory cannot hold. One line,
    naming the way out, and no model is built."""
    rng = np.random.default_rng(0)
    pixels = np.repeat(rng.integers(0, 255, (400, 600, 3), dtype=np.uint8), 10, axis=0).repeat(10, axis=1)
    Image.fromarray(pixels).save(tmp_path / "big.webp", method=0)
    started = []
    monkeypatch.setattr("stylize.api.build_stylizer", lambda *a, **k: started.append(1))
    code, text = run(tmp_path / "big.webp", STYLE, "-o", tmp_path / "o.png", "--max-memory", "500M")
    assert code == 2 and not started and len(text.strip().splitlines()) == 1, text
    assert "decoding 6000x4000 (webpload 3 x uint8) takes 206.0 MiB, over the" in text and "left of the memory budget; raise " \
        "it with --max-memory, or convert the file to PNG, JPEG or TIFF" in text, text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.webp"]


def test_unwritable_output_fails_before_compute(tmp_path):
    for out, msg in [(tmp_path / "nope" / "o.png", "does not exist"), (tmp_path / "o.gif", "unsupported output"),
                     (tmp_path / "outdir", "no file extension: name the output file (.png, .jpg or .tif) or give a "
                                           "folder that exists"),
                     (tmp_path / ("a" * 300 + ".png"), "cannot write there (File name too long)")]:  # was a traceback
        code, text = run(PHOTO, STYLE, "-o", out)
        assert code == 2 and msg in text, text
    with pytest.raises(ImageError, match="is a directory"):  # the Python API takes a file's path
        stylize.stylize_file(PHOTO, STYLE, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_an_output_folder_gets_the_default_name(tmp_path):
    code, text = run(PHOTO, STYLE, "-o", tmp_path, "--res", "64", "-q")
    assert code == 0 and [p.name for p in tmp_path.iterdir()] == [f"{PHOTO.stem}_x_{STYLE.stem}.png"], text
    # A folder nobody may create files in, root included (tests often run as root in CI).
    code, text = run(PHOTO, STYLE, "-o", "/proc/o.png")
    assert code == 2 and "cannot write" in text, text


@pytest.mark.parametrize("size", [(1, 1), (3, 2), (17, 5), (33, 47)])
def test_tiny_images_give_finite_output_of_the_same_size(tmp_path, size):
    out = stylize_ok(tmp_path, small_photo(tmp_path, size=size))
    im = Image.open(out)
    assert im.size == size


@pytest.mark.parametrize("mode", ["L", "P", "CMYK", "1", "I;16"])
def test_colour_modes(tmp_path, mode):
    name = "in.tif" if mode == "CMYK" else "in.png"
    src = small_photo(tmp_path, mode=mode if mode != "I;16" else "L", name=name)
    if mode == "I;16":  # 16-bit grayscale PNG with values above 8 bits
        a = (np.asarray(Image.open(src), dtype=np.uint16) * 257)
        Image.fromarray(a).save(src)
        assert Image.open(src).mode.startswith("I")
    img = read_image(src)
    assert img.rgb.shape == (3, 64, 96) and 0 <= img.rgb.min() and img.rgb.max() <= 1
    out = stylize_ok(tmp_path, src)
    assert Image.open(out).mode == "RGB"


def test_rgba_alpha_passes_through(tmp_path):
    rgb = Image.open(PHOTO).convert("RGB").resize((80, 60))
    alpha = Image.linear_gradient("L").resize((80, 60))
    rgb.putalpha(alpha)
    src = tmp_path / "a.png"
    rgb.save(src)
    out = stylize_ok(tmp_path, src)
    got = Image.open(out)
    assert got.mode == "RGBA"
    assert np.array_equal(np.asarray(got)[..., 3], np.asarray(alpha))
    jpg = stylize_ok(tmp_path, src, "o.jpg")
    assert Image.open(jpg).mode == "RGB"


def test_sixteen_bit_tiff_in_and_out(tmp_path):
    a = (np.asarray(Image.open(PHOTO).convert("RGB").resize((64, 48)), dtype=np.uint16) * 257) + 7
    src = tmp_path / "in16.tif"
    tifffile.imwrite(src, a, photometric="rgb")
    img = read_image(src)
    assert np.allclose(img.rgb.transpose(1, 2, 0), a / 65535.0, atol=1e-6)
    out = stylize_ok(tmp_path, src, "o.tif", "--bits", "16")
    back = tifffile.imread(out)
    assert back.dtype == np.uint16 and back.shape == (48, 64, 3)


def test_exif_orientation_is_applied(tmp_path):
    im = Image.open(PHOTO).convert("RGB").resize((80, 40))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    src = tmp_path / "rot.jpg"
    im.save(src, exif=exif.tobytes())
    assert read_image(src).size == (40, 80)
    assert Image.open(stylize_ok(tmp_path, src)).size == (40, 80)


@pytest.mark.parametrize("which", ["content", "style"])
def test_flat_images_give_finite_sensible_output(tmp_path, cd16x, which):
    flat = np.full((3, 64, 64), 0.4, np.float32)
    photo = read_image(PHOTO, 64).rgb
    content, style = (flat, photo) if which == "content" else (photo, flat)
    out = cd16x.stylize(content.copy(), style).image
    assert np.isfinite(out).all() and out.min() >= 0 and out.max() <= 1
    if which == "style":  # a flat style paints a (nearly) flat picture
        assert out.std(axis=(1, 2)).max() < 0.1


def test_interrupted_write_leaves_nothing(tmp_path, monkeypatch):
    out = tmp_path / "o.png"

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(Image.Image, "save", boom)
    with pytest.raises(KeyboardInterrupt):
        write_image(out, np.zeros((3, 8, 8), np.float32))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".tif"])
def test_output_gets_the_usual_permissions(tmp_path, suffix):
    """The atomic write goes through a private (0600) temporary file; the result must get what
    any new file gets under the process umask, not stay private."""
    import os

    mask = os.umask(0)
    os.umask(mask)
    out = write_image(tmp_path / f"o{suffix}", np.zeros((3, 8, 8), np.float32))
    assert out.stat().st_mode & 0o777 == 0o666 & ~mask


def test_interrupt_in_cli_is_clean(tmp_path, monkeypatch):
    import stylize.engine.stylizer

    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(stylize.engine.stylizer.Stylizer, "stylize", boom)
    code, text = run(PHOTO, STYLE, "-o", tmp_path / "o.png")
    assert code == 130 and "interrupted" in text
    assert list(tmp_path.iterdir()) == []


def test_bad_options(tmp_path):
    for args, msg in [(["--levels", "6,1"], "levels"), (["--res", "huge"], "resolution"),
                      (["--transform", "magic"], "transform"), (["--model", "nope"], "unknown model"),
                      (["--bits", "16"], "16-bit"), (["--device", "gpu"], "unknown device 'gpu'")]:
        code, text = run(PHOTO, STYLE, "-o", tmp_path / "o.png", *args)
        assert code == 2 and msg in text, (args, text)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks a GPU asked for where torch sees none")
def test_a_missing_gpu_is_one_line_before_any_file_is_read(tmp_path, monkeypatch):
    import stylize.api as api

    monkeypatch.setattr(api, "probe_image", lambda *a, **k: pytest.fail("a file was read"))
    code, text = run(PHOTO, STYLE, "-o", tmp_path / "o.png", "--device", "cuda")
    assert code == 2 and "no CUDA GPU is available" in text and not (tmp_path / "o.png").exists(), text


def test_main_dispatch_runs_single_image(tmp_path):
    out = tmp_path / "m.png"
    with pytest.raises(SystemExit) as e:
        main([str(PHOTO), str(STYLE), "-o", str(out), "--res", "96", "-q"])
    assert e.value.code == 0 and out.exists()


def test_image_error_type():
    with pytest.raises(ImageError):
        read_image(SHARED / "does-not-exist.png")


def test_the_python_api_takes_what_pillow_gives_as_the_cli_takes_the_file(tmp_path, cd16x):
    """stylize.stylize on an (H, W, 3) uint8 array and a PIL image, sized by the settings,
    paints exactly the pixels stylize_file writes for the same files."""
    import stylize
    from stylize.imageio import to_integer

    content = small_photo(tmp_path, size=(300, 200))
    settings = stylize.Settings(resolution=160, style_resolution=128)
    stylize.stylize_file(content, STYLE, tmp_path / "file.png", settings, stylizer=cd16x)
    from_file = np.asarray(Image.open(tmp_path / "file.png"))
    got = stylize.stylize(np.asarray(Image.open(content)), Image.open(STYLE), settings, stylizer=cd16x).image
    assert got.shape == (3, 107, 160)
    assert np.array_equal(to_integer(got), from_file)
    with pytest.raises(stylize.UserError, match="content: float pixels must be in"):
        stylize.stylize(np.asarray(Image.open(content), np.float32), STYLE, settings, stylizer=cd16x)


def test_style_statistics_from_a_path_paint_what_the_path_paints(tmp_path, cd16x):
    """The README's reuse: stylize.style_statistics reads a style as stylize.stylize does (a
    path, a PIL image), sized by the settings, and its statistics paint the same pixels."""
    import stylize

    content = small_photo(tmp_path, size=(300, 200))
    settings = stylize.Settings(resolution=160, style_resolution=128)
    stats = stylize.style_statistics(STYLE, settings, stylizer=cd16x)
    assert sorted(stats) == [1, 2, 3, 4, 5]
    from_path = stylize.stylize(content, STYLE, settings, stylizer=cd16x).image
    for style in (stats, stylize.style_statistics(Image.open(STYLE), settings, stylizer=cd16x)):
        assert np.array_equal(stylize.stylize(content, style, settings, stylizer=cd16x).image, from_path)


def test_the_engine_names_a_layout_it_does_not_take(cd16x):
    """The engine itself takes (3, H, W) only: an (H, W, 3) array is a ValueError naming the
    shape, not a convolution's complaint about 50 channels."""
    with pytest.raises(ValueError, match=r"style: the engine takes \(3, H, W\) images, got shape \(50, 60, 3\)"):
        cd16x.style_statistics(np.zeros((50, 60, 3), np.float32))
    with pytest.raises(ValueError, match=r"content: .* got shape \(3, 0, 60\)"):
        cd16x.stylize(np.zeros((3, 0, 60), np.float32), np.zeros((3, 50, 60), np.float32))
    with pytest.raises(TypeError, match=r"style: the engine takes a \(3, H, W\) float32 array or a store, got str "
                                        r"\(stylize.stylize and stylize.style_statistics read paths"):
        cd16x.style_statistics("painting.jpg")


def test_statistics_of_other_levels_and_regions_of_another_size_are_refused_before_compute(cd16x):
    """Statistics taken with levels 5,4,3 given to a 5..1 run failed with a bare KeyError
    after three levels had rendered; region weights of another size than the content were
    reflect-read past their edge and painted the wrong places. Both are ValueErrors now,
    before any level runs."""
    from stylize.engine.regions import Regions
    from stylize.engine.store import RamStore

    content, style = np.zeros((3, 40, 60), np.float32), np.full((3, 32, 32), 0.5, np.float32)
    ran = []
    stats = cd16x.style_statistics(style)
    partial = {k: v for k, v in stats.items() if k >= 3}
    with pytest.raises(ValueError, match=r"statistics of levels \[3, 4, 5\] lack level\(s\) \[2, 1\]"):
        cd16x.stylize(content, partial, progress=lambda *a: ran.append(a))
    weights = np.ones((2, 10, 10), np.float32) / 2
    with pytest.raises(ValueError, match=r"region weights of shape \(2, 10, 10\) .* a 60x40 content"):
        cd16x.stylize(content, [style], regions=Regions(RamStore(weights), [None, 0]),
                      progress=lambda *a: ran.append(a))
    with pytest.raises(ValueError, match=r"region weights of shape \(2, 40, 60\) for 3 region\(s\)"):
        cd16x.stylize(content, [style], regions=Regions(RamStore(np.ones((2, 40, 60), np.float32)), [None, 0, 0]))
    assert ran == []


def test_the_python_api_names_what_it_was_given_wrongly(tmp_path):
    """stylize_file works on paths: an array is a TypeError pointing to stylize.stylize; no
    style at all is a user error in both entry points, before any model is loaded."""
    import stylize

    with pytest.raises(TypeError, match="content must be a file path, got ndarray .*stylize.stylize"):
        stylize.stylize_file(np.zeros((3, 8, 8), np.float32), STYLE, tmp_path / "o.png")
    with pytest.raises(TypeError, match="output must be a file path, got NoneType"):
        stylize.stylize_file(PHOTO, STYLE, None)
    with pytest.raises(stylize.UserError, match="no style given"):
        stylize.stylize_file(PHOTO, [], tmp_path / "o.png")
    with pytest.raises(stylize.UserError, match="no style given"):
        stylize.stylize(np.zeros((3, 8, 8), np.float32), [])


def test_every_header_is_checked_before_the_photo_is_decoded(tmp_path, monkeypatch):
    import stylize.api as api

    (tmp_path / "notes.png").write_text("not a PNG")
    monkeypatch.setattr(api, "read_image", lambda *a, **k: pytest.fail("the photo was decoded"))
    for extra, message in [((tmp_path / "notes.png",), "style .*notes.png: not an image"),
                           ((), "mask .*notes.png: not an image")]:
        settings = stylize.Settings(mask=tmp_path / "notes.png") if not extra else stylize.Settings()
        with pytest.raises(ImageError, match=message):
            stylize.stylize_file(PHOTO, [STYLE, *extra], tmp_path / "o.png", settings)
