"""Images given to the Python API as objects: each layout a caller holds reads as the engine's
(3, H, W) float32 in [0, 1], and what cannot be read without guessing is one clear error."""
import numpy as np
import pytest
import torch
from PIL import Image, ImageOps

from stylize.array_input import as_rgb
from stylize.imageio import ImageError, read_image

RNG = np.random.default_rng(3)
HWC = RNG.integers(0, 256, (45, 60, 3), dtype=np.uint8)  # as Pillow, imageio or OpenCV (in RGB) give it
CHW = np.ascontiguousarray(HWC.transpose(2, 0, 1) * np.float32(1 / 255))


@pytest.mark.parametrize("image", [
    HWC, HWC.transpose(2, 0, 1), HWC.astype(np.float64) / 255, CHW.transpose(1, 2, 0),
    (HWC.astype(np.uint16) * 257), Image.fromarray(HWC), Image.fromarray(HWC).convert("RGBA"),
    np.dstack([HWC, np.full(HWC.shape[:2], 255, np.uint8)]),
    torch.from_numpy(CHW), torch.from_numpy(CHW).requires_grad_(),
], ids=["hwc-uint8", "chw-uint8", "hwc-float64", "hwc-float32", "hwc-uint16", "pil", "pil-rgba-opaque",
        "hwc-rgba-opaque", "tensor", "tensor-grad"])
def test_every_layout_reads_as_the_same_image(image):
    assert np.allclose(as_rgb(image, "content"), CHW, atol=1e-6)


def test_pil_images_keep_their_scale_16_bit_float_and_bfloat16_included():
    """``convert("RGB")`` would clip a 16-bit image to white and an ``F`` image in [0, 1] to black."""
    grey16 = (HWC[..., 0].astype(np.uint16) * 257)
    expected = np.repeat(CHW[:1], 3, axis=0)
    assert Image.fromarray(grey16).mode == "I;16"
    assert np.allclose(as_rgb(Image.fromarray(grey16), "content"), expected, atol=1e-6)
    assert np.allclose(as_rgb(Image.fromarray(CHW[0]), "content"), expected, atol=1e-6)  # mode F
    assert np.allclose(as_rgb(torch.from_numpy(CHW).bfloat16(), "content"), CHW, atol=1 / 128)


@pytest.mark.parametrize("orientation", [1, 3, 6, 8])
def test_an_opened_phone_photo_turns_as_its_path_does(tmp_path, orientation):
    """``Image.open(path)`` keeps the EXIF orientation as a tag; reading the pixels as stored
    painted a portrait photo on its side where the path painted it upright."""
    path = tmp_path / f"o{orientation}.png"
    exif = Image.Exif()
    exif[0x0112] = orientation
    Image.fromarray(HWC).save(path, exif=exif)
    with Image.open(path) as im:
        got = as_rgb(im, "content")
        upright = as_rgb(np.asarray(ImageOps.exif_transpose(im)), "content")
    assert np.array_equal(got, upright) and np.array_equal(got, read_image(path).rgb)
    assert got.shape[1:] == ((60, 45) if orientation in (6, 8) else (45, 60))


def test_a_ready_array_is_used_as_is_and_grey_becomes_rgb():
    assert as_rgb(CHW, "content") is CHW
    grey = as_rgb(HWC[..., 0], "content")
    assert grey.shape == (3, 45, 60) and np.array_equal(grey[0], grey[2]) and np.allclose(grey[1], CHW[0])


def test_a_path_and_an_array_resize_alike(tmp_path):
    """resolution applies to arrays as to files: the same resampler, so the same pixels."""
    Image.fromarray(HWC).save(tmp_path / "c.png")
    from_file = read_image(tmp_path / "c.png", 100).rgb
    assert from_file.shape == (3, 75, 100)
    assert np.array_equal(as_rgb(HWC, "content", 100), from_file)
    assert np.array_equal(as_rgb(tmp_path / "c.png", "content", 100), from_file)


@pytest.mark.parametrize("image,message", [
    (CHW * 255, r"content: float pixels must be in \[0, 1\], got \[0, 255\]: divide by 255"),
    (np.where(CHW > 0.5, np.nan, CHW), "NaN or infinite"),
    (CHW - 0.5, r"float pixels must be in \[0, 1\], got \[-0.5, 0.5\]$"),
    (np.concatenate([CHW, CHW[:1]]), "alpha channel with transparent pixels"),
    (Image.fromarray(np.dstack([HWC, HWC[..., :1]])), "alpha channel with transparent pixels"),
    (Image.fromarray(HWC[..., 0]).convert("I"), "int32 pixels have no known full scale"),
    (HWC.astype(np.int64), "int64 pixels have no known full scale"),
    (HWC > 9, "not an image"),
    (None, "not an image"),
    (CHW[None], "is not an image: use"),
    (CHW[:, :0], "zero size"),
])
def test_what_would_need_a_guess_is_refused(image, message):
    with pytest.raises(ImageError, match=message):
        as_rgb(image, "content")


def test_the_pixel_limit_holds_for_arrays():
    with pytest.raises(ImageError, match="requested output is 2000x1500 .* over the limit"):
        as_rgb(HWC, "content", 2000, max_pixels=1_000_000)


def test_a_corrupt_exif_block_on_a_pil_image_reads_upright_and_silently(recwarn):
    """Pillow warns (a UserWarning on stderr) on a corrupt EXIF block and reads no orientation."""
    im = Image.fromarray(HWC)
    im.info["exif"] = b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\xff\xff"  # an IFD that runs past its end
    assert np.array_equal(as_rgb(im, "content"), as_rgb(HWC, "content"))
    assert not [w for w in recwarn if "EXIF" in str(w.message)]
