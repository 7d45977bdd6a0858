"""Data-free: the maths behind the controls, resampling and the disk store."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from stylize.engine.color import keep_luminance, recolour, rgb_moments, to_rgb, to_ycbcr
from stylize.engine.resample import resize, resize_strips
from stylize.engine.store import DiskStore, RamStore
from stylize.engine.tiles import Box
from stylize.engine.wct import mix_affine, tile_moments
from stylize.image_guard import ImageError
from stylize.masks import mask_weights

RNG = np.random.default_rng(7)


def test_mix_of_affine_maps_is_their_weighted_sum():
    maps = [(torch.randn(4, 4, dtype=torch.float64), torch.randn(4, dtype=torch.float64)) for _ in range(2)]
    a, b = mix_affine(maps, [3, 1])
    assert torch.allclose(a, 0.75 * maps[0][0] + 0.25 * maps[1][0]) and torch.allclose(b, 0.75 * maps[0][1] + 0.25 * maps[1][1])
    one, _ = mix_affine(maps, [1, 0])
    assert torch.equal(one, maps[0][0])
    with pytest.raises(ValueError):
        mix_affine(maps, [0, 0])


def test_ycbcr_round_trip_and_luminance_keeps_the_photo_chroma():
    photo = RNG.random((3, 20, 30), dtype=np.float32) * 0.2 + 0.4  # chroma small enough that nothing clips
    styled = RNG.random((3, 20, 30), dtype=np.float32) * 0.2 + 0.4
    assert np.allclose(to_rgb(to_ycbcr(photo)), photo, atol=1e-5)
    out = keep_luminance(styled, photo)
    assert np.allclose(to_ycbcr(out)[1:], to_ycbcr(photo)[1:], atol=1e-5)
    assert np.allclose(to_ycbcr(out)[0], to_ycbcr(styled)[0], atol=1e-5)


def test_recoloured_style_has_the_photo_colour_statistics():
    style = RNG.random((3, 40, 40), dtype=np.float32) * 0.3 + 0.1
    photo = np.stack([RNG.random((40, 40)) * 0.2 + 0.5, RNG.random((40, 40)) * 0.1 + 0.3,
                      RNG.random((40, 40)) * 0.2 + 0.2]).astype(np.float32)
    got, want = rgb_moments(recolour(style, rgb_moments(photo))), rgb_moments(photo)
    assert torch.allclose(got.mean, want.mean, atol=1e-4) and torch.allclose(got.covariance(), want.covariance(), atol=1e-4)


def test_weighted_moments_with_unit_weights_are_the_moments():
    f = torch.rand(1, 5, 9, 11) * 100
    w = tile_moments(f, torch.ones(9, 11))
    m = tile_moments(f)
    assert w.n == m.n and torch.allclose(w.mean, m.mean) and torch.allclose(w.m2, m.m2, rtol=1e-12)
    assert tile_moments(f, torch.zeros(9, 11)) is None
    part = torch.zeros(9, 11)
    part[2:4, 3:6] = 0.25
    assert tile_moments(f, part).support == 6 and tile_moments(f, part).rank_bound == 5
    picked = f[..., 2:4, 3:6].reshape(5, -1).double()
    assert torch.allclose(tile_moments(f, part).m2, 0.25 * torch.cov(picked) * 5, rtol=1e-12)


def test_label_masks_order_by_brightness_and_darkest_keeps_the_photo():
    mask = np.zeros((3, 4, 6), np.float32)
    mask[:, :, 2:4], mask[:, :, 4:] = 1.0, 0.5  # black | white | gray
    weights, styles = mask_weights(mask, 2)
    assert styles == [None, 0, 1]
    assert weights[0, 0, 0] == 1 and weights[1, 0, 5] == 1 and weights[2, 0, 2] == 1  # gray before white
    assert mask_weights(mask, 3)[1] == [0, 1, 2]
    soft = np.broadcast_to(np.linspace(0, 1, 50, dtype=np.float32), (3, 4, 50))
    w, s = mask_weights(np.ascontiguousarray(soft), 1)
    assert s == [None, 0] and np.allclose(w.sum(0), 1) and w[1, 0, -1] == 1


def test_a_label_mask_with_fewer_colours_than_styles_is_refused_not_a_style_dropped():
    mask = np.zeros((3, 4, 6), np.float32)
    mask[0, :, 3:] = 1.0  # black | red: two colours
    with pytest.raises(ImageError, match="mask has 2 colours for 3 style"):
        mask_weights(mask, 3)
    with pytest.raises(ImageError, match="mask has 1 colours for 2 style"):
        mask_weights(np.ascontiguousarray(mask[:, :, 3:]), 2)
    assert mask_weights(np.ascontiguousarray(mask[:, :, 3:]), 1)[1] == [0]  # one style: everywhere
    grey = np.full((3, 4, 6), 0.25, np.float32)  # one grey: a soft mask, a quarter of the last style
    w, s = mask_weights(grey, 2)
    assert s == [0, 1] and np.allclose(w[1], 0.25) and np.allclose(w[0], 0.75)


@pytest.mark.parametrize("out_hw", [(97, 133), (301, 400), (950, 1237)])
def test_resize_by_strips_is_the_whole_resize(out_hw):
    image = RNG.random((3, 300, 400), dtype=np.float32)
    whole = resize(image, out_hw)
    out = np.empty((3, *out_hw), np.float32)
    resize_strips(lambda a, b: image[:, a:b], (300, 400), out_hw, lambda y, b: out.__setitem__(np.s_[:, y:y + b.shape[1]], b),
                  strip=7)
    assert np.array_equal(out, whole)


def test_disk_store_reads_what_ram_store_reads(tmp_path):
    image = RNG.random((3, 37, 53), dtype=np.float32)
    disk = DiskStore(tmp_path, 3, 37, 53, np.float32)
    assert list(tmp_path.iterdir()) == []  # nameless from the start: nothing a killed run could leave
    disk.write(0, 0, image[:, :20])
    disk.write(20, 0, image[:, 20:])
    for box in (Box(0, 37, 0, 53), Box(-9, 12, -4, 60), Box(30, 45, 40, 53)):
        assert np.array_equal(disk.read(box), RamStore(image).read(box))
    disk.close()
    assert list(tmp_path.iterdir()) == []


def test_a_disk_store_dropped_unclosed_gives_its_space_back(tmp_path):
    import os

    fd = DiskStore(tmp_path, 3, 64, 64).fd  # never closed, dropped at once
    with pytest.raises(OSError):
        os.fstat(fd)
