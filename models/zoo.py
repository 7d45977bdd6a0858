"""Model families and the one function that turns a family name into loaded levels.

A family is data: widths, two architectural switches, and the registry keys of its files.
``load_levels("cd16x")`` is all the engine needs; a new family (for example a further
distilled student from :mod:`models.training`) is one more entry, not new loading code.
A trained checkpoint file is a family too: it carries its own spec and weights, so
``load_levels("student.pt")`` (and ``--model student.pt``) work like a registry family.
"""
from __future__ import annotations

import os
import pickle
from dataclasses import dataclass, field, replace
from pathlib import Path

import torch
from torch import nn

from .architecture import VGG19_WIDTHS, VGGAutoencoderLevel, Widths
from .weights import WeightsError, load_registry, resolve, sha256_of


@dataclass(frozen=True)
class ModelFamily:
    name: str
    widths: Widths
    final_relu: bool  # the 16x decoders end in ReLU, the original WCT decoders do not
    ceil_mode: bool  # Torch7-converted VGG pools round up; identical on even sizes
    file_prefix: str  # registry key prefix: "<prefix>/enc3.pth"
    description: str = ""
    levels: tuple[int, ...] = field(default=(1, 2, 3, 4, 5))
    # A distilled encoder paired with its teacher's (wider) decoder; None: the decoder mirrors the encoder.
    decoder_widths: Widths | None = None

    def build(self, level: int) -> VGGAutoencoderLevel:
        module = VGGAutoencoderLevel(level, self.widths, final_relu=self.final_relu, ceil_mode=self.ceil_mode)
        if self.decoder_widths is not None and self.decoder_widths != self.widths:
            _attach_decoder(module, self.decoder_widths, self.final_relu, self.ceil_mode)
        return module

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


def _attach_decoder(module: VGGAutoencoderLevel, widths: Widths, final_relu: bool, ceil_mode: bool) -> None:
    """Swap in a decoder of other widths whose first conv reads the encoder's channels.

    This is the shape of a distilled encoder with its teacher's decoder, the linear embedding
    between them folded into that first conv.
    """
    wide = VGGAutoencoderLevel(module.level, widths, final_relu=final_relu, ceil_mode=ceil_mode)
    first, channels = wide.dec_layers[0], module.enc_layers[-1].cout
    wide.dec_layers[0] = replace(first, cin=channels)
    wide.decoder[wide.dec_index[first.name]] = nn.Conv2d(channels, first.cout, 3)
    module.dec_layers, module.decoder, module.dec_index = wide.dec_layers, wide.decoder, wide.dec_index


CHECKPOINT_FORMAT = "stylize-model/1"


def family_spec(family: ModelFamily) -> dict:
    """The plain-data description of a family that a checkpoint file carries."""
    dec = family.decoder_widths
    return {"name": family.name, "blocks": list(family.widths.blocks), "first": family.widths.first,
            "decoder_blocks": list(dec.blocks) if dec else None, "decoder_first": dec.first if dec else None,
            "final_relu": family.final_relu, "ceil_mode": family.ceil_mode}


