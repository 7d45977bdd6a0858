"""Stroke scale on the real weights: auto is the paper's pipeline up to the working size,
and tiled equals whole image when it is not (a small size with a large factor)."""
from __future__ import annotations

import numpy as np

from conftest import SHARED, psnr, to_uint8
from stylize.imageio import read_image

PHOTO = SHARED / "images/content/cornell.jpg"
STYLE = SHARED / "images/style/brushstrokes.jpg"


def test_auto_is_native_at_or_below_the_working_size(cd16x):
    content, style = read_image(PHOTO).rgb, read_image(STYLE, 400).rgb  # 729x512: below 1280
    native = cd16x.stylize(content.copy(), style, stroke_scale="native")
    auto = cd16x.stylize(content.copy(), style, stroke_scale="auto")
    assert auto.report.stroke_factor == 1.0 and auto.report.working_size is None
    assert np.array_equal(auto.image, native.image)


def test_stroke_scale_tiled_equals_whole(cd16x, measured):
    """Factor 3 on a 729x512 photo: coarse levels at 243x171, fine levels at full size."""
    content, style = read_image(PHOTO).rgb, read_image(STYLE, 400).rgb
    whole = cd16x.stylize(content.copy(), style, stroke_scale=3)
    cd16x.tile = 64
    try:
        tiled = cd16x.stylize(content.copy(), style, stroke_scale=3)
    finally:
        cd16x.tile = None
    assert whole.report.working_size == (171, 243) and all(p.tile is None for p in whole.report.plans)
    assert any(p.tile for p in tiled.report.plans)
    db = psnr(to_uint8(tiled.image), to_uint8(whole.image))
    measured(f"factor 3, tiles of 64 px vs whole image: {db:.2f} dB")
    assert db >= 45.0
    native = cd16x.stylize(content.copy(), style, stroke_scale="native").image
    assert psnr(to_uint8(whole.image), to_uint8(native)) < 30, "a factor of 3 must change the picture"


def test_a_stroke_scale_leaves_the_callers_photo_as_it_was(cd16x):
    """A photo of one strip (48 rows) is read back as the caller's own array: the stroke-scale
    composition wrote into it (changing it by up to 0.84), and ``preserve_color='luminance'``
    then took its chroma from the damaged copy."""
    from stylize.engine.color import to_ycbcr

    content = np.ascontiguousarray(read_image(PHOTO).rgb[:, 200:248, :])
    style = read_image(STYLE, 96).rgb
    before = content.copy()
    kept = cd16x.stylize(content, style, stroke_scale=2, preserve_color="luminance")
    assert np.array_equal(content, before)
    assert kept.report.working_size is not None
    chroma_error = np.abs(to_ycbcr(kept.image)[1:] - to_ycbcr(before)[1:]).mean()
    assert chroma_error < 0.02, chroma_error  # clipping only (0.34 when the photo was overwritten)
