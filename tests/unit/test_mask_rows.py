"""A mask is read by rows, twice (its colours, then its weights as the resize asks for them),
and gives the regions of the whole mask read at once: a mask painted at 16K is never whole in RAM."""
import numpy as np
import pytest
from PIL import Image

import stylize.imageio as imageio
from stylize.engine.resample import resize_strips
from stylize.engine.store import StoreFactory, read_rows
from stylize.imageio import ImageError, read_image
from stylize.masks import load_regions, mask_weights

pytest.importorskip("pyvips", reason="libvips decodes PNG by rows (pyvips, pyvips-binary: dependencies)")

H, W = 301, 457  # the mask's own size; the content is about twice as large, same aspect
SIZE = (913, 601)


def _label_mask() -> np.ndarray:
    y, x = np.mgrid[0:H, 0:W]
    mask = np.zeros((H, W, 3), np.uint8)
    mask[x > W // 3] = (200, 30, 30)
    mask[(x > 2 * W // 3) | (y > 250)] = (255, 255, 255)
    return mask


def _soft_mask() -> np.ndarray:
    ramp = np.broadcast_to(np.linspace(0, 255, W).round().astype(np.uint8), (H, W))
    return np.repeat(ramp[..., None], 3, -1)


def _expected(path, n_styles: int) -> tuple[np.ndarray, list]:
    """The regions as a whole read makes them: weights of the whole mask, resized, normalised."""
    weights, styles = mask_weights(read_image(path).rgb, n_styles)
    out = np.empty((len(styles), SIZE[1], SIZE[0]), np.float32)

    def write(y0: int, block: np.ndarray) -> None:
        np.clip(block, 0.0, 1.0, out=block)
        block /= np.maximum(block.sum(axis=0, keepdims=True), 1e-12)
        out[:, y0:y0 + block.shape[1]] = block

    resize_strips(lambda a, b: weights[:, a:b], weights.shape[1:], SIZE[::-1], write, kernel="linear")
    return out, styles


@pytest.mark.parametrize("kind,n_styles,styles", [("label", 2, [None, 0, 1]), ("label", 3, [0, 1, 2]),
                                                  ("soft", 1, [None, 0]), ("soft", 2, [0, 1])])
@pytest.mark.parametrize("on_disk", [False, True])
def test_a_mask_by_rows_gives_the_regions_of_the_whole_mask(kind, n_styles, styles, on_disk, tmp_path, monkeypatch):
    path = tmp_path / "mask.png"
    Image.fromarray(_label_mask() if kind == "label" else _soft_mask()).save(path)
    want, want_styles = _expected(path, n_styles)

    def whole(*a, **k):
        raise AssertionError("the mask was decoded whole")

    monkeypatch.setattr(imageio, "read_image", whole)
    regions = load_regions(path, SIZE, n_styles, 10**9, StoreFactory(tmp_path if on_disk else None, ram_pixels=0))
    assert regions.styles == want_styles == styles
    assert np.array_equal(read_rows(regions.weights, 0, SIZE[1]), want)


def test_a_mask_libvips_cannot_stream_is_read_whole_with_the_same_regions(tmp_path):
    """GIF, and a PNG stored turned (EXIF 3: its rows come bottom up), are read whole and
    served as rows: the same regions as the upright PNG."""
    Image.fromarray(_label_mask()).save(tmp_path / "mask.png")
    Image.fromarray(_label_mask()).save(tmp_path / "mask.gif")
    exif = Image.Exif()
    exif[0x0112] = 3
    Image.fromarray(np.ascontiguousarray(_label_mask()[::-1, ::-1])).save(tmp_path / "turned.png", exif=exif)
    want, _ = _expected(tmp_path / "mask.png", 2)
    for name in ("mask.gif", "turned.png"):
        got = load_regions(tmp_path / name, SIZE, 2, 10**9)
        assert np.array_equal(read_rows(got.weights, 0, SIZE[1]), want), name


def test_colours_anywhere_in_the_mask_count(tmp_path):
    """The colours are gathered over every block of rows: a fourth colour in the last rows
    (past the first 256) makes a 2-style label mask an error, as a whole read would."""
    mask = _label_mask()
    mask[-3:, :5] = (0, 0, 255)
    Image.fromarray(mask).save(tmp_path / "mask.png")
    with pytest.raises(ImageError, match="mask has 4 colours for 2 style"):
        load_regions(tmp_path / "mask.png", SIZE, 2, 10**9)
    grey = _soft_mask()
    grey[-1, -1] = (10, 20, 30)  # one pixel not grey: not a soft mask
    Image.fromarray(grey).save(tmp_path / "grey.png")
    with pytest.raises(ImageError, match="colours for 2 style"):
        load_regions(tmp_path / "grey.png", SIZE, 2, 10**9)


def test_the_aspect_check_allows_rounding_to_whole_pixels_and_no_more(tmp_path):
    """A 4:3 mask fits its 4:3 photo stylized down to 15x11 px (rounded from 14.67); a 4:3.3 mask does not."""
    path = tmp_path / "mask.png"
    Image.fromarray(_label_mask()[:, :400]).resize((160, 120), Image.NEAREST).save(path)
    assert load_regions(path, (15, 11), 2, 10**9).weights.shape[1:] == (11, 15)
    assert load_regions(path, (1600, 1200), 2, 10**9).weights.shape[1:] == (1200, 1600)
    with pytest.raises(ImageError, match="aspect ratio"):
        load_regions(path, (1600, 1320), 2, 10**9)


@pytest.mark.parametrize("name", ["mask.png", "turned.png"])
def test_fully_transparent_pixels_count_as_black_whatever_colour_lies_under_them(name, tmp_path):
    """A mask painted over a transparent layer: the editor leaves any colours under alpha 0 (here
    noise), and its antialiased edges are partly transparent in a flat colour. It gives the
    regions of the opaque mask with black where it is transparent, by rows and read whole
    (a PNG stored turned is read whole)."""
    opaque = _label_mask()
    Image.fromarray(opaque).save(tmp_path / "opaque.png")
    rgba = np.concatenate([opaque, np.full((H, W, 1), 255, np.uint8)], -1)
    black = (opaque == 0).all(-1)
    rgba[black] = np.random.default_rng(0).integers(0, 256, (black.sum(), 4), dtype=np.uint8)
    rgba[black, 3] = 0
    rgba[:, W // 3 + 1:W // 3 + 4, 3] = 128  # a soft edge of the red region
    if name == "turned.png":
        exif = Image.Exif()
        exif[0x0112] = 3
        Image.fromarray(np.ascontiguousarray(rgba[::-1, ::-1])).save(tmp_path / name, exif=exif)
    else:
        Image.fromarray(rgba).save(tmp_path / name)
    want, _ = _expected(tmp_path / "opaque.png", 2)
    got = load_regions(tmp_path / name, SIZE, 2, 10**9)
    assert got.styles == [None, 0, 1]
    assert np.array_equal(read_rows(got.weights, 0, SIZE[1]), want)


def test_a_mask_resize_spans_a_band_sized_to_the_budget_left_as_an_image_read_does(tmp_path, monkeypatch):
    """Under a small --max-memory the rows a mask's resize spans are a quarter of what is left
    (MIN_BAND at the least), not the 128 MiB a read with no budget takes; the regions are the same."""
    import stylize.masks as masks
    from stylize.engine.resample import BAND_BYTES
    from stylize.image_rows import MIN_BAND

    Image.fromarray(_label_mask()).save(tmp_path / "m.png")
    bands = []
    monkeypatch.setattr(masks, "resize_strips", lambda *a, **k: bands.append(k["band_bytes"]) or resize_strips(*a, **k))
    free = read_rows(load_regions(tmp_path / "m.png", SIZE, 2, 10**9).weights, 0, SIZE[1])
    tight = read_rows(load_regions(tmp_path / "m.png", SIZE, 2, 10**9, max_bytes=100 << 20).weights, 0, SIZE[1])
    load_regions(tmp_path / "m.png", SIZE, 2, 10**9, max_bytes=1 << 20)
    assert bands == [BAND_BYTES, 25 << 20, MIN_BAND] and np.array_equal(free, tight)
