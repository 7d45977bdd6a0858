"""Whitening-colouring and AdaIN as pure tensor functions over streamed feature moments.

Why moments and not feature maps: at 8K the relu1_1 features alone are 3 GB, and WCT only
ever needs each image's mean and covariance. Every tile contributes ``(n, mean, M2)``
summed in fp64 *around its own mean* (so Σx² ≈ 1e10 never meets cancellation, and
eigenvalues far below fp32's 1e-7 of the largest stay resolved), and tiles merge in fp64
with Chan's parallel update. The transform that results is one affine map per level,
``f ↦ A f + b``, applied tile by tile (or folded into a decoder).

Shapes: C channels, N pixels. All matrices returned are fp64 on the input's device, so the
eigendecomposition runs wherever the features live (the GPU when the engine runs there).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

# Eigenvalues below this fraction of the largest are dropped, never inverted. Dead channels
# give exact zeros (fp64 sums resolve the rest far below this cut). Beyond that, the scatter
# of N samples has rank at most N - 1: a small region (or a small style) at a deep level has
# fewer features than channels, and its eigenvalues past that rank are rounding, not
# variance, which whitening would amplify into noise. They are dropped too.
DEFAULT_REL_EPS = 1e-10
# A variance is resolved only above the rounding of the features themselves: fp32 values of
# magnitude |f| carry errors of about eps32·|f|, so eigenvalues under (ROUNDING · eps32)² of
# the features' largest second moment E[f²] are noise whatever the largest eigenvalue is. The
# relative cut cannot see that when everything is noise: a flat image's covariance is fp32
# rounding (λ_max ~1e-12), and whitening it painted a grey wall with the style's texture (and
# differently per tile). With the floor, its features map to the style's mean, as in the
# paper's code (an absolute cut of 1e-5).
ROUNDING = 64
# An image whose every channel spans less than this many ulps of its largest value (1.2e-4 of
# white: a 30th of one 8-bit step) is flat: the rest is the last decoder's rounding.
FLAT_ULPS = 1024
# Features converted to fp64 at a time by :func:`tile_moments` (2 MiB of them): a few blocks,
# never a copy of the tile, are what its sums add to a tile's working set. Under the command
# line's mmap threshold (4 MiB, :mod:`stylize.allocator`), so the heap serves them again and
# again: blocks of 8 MiB were each a fresh mapping, page-faulted in (a 4K run took 13 % longer).
BLOCK = 2**18


@dataclass
class Moments:
    """Running count (or total weight), mean (C,) and centred scatter matrix
    M2 = Σ(x-μ)(x-μ)ᵀ (C, C), fp64; ``support``: how many samples had a non-zero weight
    (None: all of them had weight 1, so it is ``n``), which bounds the rank of M2."""

    n: float
    mean: torch.Tensor
    m2: torch.Tensor
    support: int | None = None

    @property
    def samples(self) -> int:
        """How many samples had a non-zero weight."""
        return int(self.n) if self.support is None else self.support

    @property
    def rank_bound(self) -> int:
        """At most this many eigenvalues of M2 are variance; the rest are rounding."""
        return max(self.samples - 1, 0)

    @property
    def channels(self) -> int:
        return self.mean.shape[0]

    def covariance(self) -> torch.Tensor:
        """(C, C) unbiased covariance, the paper's normalisation (N - 1)."""
        return self.m2 / max(self.n - 1, 1)

    def variance(self) -> torch.Tensor:
        return torch.diagonal(self.covariance())

    def noise_floor(self) -> float:
        """The variance fp32 rounding of features of this size makes, (ROUNDING · eps32)² ·
        max E[f²]: below it a variance is not resolved. One figure for all channels: a
        channel near zero carries the rounding of the layer's larger sums that cancelled to
        it (a flat image's tiled level 3 had one at 2000 eps32² of its own E[f²], while λ_max
        stayed under 32 eps32² of the largest)."""
        second = self.mean.square() + self.variance().clamp_min(0)
        return float((ROUNDING * torch.finfo(torch.float32).eps) ** 2 * second.max()) if second.numel() else 0.0

    def flattened(self) -> "Moments":
        """The same count and mean without variance: what a flat image's features have, and
        whiten to nothing (see :func:`flat_to_rounding`)."""
        return Moments(self.n, self.mean, torch.zeros_like(self.m2), self.support)

    def to(self, device) -> "Moments":
        return Moments(self.n, self.mean.to(device), self.m2.to(device), self.support)


