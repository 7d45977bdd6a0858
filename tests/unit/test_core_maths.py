"""Data-free: the tile planner's invariants, streamed moments, WCT numerics, the memory plan."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from stylize.engine.memory import parse_size, plan_level
from stylize.engine.tiles import Box, plan_tiles, read_region, reflect_index
from stylize.engine.wct import (Moments, adain_affine, flat_to_rounding, merge_moments, symmetric_power, tile_moments,
                                wct_affine)
from stylize.models.zoo import get_family


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


def test_tile_moments_resolve_eigenvalues_far_below_fp32_sums(monkeypatch):
    """A thin photo's deep level keeps genuine eigenvalues at 1e-10 of the largest; sums of
    fp32 products resolve them only to ~1e-7 (they were off by 400x here, and whitening turned
    that into a 15 dB gap between tiled and whole). Blocks of rows change nothing."""
    import stylize.engine.wct as wct

    rng = torch.Generator().manual_seed(0)
    q, _ = torch.linalg.qr(torch.randn(64, 64, generator=rng, dtype=torch.float64))
    spread = torch.logspace(0, -5, 30, dtype=torch.float64)  # eigenvalues 1 .. 1e-10 of the largest
    f = (q[:, :30] @ (spread[:, None] * torch.randn(30, 40, generator=rng, dtype=torch.float64)) * 30 + 20).float()
    want = torch.linalg.eigvalsh(torch.cov(f.double())).flip(0)[:29]
    whole = tile_moments(f)
    got = torch.linalg.eigvalsh(whole.covariance()).flip(0)[:29]
    assert float(want[-1] / want[0]) < 1e-10
    assert torch.allclose(got, want, rtol=1e-6)
    monkeypatch.setattr(wct, "BLOCK", 64 * 7)  # 7 rows at a time, the last block short
    blocked = tile_moments(f)
    assert blocked.n == whole.n and torch.allclose(blocked.mean, whole.mean, rtol=1e-14)
    assert torch.allclose(blocked.m2, whole.m2, rtol=1e-12, atol=1e-12 * float(want[0]))


def test_an_image_is_flat_only_within_rounding():
    eps = torch.finfo(torch.float32).eps
    grey = torch.tensor([0.4, 0.4, 0.4])
    assert flat_to_rounding(grey, grey)
    assert flat_to_rounding(grey, grey + 75 * eps)  # the most a decoder left on a flat wall
    assert not flat_to_rounding(grey, grey + torch.tensor([0.0, 1 / 255, 0.0]))  # one 8-bit step
    assert not flat_to_rounding(torch.zeros(3), torch.ones(3))
    m = Moments(10, torch.ones(3, dtype=torch.float64), torch.eye(3, dtype=torch.float64), 7).flattened()
    assert m.n == 10 and m.support == 7 and (m.m2 == 0).all() and (m.mean == 1).all()


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


def test_fewer_samples_than_channels_whiten_the_same_whole_or_in_tiles():
    """20 fp32 features of 64 channels: rank 19. Eigenvalues past it are rounding, which
    differs between one sum and a merge of tiles; inverted, they amplify the rounding of any
    feature painted (here, features between the samples) into different outputs (~7 % of
    the range). Dropped, the whole and tiled maps paint alike."""
    rng = torch.Generator().manual_seed(1)
    f = (torch.rand(64, 20, generator=rng) * 100).float()
    mix = torch.rand(20, 30, generator=rng)
    between = (f @ (mix / mix.sum(0))) * (1 + 1e-6 * torch.randn(64, 30, generator=rng))
    whole = tile_moments(f)
    tiled = None
    for part in f.split(6, dim=1):
        tiled = merge_moments(tiled, tile_moments(part))
    assert whole.rank_bound == tiled.rank_bound == 19
    style = Moments(1001, torch.zeros(64, dtype=torch.float64), torch.eye(64, dtype=torch.float64) * 1000)
    outs = [a @ between.double() + b[:, None] for a, b in (wct_affine(m, style) for m in (whole, tiled))]
    assert (outs[0] - outs[1]).abs().max() < 1e-5 * outs[0].abs().max()
    a, b = wct_affine(whole, style)
    assert torch.allclose(torch.cov(a @ f.double()).trace(), torch.tensor(19.0, dtype=torch.float64), rtol=1e-3)


def test_flat_statistics_give_zero_maps_never_nan():
    zero = torch.zeros(3, 3, dtype=torch.float64)
    assert (symmetric_power(zero, -0.5) == 0).all()
    a, b = wct_affine(_moments(zero, torch.ones(3, dtype=torch.float64)),
                      _moments(torch.eye(3, dtype=torch.float64), torch.zeros(3, dtype=torch.float64)))
    assert torch.isfinite(a).all() and torch.isfinite(b).all()


def test_memory_plan_tiles_when_the_budget_is_small():
    g = get_family("cd16x").build(5).geometry()
    assert plan_level(g, 4320, 7680, available=12 << 30).tile is None
    small = plan_level(g, 4320, 7680, available=600 << 20)
    assert small.tile and small.tile % 16 == 0 and small.cache_features
    assert parse_size("1.5G") == 3 << 29 and parse_size("800MiB") == 800 << 20


def test_the_feature_cache_is_given_up_before_the_budget_is_called_too_small():
    """Between the floor tile alone and the floor tile plus the cache, the plan runs without
    the cache (it is a speed-up); below the floor, the shortfall is what is really missing."""
    from stylize.engine.memory import (CACHE_SHARE, BudgetTooSmall, feature_bytes, floor_bytes, floor_tile,
                                       padded_size)

    g = get_family("cd16x").build(5).geometry()
    h, w = 4400, 6000  # level-5 features of 50 MiB: the planner takes the cache from 143 MiB on
    cached = feature_bytes(g, padded_size(h, w, g.stride, 2 * g.stride))
    available = cached / CACHE_SHARE + (1 << 20)
    assert available - cached < floor_bytes(g) <= available  # the floor tile fits, not with the cache beside it
    plan = plan_level(g, h, w, available)
    assert plan.tile >= floor_tile(g) and not plan.cache_features
    with pytest.raises(BudgetTooSmall) as e:
        plan_level(g, h, w, floor_bytes(g) - (5 << 20))
    assert 0 < e.value.short <= 5 << 20


def test_an_image_smaller_than_the_floor_tile_is_short_of_its_own_size_only():
    """A 200x150 style at level 5 needs what the whole image needs, not the 320-px tile's
    budget: the least budget the error names must be the least that works."""
    from stylize.engine.memory import BudgetTooSmall, floor_bytes, padded_size, working_bytes

    g = get_family("cd16x").build(5).geometry()
    need = working_bytes(g, *padded_size(150, 200, g.stride, 2 * g.stride))
    assert need < floor_bytes(g)
    with pytest.raises(BudgetTooSmall) as e:
        plan_level(g, 150, 200, need - (3 << 20))
    assert 0 < e.value.short <= 3 << 20 and "(the whole image needs" in str(e.value), e.value
    assert plan_level(g, 150, 200, need).tile is None




def test_stroke_factor_and_split():
    from stylize.engine.stroke_scale import parse_stroke_scale, split_levels, stroke_factor, working_size

    assert stroke_factor(2160, 3840, "native") == 1.0
    assert stroke_factor(720, 1280, "auto") == 1.0 and stroke_factor(512, 700, "auto") == 1.0
    assert stroke_factor(4320, 7680, "auto") == 6.0 and stroke_factor(100, 100, 2) == 2.0
    assert working_size(4320, 7680, 6.0) == (720, 1280)
    assert split_levels((5, 4, 3, 2, 1)) == ((5, 4, 3, 2, 1), (1,)) and split_levels((3, 2)) == ((3, 2), ())
    for bad in ("0.5", "big", float("nan")):
        with pytest.raises(ValueError):
            parse_stroke_scale(bad)


def test_reduction_across_first_is_the_resize_and_independent_of_strips():
    """Stroke scale's working image is reduced across first (a 1 GP strip would span a GB of
    rows otherwise): the same resize to float rounding, and the same pixels at any strip height."""
    from stylize.engine.resample import reduce_strips, resize

    rng = np.random.default_rng(3)
    image = rng.random((3, 517, 389)).astype(np.float32)
    for kernel, out_hw in (("lanczos3", (41, 30)), ("bicubic", (130, 97)), ("linear", (17, 200))):
        whole = resize(image, out_hw, kernel)
        runs = []
        for strip, chunk in ((64, 16), (5, 3), (1, 100)):
            out = np.empty_like(whole)
            reduce_strips(lambda a, b: image[:, a:b], image.shape[1:], out_hw,
                          lambda y0, block: out.__setitem__((slice(None), slice(y0, y0 + block.shape[1])), block),
                          kernel, strip=strip, chunk=chunk)
            runs.append(out)
        assert np.abs(runs[0] - whole).max() < 1e-5, kernel
        assert all(np.array_equal(runs[0], r) for r in runs[1:]), kernel
