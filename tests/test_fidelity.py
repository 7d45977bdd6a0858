"""Fidelity to the paper's own pipeline on every reference pair, whole-image and tiled."""
import numpy as np
import pytest
from PIL import Image

from conftest import REFERENCE, REFERENCE_CASES, SHARED, load_rgb, psnr, to_uint8


@pytest.mark.parametrize("tile", [None, 256], ids=["whole", "tile256"])
@pytest.mark.parametrize("name,alpha,expected", REFERENCE_CASES, ids=[c[2].name for c in REFERENCE_CASES])
def test_matches_reference(cd16x, name, alpha, expected, tile, measured):
    content, style = load_rgb(REFERENCE / f"{name}.content.png"), load_rgb(REFERENCE / f"{name}.style.png")
    cd16x.tile = tile
    try:
        result = cd16x.stylize(content, style, alpha=alpha)
    finally:
        cd16x.tile = None
    out = result.image
    if tile is not None:
        assert any(p.tile == tile for p in result.report.plans), "tiled mode did not tile"
    got = psnr(to_uint8(out), np.asarray(Image.open(expected).convert("RGB")))
    measured(f"{got:.2f} dB vs the paper's output")
    assert got >= 45.0, f"{expected.name}: {got:.2f} dB"


def test_paper_baseline_reproduces_reference(measured):
    """The benchmark yardstick is the published pipeline: it must match the reference too."""
    from stylize.bench.paper_baseline import paper_stylize

    name = "face_x_matisse"
    out = paper_stylize(load_rgb(REFERENCE / f"{name}.content.png"), load_rgb(REFERENCE / f"{name}.style.png"))
    expected = np.asarray(Image.open(REFERENCE / f"{name}.expected.png").convert("RGB"))
    got = psnr(to_uint8(out), expected)
    measured(f"{got:.2f} dB")
    assert got >= 45.0


@pytest.mark.parametrize("tile", [None, 256], ids=["whole", "tile256"])
def test_style_of_any_size_matches_the_paper(cd16x, tile, measured):
    """A style whose sides are not multiples of 16 (933x700): its statistics must come from
    exactly the features the paper's whole-image pass has (floor pooling drops trailing rows),
    not from a reflect-padded copy. Expected output: the paper-pipeline baseline on the same pair."""
    from stylize.bench.paper_baseline import paper_stylize
    from stylize.imageio import read_image

    content = load_rgb(REFERENCE / "face_x_matisse.content.png")
    style = read_image(SHARED / "images/style/brushstrokes.jpg").rgb
    assert style.shape[1] % 16 and style.shape[2] % 16
    expected = to_uint8(paper_stylize(content, style))
    cd16x.tile = tile
    try:
        got = to_uint8(cd16x.stylize(content, style).image)
    finally:
        cd16x.tile = None
    db = psnr(got, expected)
    measured(f"{db:.2f} dB vs the paper pipeline, style 933x700")
    assert db >= 45.0
