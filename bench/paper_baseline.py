"""The published pipeline, done the paper's way, as the yardstick for every benchmark.

Whole image at once; per level (5 → 1) encode the content and the style, move the features
to fp64, covariance over all pixels, ``torch.svd`` on the CPU, drop singular values below
1e-100, whiten, colour, blend, cast to fp32 and decode. Same weights as the engine, so any
difference in time or memory is the engine's doing. Not used by the product.

    python -m stylize.bench.paper_baseline CONTENT STYLE -o OUT.png [--res 4k] [--device cpu]
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from stylize.imageio import parse_resolution, read_image, write_image
from stylize.models import load_levels

THRESHOLD = 1e-100


def _whiten_and_colour(cf: torch.Tensor, sf: torch.Tensor) -> torch.Tensor:
    """cf (C, N), sf (C, M) fp64 → (C, N) fp64: the authors' formulation, SVD and all."""
    c_mean = cf.mean(1, keepdim=True)
    cf = cf - c_mean
    c_u, c_e, c_v = torch.svd(cf @ cf.T / (cf.shape[1] - 1), some=False)
    k_c = int((c_e >= THRESHOLD).sum())
    s_mean = sf.mean(1, keepdim=True)
    sf = sf - s_mean
    s_u, s_e, s_v = torch.svd(sf @ sf.T / (sf.shape[1] - 1), some=False)
    k_s = int((s_e >= THRESHOLD).sum())
    whiten = c_v[:, :k_c] @ torch.diag(c_e[:k_c].pow(-0.5)) @ c_v[:, :k_c].T
    colour = s_v[:, :k_s] @ torch.diag(s_e[:k_s].pow(0.5)) @ s_v[:, :k_s].T
    return colour @ (whiten @ cf) + s_mean


@torch.inference_mode()
def paper_stylize(content: np.ndarray, style: np.ndarray, *, model: str = "cd16x",
                  levels: tuple[int, ...] = (5, 4, 3, 2, 1), alpha: float = 1.0, device: str = "cpu",
                  modules=None) -> np.ndarray:
    """(3, H, W) float32 arrays (sides multiples of 16) → (3, H, W) float32 clamped."""
    modules = modules or load_levels(model, tuple(sorted(set(levels))))
    x = torch.from_numpy(content)[None].to(device)
    s = torch.from_numpy(style)[None].to(device)
    for k in levels:
        m = modules[k].to(device)
        sf = m.encode(s).cpu()[0]
        cf = m.encode(x).cpu()[0]
        c, h, w = cf.shape
        cf64 = cf.double().reshape(c, -1)
        target = _whiten_and_colour(cf64, sf.double().reshape(c, -1))
        csf = (alpha * target + (1 - alpha) * cf64).float().reshape(1, c, h, w)
        del cf, sf, cf64, target
        x = m.decode(csf.to(device))
    return x[0].clamp(0, 1).cpu().numpy()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("content")
    ap.add_argument("style")
    ap.add_argument("-o", "--output", required=True)
    ap.add_argument("--res", default=None)
    ap.add_argument("--style-res", default=None)
    ap.add_argument("--alpha", type=float, default=1.0)
    ap.add_argument("--model", default="cd16x")
    ap.add_argument("--device", default="cpu")
    a = ap.parse_args()
    c = read_image(a.content, parse_resolution(a.res)).rgb
    s = read_image(a.style, parse_resolution(a.style_res)).rgb
    # The published code needs sides that survive four poolings: crop to multiples of 16.
    c = np.ascontiguousarray(c[:, : c.shape[1] // 16 * 16, : c.shape[2] // 16 * 16])
    t0 = time.perf_counter()
    out = paper_stylize(c, s, model=a.model, alpha=a.alpha, device=a.device)
    print(f"paper pipeline: {out.shape[2]}x{out.shape[1]} in {time.perf_counter() - t0:.1f}s")
    write_image(a.output, out)


if __name__ == "__main__":
    main()