def flat_to_rounding(lo: torch.Tensor, hi: torch.Tensor) -> bool:
    """Whether an image whose channels span [lo, hi] (C,) is flat but for fp32 rounding: each
    channel's range within FLAT_ULPS eps32 of its largest magnitude.

    The features' floor (:meth:`Moments.noise_floor`) cannot see this when the rounding is in
    the pixels: a grey wall comes out of a level's decoder flat to some tens of ulps (75 seen),
    and the next encoder amplifies them far more than the wall's flat response (a 40x40 wall's
    level 4 had them at 260 eps32 of its features' size, a 16x36 one's level 3 at 1400), so
    the next level whitened them into the style's texture."""
    scale = torch.maximum(lo.abs(), hi.abs()).max()
    return bool(((hi - lo) <= FLAT_ULPS * torch.finfo(torch.float32).eps * scale).all())


def tile_moments(features: torch.Tensor, weight: torch.Tensor | None = None) -> Moments | None:
    """Moments of one tile. features: (1, C, h, w) or (C, N), any float dtype; ``weight``:
    optional per-pixel weights (h, w) or (N,) ≥ 0, whose total is then the count (Chan's
    merge works unchanged); None for no samples, or weights that sum to 0.

    Sums run in fp64 around the tile's own mean, a block of rows at a time, so no full copy
    of the tile is made. fp32 sums resolved eigenvalues only to ~1e-7 of the largest, and a
    thin image's genuine ones lie below that: a 5x300 photo's level-5 covariance keeps
    eigenvalues at 5e-10 λ_max, which the fp32 sums of its whole pass put at 8e-9 and its
    tiles elsewhere again (tiled vs whole: 15 dB; in fp64, 50 dB). Pixels are taken as rows
    (N, C): for channels-last features, what the torch backend returns, that is a view.
    """
    if features.dim() == 4:
        f = features.movedim(1, -1).reshape(-1, features.shape[1])
    else:
        f = features.T
    w = None if weight is None else weight.reshape(-1, 1)
    rows = max(1, BLOCK // max(f.shape[1], 1))

    def blocks():
        for i in range(0, f.shape[0], rows):
            yield f[i:i + rows].double(), None if w is None else w[i:i + rows].double()

    if f.shape[0] == 0:
        return None
    if w is None:
        total, support = float(f.shape[0]), None
        mean = sum(x.sum(dim=0) for x, _ in blocks()) / total
    else:
        total, support = float(w.sum(dtype=torch.float64)), int((w > 0).sum())
        if not total > 0:
            return None
        mean = sum((x * v).sum(dim=0) for x, v in blocks()) / total
    m2 = torch.zeros(f.shape[1], f.shape[1], dtype=torch.float64, device=f.device)
    for x, v in blocks():
        centred = x - mean
        m2 += (centred if v is None else centred * v).T @ centred
    return Moments(f.shape[0] if w is None else total, mean, m2, support)


def moments_bytes(features: torch.Tensor) -> int:
    """Bytes :func:`tile_moments` allocates at once for these features: three fp64 blocks."""
    return 3 * 8 * min(features.numel(), BLOCK)


def merge_moments(a: Moments | None, b: Moments) -> Moments:
    """Chan et al.'s pairwise combination: exact, order-independent up to rounding, fp64."""
    if a is None or a.n == 0:
        return b
    n = a.n + b.n
    delta = b.mean - a.mean
    mean = a.mean + delta * (b.n / n)
    m2 = a.m2 + b.m2 + torch.outer(delta, delta) * (a.n * b.n / n)
    support = None if a.support is None and b.support is None else a.samples + b.samples
    return Moments(n, mean, m2, support)


def symmetric_power(cov: torch.Tensor, power: float, rel_eps: float = DEFAULT_REL_EPS,
                    rank: int | None = None, floor: float = 0.0) -> torch.Tensor:
    """cov^power on the eigenvalues above ``rel_eps · λ_max`` and ``floor`` and, given
    ``rank``, among the ``rank`` largest; the rest map to zero.

    cov: (C, C) symmetric PSD, fp64. Returns (C, C) fp64. A zero matrix (flat image) gives
    a zero matrix, never NaN: with λ_max = 0 no eigenvalue is kept; nor with λ_max under
    ``floor`` (a flat image's rounding, :meth:`Moments.noise_floor`).
    """
    evals, evecs = torch.linalg.eigh(cov)  # ascending
    lmax = evals.max()
    keep = evals > max(rel_eps * lmax, floor) if lmax > 0 else torch.zeros_like(evals, dtype=torch.bool)
    if rank is not None and rank < evals.shape[0]:
        keep[:evals.shape[0] - max(rank, 0)] = False
    scaled = torch.where(keep, evals.clamp_min(torch.finfo(evals.dtype).tiny).pow(power), torch.zeros_like(evals))
    return (evecs * scaled) @ evecs.T


def wct_affine(content: Moments, style: Moments, alpha: float = 1.0,
               rel_eps: float = DEFAULT_REL_EPS) -> tuple[torch.Tensor, torch.Tensor]:
    """Whitening-colouring with blending, as one affine map ``f ↦ A f + b``.

    WCT(f) = Cs^½ Cc^-½ (f - μc) + μs, and alpha-blending with f stays affine:
    A = α Cs^½ Cc^-½ + (1 - α) I,  b = α (μs - Cs^½ Cc^-½ μc). Returns A (C, C), b (C,) fp64.
    """
    device = content.mean.device
    style = style.to(device)
    whiten = symmetric_power(content.covariance(), -0.5, rel_eps, content.rank_bound, content.noise_floor())
    colour = symmetric_power(style.covariance(), 0.5, rel_eps, style.rank_bound, style.noise_floor())
    t = colour @ whiten
    return _blend(t, style.mean - t @ content.mean, alpha)


def adain_affine(content: Moments, style: Moments, alpha: float = 1.0,
                 rel_eps: float = DEFAULT_REL_EPS) -> tuple[torch.Tensor, torch.Tensor]:
    """AdaIN (per-channel mean and std matching) as a diagonal affine map.

    Channels whose content variance is (relatively) zero, dead ones included, or under the
    rounding of the features (:meth:`Moments.noise_floor`) are set to the style mean
    instead of being divided by zero or by rounding.
    """
    device = content.mean.device
    style = style.to(device)
    var_c, var_s = content.variance(), style.variance()
    live = (var_c > rel_eps * var_c.max()) & (var_c > content.noise_floor()) if var_c.max() > 0 else \
        torch.zeros_like(var_c, dtype=torch.bool)
    gain = torch.where(live, (var_s.clamp_min(0) / var_c.clamp_min(torch.finfo(var_c.dtype).tiny)).sqrt(),
                       torch.zeros_like(var_c))
    return _blend(torch.diag(gain), style.mean - gain * content.mean, alpha)


def _blend(t: torch.Tensor, b: torch.Tensor, alpha: float) -> tuple[torch.Tensor, torch.Tensor]:
    eye = torch.eye(t.shape[0], dtype=t.dtype, device=t.device)
    a, b = alpha * t + (1.0 - alpha) * eye, alpha * b
    if not (torch.isfinite(a).all() and torch.isfinite(b).all()):
        raise FloatingPointError("transform is not finite; statistics are corrupted")
    return a, b


TRANSFORMS = {"wct": wct_affine, "adain": adain_affine}


def apply_affine(features: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """features (B, C, h, w) ↦ A f + b per pixel, in the features' dtype (a 1x1 conv)."""
    w = a.to(features.dtype)[:, :, None, None]
    return torch.nn.functional.conv2d(features, w, b.to(features.dtype))


def mix_affine(maps: list[tuple[torch.Tensor, torch.Tensor]], weights: list[float]) -> tuple[torch.Tensor, torch.Tensor]:
    """Σ wᵢ (Aᵢ f + bᵢ) as one affine map: style mixing. Weights are normalised to sum to 1, so
    alpha blending inside each map (α Tᵢ + (1 - α) I) stays alpha blending of the mix."""
    total = float(sum(weights))
    if not total > 0:
        raise ValueError(f"style weights must sum to a positive number, got {weights}")
    a = sum((w / total) * m[0] for w, m in zip(weights, maps))
    b = sum((w / total) * m[1] for w, m in zip(weights, maps))
    return a, b
