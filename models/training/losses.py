"""Loss terms of the three trainers, as small pure functions of tensors.

Reconstruction (pixel + perceptual) is what makes a decoder invert an encoder; the
embedding loss is the collaborative-distillation link that lets a narrow student encoder
speak to the teacher's decoder; the content-relationship term (optional) asks the
student's output to keep the teacher's *relations* between image regions, not just their
values — it transfers structure even where the student cannot match pixels exactly.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def pixel_loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error between (B, 3, H, W) images; a scalar."""
    return F.mse_loss(output, target)


def perceptual_loss(output_features: list[torch.Tensor], target_features: list[torch.Tensor]) -> torch.Tensor:
    """Sum over layers of the MSE between (B, C_i, H_i, W_i) features (relu1_1..reluk_1)."""
    return sum(F.mse_loss(o, t) for o, t in zip(output_features, target_features, strict=True))


def embedding_loss(student_features: list[torch.Tensor], teacher_features: list[torch.Tensor],
                   embeddings: nn.ModuleList) -> torch.Tensor:
    """Sum over layers of MSE(Q_i(s_i), t_i): s_i (B, c_i, h, w), t_i (B, C_i, h, w), Q_i a 1x1 conv c_i→C_i.

    Q is linear on purpose: the student only has to span the teacher's features up to a
    linear map, which the teacher decoder (and later the folded first conv) absorbs.
    """
    return sum(F.mse_loss(q(s), t) for q, s, t in zip(embeddings, student_features, teacher_features, strict=True))


def region_embeddings(image: torch.Tensor, strips: int = 8, grid: int = 4) -> list[torch.Tensor]:
    """Row strips, column strips and grid patches of (B, C, H, W) as (B, N, D) vectors each.

    H and W are trimmed to multiples of ``strips`` and ``grid``; N is strips, strips, grid².
    """
    b, c, h, w = image.shape
    hs, ws = h - h % strips, w - w % strips
    rows = image[:, :, :hs].reshape(b, c, strips, hs // strips, w).permute(0, 2, 1, 3, 4).reshape(b, strips, -1)
    cols = image[:, :, :, :ws].reshape(b, c, h, strips, ws // strips).permute(0, 3, 1, 2, 4).reshape(b, strips, -1)
    hg, wg = h - h % grid, w - w % grid
    patches = image[:, :, :hg, :wg].reshape(b, c, grid, hg // grid, grid, wg // grid)
    patches = patches.permute(0, 2, 4, 1, 3, 5).reshape(b, grid * grid, -1)
    return [rows, cols, patches]


def distance_relation(e: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """(B, N, D) → (B, N, N) pairwise distances divided by their mean (scale-free)."""
    d = torch.cdist(e, e)
    n = e.shape[1]
    mean = d.sum(dim=(1, 2), keepdim=True) / max(n * (n - 1), 1)
    return d / (mean + eps)


def angle_relation(e: torch.Tensor) -> torch.Tensor:
    """(B, N, D) → (B, N, N, N): cos of the angle at j between (e_i - e_j) and (e_k - e_j)."""
    diff = F.normalize(e[:, None, :, :] - e[:, :, None, :], dim=-1)  # [b, j, i] = e_i - e_j
    return torch.einsum("bjid,bjkd->bjik", diff, diff)


def content_relation_loss(output: torch.Tensor, reference: torch.Tensor, *, strips: int = 8, grid: int = 4,
                          distance_weight: float = 1.0, angle_weight: float = 2.0) -> torch.Tensor:
    """Huber penalty between the region relations of (B, 3, H, W) ``output`` and ``reference``.

    Distance and angle relations (weights 1 : 2, as relational distillation uses 25 : 50)
    over row strips, column strips and patches; ``reference`` is treated as fixed.
    """
    reference = reference.detach()
    loss = output.new_zeros(())
    for eo, er in zip(region_embeddings(output, strips, grid), region_embeddings(reference, strips, grid)):
        loss = loss + distance_weight * F.smooth_l1_loss(distance_relation(eo), distance_relation(er))
        loss = loss + angle_weight * F.smooth_l1_loss(angle_relation(eo), angle_relation(er))
    return loss
