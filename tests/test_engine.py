"""The tiled engine on the real weights: tiled equals whole image on odd sizes, both pass-2
paths, no shift on odd sizes, and the 4K sample tiled vs whole. (Data-free maths and tiling
tests are in tests/unit.)"""
from __future__ import annotations

import numpy as np
import pytest

from conftest import SHARED, psnr, to_uint8
from stylize.imageio import read_image
from stylize.engine.memory import LevelPlan
from stylize.api import build_stylizer
from stylize.settings import Settings

PHOTO = SHARED / "images/content/cornell.jpg"
STYLE = SHARED / "images/style/brushstrokes.jpg"


@pytest.fixture(scope="module")
def odd_pair():
    return read_image(PHOTO, 203).rgb, read_image(STYLE, 160).rgb  # 203x142: no side a multiple of 16


@pytest.mark.parametrize("transform", ["wct", "adain"])
def test_tiled_equals_whole_image_on_odd_sizes(cd16x, odd_pair, transform):
    content, style = odd_pair
    result = cd16x.stylize(content, style, transform=transform)
    whole = result.image
    assert whole.shape == content.shape
    assert all(p.tile is None for p in result.report.plans)
    cd16x.tile = 48
    try:
        result = cd16x.stylize(content, style, transform=transform)
    finally:
        cd16x.tile = None
    tiled = result.image
    assert any(p.tile for p in result.report.plans)
    assert psnr(tiled, whole, peak=1.0) >= 70.0  # only fp32 summation order differs


def test_a_tiled_styles_statistics_are_the_whole_passes_on_odd_sides(cd16x, monkeypatch):
    """A style too large to encode whole is tiled; its statistics must be those of the paper's
    unpadded whole-image pass. Border tiles read to the reflect-padded edge and their layers
    reflected at another place: a 1201x1020 style's level-5 covariance was 2.6 % off, and the
    final image 35.9 dB from the one its whole-pass statistics paint."""
    import stylize.engine.stylizer as engine

    style = read_image(SHARED / "images/style/cubism_2040x2401.jpg", 601).rgb  # 601x511: odd sides
    whole = cd16x.style_statistics(style)
    planned = engine.plan_level
    monkeypatch.setattr(engine, "plan_level", lambda g, h, w, room, tile=None: planned(g, h, w, room, tile or 128))
    tiled = cd16x.style_statistics(style)
    for k in cd16x.levels:
        a, b = whole[k].covariance(), tiled[k].covariance()
        assert whole[k].n == tiled[k].n
        assert float((a - b).norm() / a.norm()) < 1e-5, k
        assert float((whole[k].mean - tiled[k].mean).norm() / whole[k].mean.norm()) < 1e-5, k


@pytest.mark.parametrize("transform", ["wct", "adain"])
@pytest.mark.parametrize("shape, style, side", [((64, 64), "brushstrokes.jpg", 64), ((40, 40), "brushstrokes.jpg", None),
                                                ((16, 36), "contrast_of_forms.jpg", 700)])
def test_a_flat_photo_stays_flat_tiled_or_whole(cd16x, transform, shape, style, side):
    """A grey wall's covariance is fp32 rounding (λ_max ~1e-12); whitening it painted the
    style's texture over the wall, differently per tile (std 0.13-0.21 with 16 px tiles,
    and whole-image means 0.09 from the style's). Under the rounding floor nothing is
    whitened: every level maps the wall to the style's mean, tiled or whole. The later
    levels see the wall as the last decoder left it, flat to some tens of ulps that the
    next encoder amplifies past the features' floor: a 40x40 wall under the whole
    brushstrokes painting came out textured (std 0.19), a 16x36 one under another at 0.26."""
    flat, painting = np.full((3, *shape), 0.4, np.float32), read_image(SHARED / "images/style" / style, side).rgb
    outs = []
    for tile in (None, 16):
        cd16x.tile = tile
        try:
            outs.append(cd16x.stylize(flat.copy(), painting, transform=transform).image)
        finally:
            cd16x.tile = None
    for out in outs:
        assert float(out.reshape(3, -1).std(axis=1).max()) < 1e-3
    assert float(np.abs(outs[0] - outs[1]).max()) < 1e-3


@pytest.mark.parametrize("h,w", [(1, 50), (17, 1), (5, 300), (300, 5), (9, 400)])
def test_a_thin_photo_tiled_equals_whole(cd16x, h, w, measured):
    """A strip's deep levels have few features, and genuine eigenvalues down to 1e-10 of the
    largest, which fp32 sums resolved only to 1e-7: whitening amplified the difference and
    tiled vs whole was 15-33 dB on these shapes. With fp64 sums it is 48-112 dB over eleven
    strips, the bound here leaving room for the problem's own conditioning: on a 300x5
    strip, input noise of 1e-6 moves the whole-image output as much (45.8 dB) as tiling
    does (50.5 dB)."""
    content, style = np.ascontiguousarray(read_image(PHOTO, 300).rgb[:, :h, :w]), read_image(STYLE, 160).rgb
    outs = []
    for tile in (None, 16):
        cd16x.tile = tile
        try:
            outs.append(cd16x.stylize(content, style).image)
        finally:
            cd16x.tile = None
    got = psnr(outs[1], outs[0], peak=1.0)
    measured(f"{w}x{h} strip: tiles of 16 px vs whole image {got:.1f} dB")
    assert got >= 40.0


def test_recomputed_features_path_equals_cached(cd16x, odd_pair, monkeypatch):
    content, style = odd_pair
    cd16x.tile = 64
    try:
        cached = cd16x.stylize(content, style).image
        import stylize.engine.stylizer as st

        real = st.plan_level
        monkeypatch.setattr(st, "plan_level", lambda *a, **k: LevelPlan(**{**real(*a, **k).__dict__,
                                                                            "cache_features": False}))
        result = cd16x.stylize(content, style)
        recomputed = result.image
        assert not any(p.cache_features for p in result.report.plans)
    finally:
        cd16x.tile = None
    assert psnr(recomputed, cached, peak=1.0) >= 70.0


def test_odd_sizes_are_not_shifted(cd16x):
    """At alpha 0 every level is a pure reconstruction, independent of statistics: an odd-size
    crop must then equal the aligned image's output wherever the padding cannot reach."""
    big = read_image(PHOTO).rgb[:, :384, :512]  # 384x512: multiple of 16
    odd = np.ascontiguousarray(big[:, :371, :501])
    out_big = cd16x.stylize(big, big, alpha=0.0).image
    out_odd = cd16x.stylize(odd, big, alpha=0.0).image
    assert out_odd.shape == odd.shape
    reach = 160  # level-5 receptive-field radius, rounded up to its stride
    diff = np.abs(out_odd[:, :371 - reach, :501 - reach] - out_big[:, :371 - reach, :501 - reach])
    assert diff.max() < 1e-4


@pytest.mark.slow
def test_uhd_tiled_vs_whole_at_2k(measured):
    content = read_image(SHARED / "images/uhd/green_park_3840x2160.jpg", 2048).rgb
    style = read_image(SHARED / "images/style/wct_in1_2048.jpg", 1024).rgb
    st = build_stylizer(Settings(device="cpu", max_memory="4G"))
    result = st.stylize(content, style)
    whole = to_uint8(result.image)
    assert all(p.tile is None for p in result.report.plans)
    st.tile = 512
    result = st.stylize(content, style)
    tiled = to_uint8(result.image)
    assert all(p.tile == 512 for p in result.report.plans)
    got = psnr(tiled, whole)
    measured(f"tiles of 512 px vs whole image: {got:.2f} dB")
    assert got >= 45.0
