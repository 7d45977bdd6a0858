"""Creative controls on the real weights: style mixing, colour preservation, regional masks.
Each is exact under tiling, reduces to the plain run where it should, and bad inputs are
one-line errors before any compute."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from conftest import SHARED, psnr, to_uint8
from stylize.cli import app
from stylize.engine.color import to_ycbcr
from stylize.engine.regions import Regions
from stylize.engine.store import RamStore
from stylize.imageio import read_image
from stylize.masks import mask_weights

PHOTO = SHARED / "images/content/cornell.jpg"
STYLES = [SHARED / "images/style/brushstrokes.jpg", SHARED / "images/style/sketch.png"]


@pytest.fixture(scope="module")
def images():
    content = read_image(PHOTO, 480).rgb  # 480x337: each mask region has enough pixels at level 5
    return content, [read_image(p, 256).rgb for p in STYLES]


def halves(content: np.ndarray, photo_label: bool = False) -> Regions:
    """A label mask: left half one label, right half another; with ``photo_label`` thirds, the
    darkest (left) keeping the photo."""
    _, h, w = content.shape
    mask = np.zeros((3, h, w), np.float32)
    mask[:, :, w // 2:] = 1.0
    if photo_label:
        mask[:, :, w // 3:] = 0.5
        mask[:, :, 2 * w // 3:] = 1.0
    weights, styles = mask_weights(mask, 2)
    return Regions(RamStore(weights), styles)


CONTROLS = {
    "mix": lambda c: {"style_weights": (0.7, 0.3)},
    "luminance": lambda c: {"preserve_color": "luminance"},
    "style-colours": lambda c: {"preserve_color": "style"},
    "mask": lambda c: {"regions": halves(c, photo_label=True)},
}


@pytest.mark.parametrize("control", sorted(CONTROLS))
def test_each_control_tiled_equals_whole(cd16x, images, control, measured):
    content, styles = images
    whole = cd16x.stylize(content.copy(), styles, **CONTROLS[control](content)).image
    cd16x.tile = 64
    try:
        result = cd16x.stylize(content.copy(), styles, **CONTROLS[control](content))
    finally:
        cd16x.tile = None
    assert any(p.tile for p in result.report.plans)
    db = psnr(to_uint8(result.image), to_uint8(whole))
    measured(f"{control}: tiles of 64 px vs whole image {db:.2f} dB")
    assert db >= 45.0


def test_a_region_smaller_than_the_channels_is_tiled_exactly(cd16x, images, measured):
    """A 40x60 px region covers 15 level-5 features of 128 channels: its covariance has rank
    14, and the rest of its eigenvalues are fp32 rounding that whitening must not invert."""
    content, styles = images
    mask = np.zeros((3, *content.shape[1:]), np.float32)
    mask[:, 150:190, 200:260] = 1.0
    weights, region_styles = mask_weights(mask, 2)
    run = lambda: cd16x.stylize(content.copy(), styles, regions=Regions(RamStore(weights.copy()), region_styles)).image
    whole = run()
    cd16x.tile = 64
    try:
        tiled = run()
    finally:
        cd16x.tile = None
    db = psnr(to_uint8(tiled), to_uint8(whole))
    measured(f"40x60 px region: tiles of 64 px vs whole image {db:.2f} dB")
    assert db >= 70.0


def test_settings_mask_paints_regions_from_python_as_on_the_command_line(images, tmp_path):
    """``stylize.stylize`` with ``Settings(mask=...)`` is the run with the mask's regions (it used
    to ignore the mask and mix the styles 50/50 without a word)."""
    import stylize
    from stylize.masks import load_regions

    content, styles = images
    _, h, w = content.shape
    mask = np.zeros((h, w, 3), np.uint8)
    mask[:, w // 2:] = 255
    Image.fromarray(mask).save(tmp_path / "halves.png")
    settings = stylize.Settings(mask=tmp_path / "halves.png")
    st = stylize.build_stylizer(settings)
    by_settings = stylize.stylize(content.copy(), styles, settings, stylizer=st).image
    regions = load_regions(tmp_path / "halves.png", (w, h), 2, settings.max_pixels)
    by_regions = stylize.stylize(content.copy(), styles, stylize.Settings(), stylizer=st, regions=regions).image
    mixed = stylize.stylize(content.copy(), styles, stylize.Settings(), stylizer=st).image
    assert np.array_equal(by_settings, by_regions) and not np.array_equal(by_settings, mixed)
    with pytest.raises(ValueError, match="give one"):
        stylize.stylize(content.copy(), styles, settings, stylizer=st, regions=regions)


def test_weights_one_zero_equal_the_single_style(cd16x, images):
    content, styles = images
    mixed = cd16x.stylize(content.copy(), styles, style_weights=(1, 0)).image
    single = cd16x.stylize(content.copy(), styles[0]).image
    assert np.array_equal(mixed, single)


def test_mask_of_one_label_equals_the_unmasked_run(cd16x, images, measured):
    content, styles = images
    weights, region_styles = mask_weights(np.full((3, 40, 57), 0.3, np.float32), 1)
    assert region_styles == [0] and weights.shape[0] == 1
    regions = Regions(RamStore(np.ones((1, *content.shape[1:]), np.float32)), region_styles)
    masked = cd16x.stylize(content.copy(), styles[:1], regions=regions).image
    plain = cd16x.stylize(content.copy(), styles[0]).image
    db = psnr(to_uint8(masked), to_uint8(plain))
    measured(f"one-label mask vs no mask: {db:.2f} dB")
    assert db >= 60.0


def test_mask_regions_take_their_styles(cd16x, images, measured):
    """Away from the edge, each half of a two-label mask looks like its own style's run (not
    equal: a region's statistics are its own pixels', not the whole photo's)."""
    content, styles = images
    out = cd16x.stylize(content.copy(), styles, regions=halves(content)).image
    runs = [cd16x.stylize(content.copy(), st).image for st in styles]
    w = content.shape[2]
    sides = {0: np.s_[:, :, :w // 2 - 60], 1: np.s_[:, :, w // 2 + 60:]}
    for side, cut in sides.items():
        own, other = (psnr(to_uint8(out[cut]), to_uint8(runs[k][cut])) for k in (side, 1 - side))
        measured(f"region {side}: {own:.1f} dB to its style's run, {other:.1f} dB to the other's")
        assert own > other + 3


def test_preserved_chroma_matches_the_photo(cd16x, images, measured):
    content, styles = images
    out = cd16x.stylize(content.copy(), styles[0], preserve_color="luminance").image
    plain = cd16x.stylize(content.copy(), styles[0]).image
    chroma = lambda x: to_ycbcr(x)[1:]  # noqa: E731
    err = np.abs(chroma(out) - chroma(content))
    inside = (out > 0.02).all(0) & (out < 0.98).all(0)  # where no channel was clamped
    measured(f"luminance mode: |CbCr - photo CbCr| mean {err.mean():.4f}, unclamped pixels {err[:, inside].max():.4f} "
             f"max; plain run {np.abs(chroma(plain) - chroma(content)).mean():.4f} mean")
    assert err[:, inside].max() < 1e-3 and err.mean() < 0.01
    styled = cd16x.stylize(content.copy(), styles[0], preserve_color="style").image
    gap = np.abs(chroma(styled).mean(axis=(1, 2)) - chroma(content).mean(axis=(1, 2)))
    measured(f"style mode: mean chroma off by {gap.max():.4f} (plain run "
             f"{np.abs(chroma(plain).mean(axis=(1, 2)) - chroma(content).mean(axis=(1, 2))).max():.4f})")
    assert gap.max() < 0.03


@pytest.mark.parametrize("args,message", [
    (["--style-weights", "0,0"], "positive"),
    (["--style-weights", "1,2,3"], "3 weight(s) for 2 style(s)"),
    (["--mask", "COLOURS"], "mask has 4 colours for 2 style(s)"),
    (["--mask", "TEXT"], "not an image"),
    (["--mask", "NARROW"], "aspect ratio"),
])
def test_bad_controls_fail_before_compute(tmp_path, monkeypatch, args, message):
    import stylize.engine.stylizer as st

    monkeypatch.setattr(st.Stylizer, "stylize", lambda *a, **k: pytest.fail("computed despite a bad input"))
    colours = np.zeros((512, 729, 3), np.uint8)
    for i, c in enumerate([(255, 0, 0), (0, 255, 0), (0, 0, 255)]):
        colours[:, 182 * (i + 1):] = c
    Image.fromarray(colours).save(tmp_path / "colours.png")
    Image.fromarray(colours[:100]).save(tmp_path / "narrow.png")
    (tmp_path / "text.png").write_text("not an image")
    files = {"COLOURS": tmp_path / "colours.png", "TEXT": tmp_path / "text.png", "NARROW": tmp_path / "narrow.png"}
    args = [str(files.get(a, a)) for a in args]
    result = CliRunner().invoke(app, [str(PHOTO), *map(str, STYLES), "-o", str(tmp_path / "o.png"), *args])
    assert result.exit_code == 2 and message in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "o.png").exists()
