"""Model families and the one function that turns a family name into loaded levels.

A family is data: widths, two architectural switches, and the registry keys of its files.
``load_levels("cd16x")`` is all the engine needs; a new family (for example a further
distilled student from :mod:`models.training`) is one more entry, not new loading code.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

import torch

from .architecture import VGG19_WIDTHS, VGGAutoencoderLevel, Widths
from .weights import WeightsError, resolve


@dataclass(frozen=True)
class ModelFamily:
    name: str
    widths: Widths
    final_relu: bool  # the 16x decoders end in ReLU, the original WCT decoders do not
    ceil_mode: bool  # Torch7-converted VGG pools round up; identical on even sizes
    file_prefix: str  # registry key prefix: "<prefix>/enc3.pth"
    description: str = ""
    levels: tuple[int, ...] = field(default=(1, 2, 3, 4, 5))

    def build(self, level: int) -> VGGAutoencoderLevel:
        return VGGAutoencoderLevel(level, self.widths, final_relu=self.final_relu, ceil_mode=self.ceil_mode)

    def key(self, part: str, level: int) -> str:
        return f"{self.file_prefix}/{part}{level}.pth"


FAMILIES: dict[str, ModelFamily] = {
    "cd16x": ModelFamily(
        "cd16x", Widths((16, 32, 64, 128, 128), first=24), final_relu=True, ceil_mode=False,
        file_prefix="cd16x",
        description="Collaborative Distillation 16x encoders/decoders (Wang et al., CVPR 2020)",
    ),
    "vgg19": ModelFamily(
        "vgg19", Widths(VGG19_WIDTHS), final_relu=False, ceil_mode=True,
        file_prefix="vgg19-wct",
        description="original WCT: normalised VGG-19 and its decoders (Li et al. 2017); "
        "levels 4-5 need user-supplied files",
    ),
}


def unwrap_state(obj) -> dict[str, torch.Tensor]:
    """The upstream 16x files wrap the state dict as ``{"epoch", "model"}``."""
    if isinstance(obj, dict) and "model" in obj and isinstance(obj["model"], dict):
        obj = obj["model"]
    return dict(obj)


def load_state_into(module: VGGAutoencoderLevel, part: str, state: dict[str, torch.Tensor]) -> None:
    """Load either key convention: named (``conv11.weight``) or Sequential index (``2.weight``)."""
    if any(k.startswith("conv") for k in state):
        module.load_named(part, state)
    else:
        getattr(module, part).load_state_dict(state, strict=True)


def get_family(model: str) -> ModelFamily:
    if model not in FAMILIES:
        raise WeightsError(f"unknown model '{model}': choose one of {', '.join(FAMILIES)}")
    return FAMILIES[model]


def load_levels(
    model: str = "cd16x",
    levels: tuple[int, ...] = (5, 4, 3, 2, 1),
    weights_dir: str | os.PathLike | None = None,
    *,
    pretrained: bool = True,
    download: bool = True,
) -> dict[int, VGGAutoencoderLevel]:
    """Build and load the encoder/decoder of each requested level, in eval mode on CPU.

    ``pretrained=False`` leaves random weights of the right shapes (benchmarks only: timing
    does not depend on the values).
    """
    family = get_family(model)
    out: dict[int, VGGAutoencoderLevel] = {}
    for level in levels:
        if level not in family.levels:
            raise WeightsError(f"model '{model}' has no level {level}")
        module = family.build(level)
        if pretrained:
            for part, prefix in (("encoder", "enc"), ("decoder", "dec")):
                path = resolve(family.key(prefix, level), weights_dir, download=download)
                state = unwrap_state(torch.load(path, map_location="cpu", weights_only=True))
                try:
                    load_state_into(module, part, state)
                except (KeyError, RuntimeError) as e:
                    raise WeightsError(f"{path}: does not fit {model} level {level} {part}: {e}") from None
        out[level] = module.eval().requires_grad_(False)
    return out