def read_checkpoint(path: str | os.PathLike) -> dict:
    """A trained model file: ``{"format", "family": family_spec(...), "levels": {k: {"encoder",
    "decoder"}}}`` with named (``conv11.weight``) state dicts, plus optional ``"training"`` state."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unreadable file is the same user error
        raise WeightsError(f"{path}: not a readable checkpoint ({type(e).__name__})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise WeightsError(f"{path}: not a stylize model checkpoint (format {CHECKPOINT_FORMAT})")
    return ckpt


def family_from_checkpoint(ckpt: dict, path: str | os.PathLike) -> ModelFamily:
    spec = ckpt.get("family")
    need = ("name", "blocks", "first", "final_relu", "ceil_mode")
    if not isinstance(spec, dict) or any(k not in spec for k in need) or not isinstance(ckpt.get("levels"), dict):
        raise WeightsError(f"{path}: checkpoint lacks its model description (family: {', '.join(need)}; levels)")
    dec = Widths(tuple(spec["decoder_blocks"]), spec["decoder_first"]) if spec.get("decoder_blocks") else None
    return ModelFamily(
        spec["name"], Widths(tuple(spec["blocks"]), spec["first"]), final_relu=spec["final_relu"],
        ceil_mode=spec["ceil_mode"], file_prefix="", description=f"trained checkpoint {path}",
        levels=tuple(sorted(ckpt["levels"])), decoder_widths=dec,
    )


def _is_checkpoint_path(model: str | os.PathLike) -> bool:
    return str(model) not in FAMILIES and Path(model).is_file()


def get_family(model: str) -> ModelFamily:
    if _is_checkpoint_path(model):
        return family_from_checkpoint(read_checkpoint(model), model)
    if model not in FAMILIES:
        raise WeightsError(f"unknown model '{model}': choose one of {', '.join(FAMILIES)} or a checkpoint file")
    return FAMILIES[model]


@dataclass(frozen=True)
class ResolvedModel:
    """A model name resolved once: its family, the label files carry, and each level's verified
    weight files with their sha256 (from ``weights.toml``, or the checkpoint's own hash).

    Everything downstream (backends, ONNX export, benchmarks) takes this object instead of a
    name, so a name is looked up, and a file found and verified, once per process.
    """

    name: str  # what the user asked for: a family name or a checkpoint path
    family: ModelFamily
    label: str  # the family name, or a checkpoint's file stem
    files: dict[tuple[int, str], Path]  # (level, "enc" | "dec") -> file (one checkpoint holds all)
    sha256: dict[tuple[int, str], str]
    checkpoint: Path | None = None

    @property
    def levels(self) -> tuple[int, ...]:
        return tuple(sorted({level for level, _ in self.files}))

    def load(self, levels: tuple[int, ...] | None = None) -> dict[int, VGGAutoencoderLevel]:
        """Build and load the encoder/decoder of each level, in eval mode on CPU."""
        levels = tuple(levels or self.levels)
        missing = [k for k in levels if (k, "enc") not in self.files]
        if missing:
            raise WeightsError(f"model '{self.name}' was resolved without level(s) {missing}")
        ckpt = read_checkpoint(self.checkpoint) if self.checkpoint else None
        out: dict[int, VGGAutoencoderLevel] = {}
        for level in levels:
            module = self.family.build(level)
            for part, prefix in (("encoder", "enc"), ("decoder", "dec")):
                path = self.files[(level, prefix)]
                try:
                    if ckpt is not None:
                        module.load_named(part, ckpt["levels"][level][part])
                    else:
                        state = unwrap_state(torch.load(path, map_location="cpu", weights_only=True))
                        load_state_into(module, part, state)
                except (KeyError, RuntimeError) as e:
                    raise WeightsError(f"{path}: does not fit {self.name} level {level} {part}: {e}") from None
                except (pickle.UnpicklingError, EOFError, ValueError) as e:  # an HTML page saved as .pth
                    raise WeightsError(f"{path}: not a PyTorch weights file ({type(e).__name__}); fetch it "
                                       "again from the URL in weights.toml") from None
            out[level] = module.eval().requires_grad_(False)
        return out


def resolve_model(model: str | os.PathLike | ResolvedModel = "cd16x", levels: tuple[int, ...] | None = None,
                  weights_dir: str | os.PathLike | None = None, *, download: bool = True) -> ResolvedModel:
    """Resolve a family name (or a trained checkpoint file) and the files of ``levels``
    (default: every level the family has) into a :class:`ResolvedModel`."""
    if isinstance(model, ResolvedModel):
        return model
    model = str(model)
    if _is_checkpoint_path(model):
        ckpt = read_checkpoint(model)
        family = family_from_checkpoint(ckpt, model)
        levels = tuple(levels or family.levels)
        _check_levels(model, family, levels)
        path, sha = Path(model), sha256_of(Path(model))
        files = {(k, part): path for k in levels for part in ("enc", "dec")}
        return ResolvedModel(model, family, path.stem, files, dict.fromkeys(files, sha), checkpoint=path)
    family = get_family(model)
    levels = tuple(levels or family.levels)
    _check_levels(model, family, levels)
    registry = load_registry()
    files, hashes = {}, {}
    for level in levels:
        for part in ("enc", "dec"):
            key = family.key(part, level)
            files[(level, part)] = resolve(key, weights_dir, download=download, registry=registry)
            hashes[(level, part)] = registry[key].sha256 or sha256_of(files[(level, part)])
    return ResolvedModel(model, family, family.name, files, hashes)


def _check_levels(model: str, family: ModelFamily, levels: tuple[int, ...]) -> None:
    missing = [k for k in levels if k not in family.levels]
    if missing:
        raise WeightsError(f"model '{model}' has no level(s) {', '.join(map(str, missing))}")


def load_levels(model: str | os.PathLike | ResolvedModel = "cd16x", levels: tuple[int, ...] = (5, 4, 3, 2, 1),
                weights_dir: str | os.PathLike | None = None, *, pretrained: bool = True,
                download: bool = True) -> dict[int, VGGAutoencoderLevel]:
    """The loaded levels of a model: ``resolve_model(...).load(levels)``.

    ``pretrained=False`` leaves random weights of the right shapes and reads no file
    (benchmarks and the data-free tests: the architecture is the real one).
    """
    if not pretrained:
        family = model.family if isinstance(model, ResolvedModel) else get_family(str(model))
        _check_levels(str(model), family, tuple(levels))
        return {k: family.build(k).eval().requires_grad_(False) for k in levels}
    return resolve_model(model, tuple(levels), weights_dir, download=download).load(tuple(levels))
