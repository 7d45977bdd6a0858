"""Training crops from any folder of images, reproducible from (seed, step) alone.

Every batch is a pure function of the seed and the step number, so a resumed run sees
exactly the batches an uninterrupted run would have seen, with no sampler state to save.
Images are resized once (shorter side to ``resize``) and kept in a small cache, which makes
a folder of a few hundred photos cheap on a CPU and a large one merely disk-bound.
"""
from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from ...pil_decode import full_scale

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
READ_ERRORS = (OSError, UnidentifiedImageError, Image.DecompressionBombError)  # what Pillow raises on a bad file


def _eight_bit(im: Image.Image) -> Image.Image:
    """16- and 32-bit grey images scaled to 8 bits by their full scale, as the stylizer reads
    them: ``convert("RGB")`` clips their values at 255, and a 16-bit ramp came out white."""
    if not (im.mode.startswith("I") or im.mode == "F"):
        return im
    peak = full_scale(im)
    grey = np.nan_to_num(np.asarray(im, dtype=np.float32)) * np.float32(255.0 / peak)
    return Image.fromarray((np.clip(grey, 0, 255) + 0.5).astype(np.uint8), "L")


class DataError(ValueError):
    """The training data cannot be used; the message says why in one line."""


def list_images(root: str | Path) -> list[Path]:
    """Image files under ``root`` (recursively), sorted so that runs are reproducible."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"data folder not found: {root}")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    if not files:
        raise DataError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) found in {root}")
    for path in files:  # every header now: a bad file found when first sampled failed hours into a run
        try:
            with Image.open(path):
                pass
        except READ_ERRORS as e:
            raise DataError(f"cannot read training image {path}: {e}; remove it from {root}") from None
    return files


class RandomCrops:
    """Random square crops with random horizontal flips, as (B, 3, crop, crop) float32 in [0, 1].

    ``resize`` (default twice the crop) is the shorter side every image is scaled to first,
    so that a crop covers a similar share of the scene whatever the photo's resolution.
    """

    def __init__(self, files: list[Path], crop: int = 128, *, seed: int = 0, resize: int | None = None,
                 cache_size: int = 256):
        if not files:
            raise DataError("no training images given")
        if crop < 8:
            raise DataError(f"crop must be at least 8 px, got {crop}")
        self.files = list(files)
        self.crop = crop
        self.seed = seed
        self.resize = max(resize or 2 * crop, crop)
        self.cache_size = cache_size
        self._cache: OrderedDict[int, np.ndarray] = OrderedDict()

    @classmethod
    def from_folder(cls, root: str | Path, crop: int = 128, **kwargs) -> RandomCrops:
        return cls(list_images(root), crop, **kwargs)

    def image(self, index: int) -> np.ndarray:
        """(H, W, 3) uint8 of file ``index``, shorter side scaled to ``resize``."""
        if index in self._cache:
            self._cache.move_to_end(index)
            return self._cache[index]
        path = self.files[index]
        try:
            with Image.open(path) as im:
                im = _eight_bit(im).convert("RGB")
                w, h = im.size
                s = self.resize / min(w, h)
                im = im.resize((max(self.crop, round(w * s)), max(self.crop, round(h * s))), Image.BICUBIC)
                array = np.asarray(im, dtype=np.uint8)
        except READ_ERRORS as e:
            raise DataError(f"cannot read training image {path}: {e}") from None
        self._cache[index] = array
        if len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return array

    def sample(self, step: int, i: int, stream: int = 0) -> np.ndarray:
        """(3, crop, crop) float32: sample ``i`` of the batch at ``step`` of ``stream``.

        Streams are independent sequences (0: training, 1: initialisation/calibration).
        """
        rng = np.random.default_rng([self.seed, stream, step, i])
        array = self.image(int(rng.integers(len(self.files))))
        h, w, _ = array.shape
        y, x = int(rng.integers(h - self.crop + 1)), int(rng.integers(w - self.crop + 1))
        patch = array[y:y + self.crop, x:x + self.crop]
        if rng.random() < 0.5:
            patch = patch[:, ::-1]
        return np.ascontiguousarray(patch.transpose(2, 0, 1), dtype=np.float32) / 255.0

    def batch(self, step: int, batch_size: int, stream: int = 0) -> torch.Tensor:
        return torch.from_numpy(np.stack([self.sample(step, i, stream) for i in range(batch_size)]))
