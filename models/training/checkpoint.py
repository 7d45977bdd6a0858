"""Turning modules into the checkpoint model format, and back; merging levels into one model.

The format itself (``format``/``family``/``levels``) is defined and read by
:mod:`models.zoo`; this module only writes it and combines files.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

from ...engine.atomic import atomic_path
from ..architecture import VGGAutoencoderLevel
from ..zoo import CHECKPOINT_FORMAT, ModelFamily, family_spec, read_checkpoint


def named_state(module: VGGAutoencoderLevel, part: str) -> dict[str, torch.Tensor]:
    """Inverse of :meth:`VGGAutoencoderLevel.load_named`: ``conv11.weight``-keyed tensors."""
    seq, index = (module.encoder, module.enc_index) if part == "encoder" else (module.decoder, module.dec_index)
    return {f"{name}.{p}": getattr(seq[i], p).detach().clone() for name, i in index.items() for p in ("weight", "bias")}


def level_state(module: VGGAutoencoderLevel) -> dict[str, dict[str, torch.Tensor]]:
    return {"encoder": named_state(module, "encoder"), "decoder": named_state(module, "decoder")}


def merge_models(paths: list[str | os.PathLike], output: str | os.PathLike) -> dict:
    """One multi-level model from single-level checkpoints of one family (training state dropped).

    Later files win where levels repeat. Returns the family spec written.
    """
    if not paths:
        raise ValueError("nothing to merge")
    spec, levels = None, {}
    for path in paths:
        ckpt = read_checkpoint(path)
        this = {k: v for k, v in ckpt["family"].items() if k != "name"}
        if spec is not None and this != {k: v for k, v in spec.items() if k != "name"}:
            raise ValueError(f"{path}: widths or layout differ from {paths[0]}; only one family per model")
        spec = spec or ckpt["family"]
        levels.update(ckpt["levels"])
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(output) as tmp:  # a failed save leaves no half model under the name
        torch.save({"format": CHECKPOINT_FORMAT, "family": spec, "levels": levels}, tmp)
    return spec


def spec_of(family: ModelFamily, name: str) -> dict:
    """``family_spec`` under a new name (a student keeps its teacher's layout switches)."""
    return {**family_spec(family), "name": name}
