"""The tiled engine: planner geometry, exactness of tiling, streamed statistics, WCT numerics."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import SHARED, psnr, to_uint8
from engine.imageio import read_image
from engine.memory import LevelPlan, parse_size, plan_level
from engine.stylizer import Stylizer
from engine.tiles import plan_tiles, read_region, reflect_index
from engine.wct import Moments, adain_affine, merge_moments, symmetric_power, tile_moments, wct_affine

PHOTO = SHARED / "images/content/cornell.jpg"
STYLE = SHARED / "images/style/brushstrokes.jpg"


@pytest.mark.parametrize("h,w,tile,halo,align", [(64, 48, 16, 5, 1), (160, 96, 32, 23, 4), (256, 512, 100, 155, 16)])
def test_plan_cores_partition_the_image_and_reads_are_aligned(h, w, tile, halo, align):
    owner = np.zeros((h, w), int)
    for t in plan_tiles(h, w, tile, halo, align):
        owner[t.core.y0:t.core.y1, t.core.x0:t.core.x1] += 1
        r, c = t.read, t.core
        assert r.y0 <= c.y0 and r.x0 <= c.x0 and r.y1 >= c.y1 and r.x1 >= c.x1
        assert all(v % align == 0 for v in (r.y0, r.x0, r.y1, r.x1, c.y0, c.x0))
        for near, far, edge in ((c.y0 - r.y0, c.y0, 0), (r.y1 - c.y1, h - c.y1, 0),
                                (c.x0 - r.x0, c.x0, 0), (r.x1 - c.x1, w - c.x1, 0)):
            assert near >= min(halo, far)  # a full halo unless the image edge is nearer
    assert (owner == 1).all()


def test_reflect_reads_match_numpy_reflect_padding():
    img = np.random.default_rng(0).random((3, 7, 5)).astype(np.float32)
    padded = np.pad(img, ((0, 0), (4, 9), (3, 6)), mode="reflect")
    from engine.tiles import Box

    assert np.array_equal(read_region(img, Box(-4, 16, -3, 11)), padded)
    assert (reflect_index(np.arange(-3, 4), 1) == 0).all()


def test_moments_merge_matches_fp64_over_the_whole():
    rng = np.random.default_rng(1)
    f = torch.from_numpy(rng.random((6, 10_000)) * 150 + 40)  # large means, as relu features
    parts = [f[:, :3000], f[:, 3000:3001], f[:, 3001:]]
    m = None
    for p in parts:
        m = merge_moments(m, tile_moments(p.float()))
    ref = torch.cov(f)
    assert m.n == 10_000
    assert torch.allclose(m.mean, f.mean(1), rtol=1e-6)
    assert torch.allclose(m.covariance(), ref, rtol=1e-4, atol=1e-3)


def _moments(cov: torch.Tensor, mean: torch.Tensor) -> Moments:
    return Moments(1001, mean, cov * 1000)


def test_dead_channels_are_dropped_not_inverted():
    rng = torch.Generator().manual_seed(0)
    x = torch.rand(4, 500, generator=rng, dtype=torch.float64)
    x[2] = 0  # a dead channel: zero for every input
    c = Moments(500, x.mean(1), (x - x.mean(1, keepdim=True)) @ (x - x.mean(1, keepdim=True)).T)
    s = Moments(500, x.mean(1) + 1, c.m2 * 4)
    a, b = wct_affine(c, s)
    assert torch.isfinite(a).all() and a.abs().max() < 10
    out = a @ x + b[:, None]
    assert torch.allclose(out[2], torch.ones(500, dtype=torch.float64))  # the style mean, nothing amplified
    live = [0, 1, 3]
    assert torch.allclose(torch.cov(out[live]), s.covariance()[live][:, live], atol=1e-8)
    ad_a, ad_b = adain_affine(c, s)
    assert torch.isfinite(ad_a).all() and ad_a[2, 2] == 0


def test_flat_statistics_give_zero_maps_never_nan():
    zero = torch.zeros(3, 3, dtype=torch.float64)
    assert (symmetric_power(zero, -0.5) == 0).all()
    a, b = wct_affine(_moments(zero, torch.ones(3, dtype=torch.float64)),
                      _moments(torch.eye(3, dtype=torch.float64), torch.zeros(3, dtype=torch.float64)))
    assert torch.isfinite(a).all() and torch.isfinite(b).all()


@pytest.fixture(scope="module")
def odd_pair():
    return read_image(PHOTO, 203).rgb, read_image(STYLE, 160).rgb  # 203x142: no side a multiple of 16


@pytest.mark.parametrize("transform", ["wct", "adain"])
def test_tiled_equals_whole_image_on_odd_sizes(cd16x, odd_pair, transform):
    content, style = odd_pair
    whole = cd16x.stylize(content, style, transform=transform)
    assert whole.shape == content.shape
    assert all(p.tile is None for p in cd16x.last_report.plans)
    cd16x.tile = 48
    try:
        tiled = cd16x.stylize(content, style, transform=transform)
    finally:
        cd16x.tile = None
    assert any(p.tile for p in cd16x.last_report.plans)
    assert psnr(tiled, whole, peak=1.0) >= 70.0  # only fp32 summation order differs


def test_recomputed_features_path_equals_cached(cd16x, odd_pair, monkeypatch):
    content, style = odd_pair
    cd16x.tile = 64
    try:
        cached = cd16x.stylize(content, style)
        import engine.stylizer as st

        real = st.plan_level
        monkeypatch.setattr(st, "plan_level", lambda *a, **k: LevelPlan(**{**real(*a, **k).__dict__,
                                                                            "cache_features": False}))
        recomputed = cd16x.stylize(content, style)
        assert not any(p.cache_features for p in cd16x.last_report.plans)
    finally:
        cd16x.tile = None
    assert psnr(recomputed, cached, peak=1.0) >= 70.0


def test_odd_sizes_are_not_shifted(cd16x):
    """At alpha 0 every level is a pure reconstruction, independent of statistics: an odd-size
    crop must then equal the aligned image's output wherever the padding cannot reach."""
    big = read_image(PHOTO).rgb[:, :384, :512]  # 384x512: multiple of 16
    odd = np.ascontiguousarray(big[:, :371, :501])
    out_big = cd16x.stylize(big, big, alpha=0.0)
    out_odd = cd16x.stylize(odd, big, alpha=0.0)
    assert out_odd.shape == odd.shape
    reach = 160  # level-5 receptive-field radius, rounded up to its stride
    diff = np.abs(out_odd[:, :371 - reach, :501 - reach] - out_big[:, :371 - reach, :501 - reach])
    assert diff.max() < 1e-4


def test_memory_plan_tiles_when_the_budget_is_small():
    from models import load_levels

    g = load_levels("cd16x", (5,))[5].geometry()
    assert plan_level(g, 4320, 7680, available=12 << 30).tile is None
    small = plan_level(g, 4320, 7680, available=600 << 20)
    assert small.tile and small.tile % 16 == 0 and small.cache_features
    assert parse_size("1.5G") == 3 << 29 and parse_size("800MiB") == 800 << 20


@pytest.mark.slow
def test_uhd_tiled_vs_whole_at_2k(measured):
    content = read_image(SHARED / "images/uhd/green_park_3840x2160.jpg", 2048).rgb
    style = read_image(SHARED / "images/style/wct_in1_2048.jpg", 1024).rgb
    st = Stylizer("cd16x", max_memory="16G")
    whole = to_uint8(st.stylize(content, style))
    assert all(p.tile is None for p in st.last_report.plans)
    st.tile = 512
    tiled = to_uint8(st.stylize(content, style))
    assert all(p.tile == 512 for p in st.last_report.plans)
    got = psnr(tiled, whole)
    measured(f"tiles of 512 px vs whole image: {got:.2f} dB")
    assert got >= 45.0
