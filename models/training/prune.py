"""L1-norm filter pruning: a narrow student initialised from its teacher's strongest filters.

Keeping, in every conv, the filters with the largest L1 norm (Li et al., "Pruning Filters
for Efficient ConvNets", 2017) and slicing the next conv's inputs to match gives a student
whose channels are a subset of the teacher's: its features start as the teacher's own
(restricted), so distillation starts near a working model instead of from noise.
"""
from __future__ import annotations

import torch

from ..architecture import Layer, VGGAutoencoderLevel, Widths


def scale_widths(widths: Widths, ratio: float) -> Widths:
    """Every block width times ``ratio``, rounded, at least 1."""
    if not 0.0 < ratio <= 1.0:
        raise ValueError(f"width ratio must be in (0, 1], got {ratio}")
    scale = lambda w: max(1, round(w * ratio))  # noqa: E731
    return Widths(tuple(scale(w) for w in widths.blocks), scale(widths.first) if widths.first else None)


def strongest_filters(weight: torch.Tensor, keep: int) -> torch.Tensor:
    """Indices (ascending) of the ``keep`` filters of a (C_out, C_in, k, k) weight with largest L1 norm."""
    norms = weight.detach().abs().flatten(1).sum(dim=1)
    return torch.topk(norms, keep, sorted=True).indices.sort().values


def prune_convs(seq: torch.nn.Sequential, index: dict[str, int], layers: list[Layer],
                keep_in: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """Named state (``conv11.weight``…) of the narrow ``layers`` cut from the wide ``seq``.

    ``keep_in`` are the wide channels the first conv reads; returns the state and the wide
    channels the last conv's outputs correspond to.
    """
    state: dict[str, torch.Tensor] = {}
    for layer in layers:
        if layer.kind != "conv":
            continue
        conv = seq[index[layer.name]]
        keep_out = strongest_filters(conv.weight, layer.cout)
        state[f"{layer.name}.weight"] = conv.weight.detach()[keep_out][:, keep_in].clone()
        state[f"{layer.name}.bias"] = conv.bias.detach()[keep_out].clone()
        keep_in = keep_out
    return state, keep_in


def prune_encoder(teacher: VGGAutoencoderLevel, student: VGGAutoencoderLevel) -> torch.Tensor:
    """Load ``student.encoder`` with the pruned teacher encoder; returns the kept output channels."""
    state, kept = prune_convs(teacher.encoder, teacher.enc_index, student.enc_layers, torch.arange(3))
    student.load_named("encoder", state)
    return kept


def prune_decoder(teacher: VGGAutoencoderLevel, student: VGGAutoencoderLevel, keep_in: torch.Tensor) -> None:
    """Load ``student.decoder`` with the pruned teacher decoder reading teacher channels ``keep_in``."""
    state, _ = prune_convs(teacher.decoder, teacher.dec_index, student.dec_layers, keep_in)
    student.load_named("decoder", state)
