"""The three trainers of collaborative distillation (Wang et al., CVPR 2020), one level each.

1. :class:`DecoderTrainer` — a decoder that inverts a frozen encoder (the WCT decoder recipe:
   pixel + perceptual loss over relu1_1..reluk_1 of that encoder).
2. :class:`EncoderDistiller` — a narrow student encoder, pruned from the teacher, trained so
   that the *frozen teacher decoder* reconstructs from it (the collaborative part), tied to
   the teacher's features by linear embeddings Q (weights: embedding 10, pixel 1, perceptual 1).
   Its model pairs the student encoder with the teacher decoder, Q folded into the decoder's
   first conv, so it stylizes as is.
3. :class:`SmallDecoderTrainer` — a narrow decoder for the frozen student encoder, pruned from
   the decoder it replaces (pixel + 0.01 × perceptual through the teacher encoder).

Each may add the content-relationship term (``crd`` > 0) against a reference output: the
teacher's reconstruction where there is a teacher autoencoder, else the input itself.
"""
from __future__ import annotations

import torch
from torch import nn

from ..architecture import VGGAutoencoderLevel
from ..zoo import ModelFamily
from .checkpoint import level_state, named_state, spec_of
from .losses import content_relation_loss, embedding_loss, perceptual_loss, pixel_loss
from .prune import prune_decoder, prune_encoder, scale_widths

LossTerms = dict[str, torch.Tensor]


def relu_taps(module: VGGAutoencoderLevel) -> list[int]:
    """Sequential indices of the encoder's relu1_1 … relu{k}_1 outputs."""
    return [module.enc_index[f"conv{i}1"] + 1 for i in range(1, module.level + 1)]


def tap_features(encoder: nn.Sequential, taps: list[int], x: torch.Tensor) -> list[torch.Tensor]:
    """Run ``encoder`` on (B, 3, H, W) and keep the outputs at ``taps`` (the last one is the code)."""
    out = []
    for i, layer in enumerate(encoder[: taps[-1] + 1]):
        x = layer(x)
        if i in taps:
            out.append(x)
    return out


def freeze(module: nn.Module) -> nn.Module:
    return module.eval().requires_grad_(False)


def fit_linear(source: torch.Tensor, target: torch.Tensor, ridge: float = 1e-4) -> tuple[torch.Tensor, torch.Tensor]:
    """Least-squares (C_t, C_s) weight and (C_t,) bias mapping (B, C_s, h, w) to (B, C_t, h, w).

    The best linear embedding of the initial student into the teacher: a start where the
    embedding loss is already as low as a linear map allows. The small ridge copes with
    channels that are dead on the batch.
    """
    x = source.permute(0, 2, 3, 1).reshape(-1, source.shape[1]).double()
    y = target.permute(0, 2, 3, 1).reshape(-1, target.shape[1]).double()
    x = torch.cat([x, torch.ones_like(x[:, :1])], dim=1)
    gram = x.T @ x
    gram += ridge * gram.diagonal().mean() * torch.eye(gram.shape[0], dtype=gram.dtype, device=gram.device)
    solution = torch.linalg.solve(gram, x.T @ y)  # (C_s + 1, C_t)
    return solution[:-1].T.float(), solution[-1].float()


class _Trainer:
    """Shared plumbing: device moves, the optional content-relationship term, facts for the checkpoint."""

    name = ""

    def __init__(self, level: int, crd: float, weights: dict[str, float], facts: dict):
        self.level = level
        self.crd = crd
        self.weights = weights
        self.facts = facts
        self._all: list[nn.Module] = []

    def to(self, device: torch.device) -> _Trainer:
        for m in self._all:
            m.to(device)
        return self

    def initialise(self, batch: torch.Tensor) -> None:
        pass

    def meta(self) -> dict:
        return {"level": self.level, "weights": dict(self.weights), "crd": self.crd, **self.facts}

    def _total(self, terms: LossTerms, output: torch.Tensor, reference: torch.Tensor | None) -> LossTerms:
        weighted = {k: self.weights[k] * v for k, v in terms.items()}
        if self.crd > 0 and reference is not None:
            weighted["relation"] = self.crd * content_relation_loss(output, reference)
        weighted["total"] = sum(weighted.values())
        return weighted


class DecoderTrainer(_Trainer):
    """A fresh decoder for the frozen level-k encoder of ``family`` (random init from the seed)."""

    name = "decoder"

    def __init__(self, family: ModelFamily, encoder_level: VGGAutoencoderLevel, *, seed: int = 0,
                 crd: float = 0.0, pixel: float = 1.0, perceptual: float = 1.0, facts: dict | None = None):
        super().__init__(encoder_level.level, crd, {"pixel": pixel, "perceptual": perceptual}, facts or {})
        self.family = family
        torch.manual_seed(seed)
        self.model = family.build(encoder_level.level)
        self.model.encoder.load_state_dict(encoder_level.encoder.state_dict())
        freeze(self.model.encoder)
        self.taps = relu_taps(self.model)
        self._modules = nn.ModuleDict({"decoder": self.model.decoder})
        self._all = [self.model]

    def modules(self) -> nn.ModuleDict:
        return self._modules

    def losses(self, x: torch.Tensor) -> LossTerms:
        with torch.no_grad():
            target = tap_features(self.model.encoder, self.taps, x)
        out = self.model.decoder(target[-1])
        terms = {"pixel": pixel_loss(out, x),
                 "perceptual": perceptual_loss(tap_features(self.model.encoder, self.taps, out), target)}
        return self._total(terms, out, x)

    def export(self) -> tuple[dict, dict]:
        return spec_of(self.family, self.family.name), {self.level: level_state(self.model)}


class EncoderDistiller(_Trainer):
    """A student encoder at ``width_ratio`` of the teacher, trained with the frozen teacher decoder."""

    name = "encoder"

    def __init__(self, family: ModelFamily, teacher: VGGAutoencoderLevel, *, width_ratio: float = 0.25,
                 crd: float = 0.0, embedding: float = 10.0, pixel: float = 1.0, perceptual: float = 1.0,
                 facts: dict | None = None):
        facts = {"width_ratio": width_ratio, **(facts or {})}
        super().__init__(teacher.level, crd, {"embedding": embedding, "pixel": pixel, "perceptual": perceptual}, facts)
        self.family, self.teacher = family, freeze(teacher)
        k = teacher.level
        self.widths = scale_widths(family.widths, width_ratio)
        self.student = VGGAutoencoderLevel(k, self.widths, final_relu=family.final_relu, ceil_mode=family.ceil_mode)
        prune_encoder(teacher, self.student)
        self.taps, self.student_taps = relu_taps(teacher), relu_taps(self.student)
        teacher_convs = {layer.name: layer for layer in teacher.enc_layers}
        self.embeddings = nn.ModuleList(
            nn.Conv2d(self.widths.block(i, k), teacher_convs[f"conv{i}1"].cout, 1) for i in range(1, k + 1))
        self._modules = nn.ModuleDict({"encoder": self.student.encoder, "embeddings": self.embeddings})
        self._all = [self.teacher, self.student, self.embeddings]

    def modules(self) -> nn.ModuleDict:
        return self._modules

    @torch.no_grad()
    def initialise(self, x: torch.Tensor) -> None:
        student = tap_features(self.student.encoder, self.student_taps, x)
        teacher = tap_features(self.teacher.encoder, self.taps, x)
        for q, s, t in zip(self.embeddings, student, teacher, strict=True):
            w, b = fit_linear(s, t)
            q.weight.copy_(w[:, :, None, None])
            q.bias.copy_(b)

    def losses(self, x: torch.Tensor) -> LossTerms:
        with torch.no_grad():
            target = tap_features(self.teacher.encoder, self.taps, x)
            reference = self.teacher.decoder(target[-1]) if self.crd > 0 else None
        student = tap_features(self.student.encoder, self.student_taps, x)
        out = self.teacher.decoder(self.embeddings[-1](student[-1]))
        terms = {"embedding": embedding_loss(student, target, self.embeddings),
                 "pixel": pixel_loss(out, x),
                 "perceptual": perceptual_loss(tap_features(self.teacher.encoder, self.taps, out), target)}
        return self._total(terms, out, reference)

    def folded_decoder(self) -> dict[str, torch.Tensor]:
        """Teacher decoder state with Q_k folded into its first conv (exact: reflection padding
        commutes with a per-pixel affine map), so it reads the student's code directly."""
        state = named_state(self.teacher, "decoder")
        first = self.teacher.dec_layers[0].name
        q = self.embeddings[-1]
        w, b = state[f"{first}.weight"], state[f"{first}.bias"]
        qw, qb = q.weight.detach()[:, :, 0, 0], q.bias.detach()
        state[f"{first}.weight"] = torch.einsum("othw,ts->oshw", w, qw).contiguous()
        state[f"{first}.bias"] = b + torch.einsum("othw,t->o", w, qb)
        return state

    def export(self) -> tuple[dict, dict]:
        spec = spec_of(self.family, f"{self.family.name}-student")
        spec.update(blocks=list(self.widths.blocks), first=self.widths.first,
                    decoder_blocks=list((self.family.decoder_widths or self.family.widths).blocks),
                    decoder_first=(self.family.decoder_widths or self.family.widths).first)
        encoder = named_state(self.student, "encoder")
        return spec, {self.level: {"encoder": encoder, "decoder": self.folded_decoder()}}


class SmallDecoderTrainer(_Trainer):
    """A decoder as narrow as the frozen student encoder, pruned from the decoder it replaces.

    ``encoder_family``/``encoder_level`` is the student model (usually an encoder checkpoint,
    whose decoder is the folded teacher decoder); ``teacher`` gives the perceptual features.
    """

    name = "small-decoder"

    def __init__(self, encoder_family: ModelFamily, encoder_level: VGGAutoencoderLevel,
                 teacher: VGGAutoencoderLevel, *, crd: float = 0.0, pixel: float = 1.0,
                 perceptual: float = 0.01, facts: dict | None = None):
        super().__init__(encoder_level.level, crd, {"pixel": pixel, "perceptual": perceptual}, facts or {})
        k = encoder_level.level
        if teacher.level != k:
            raise ValueError(f"teacher level {teacher.level} differs from the student's level {k}")
        self.family, self.teacher = encoder_family, freeze(teacher)
        f = encoder_family
        self.model = VGGAutoencoderLevel(k, f.widths, final_relu=f.final_relu, ceil_mode=f.ceil_mode)
        self.model.encoder.load_state_dict(encoder_level.encoder.state_dict())
        freeze(self.model.encoder)
        prune_decoder(encoder_level, self.model, torch.arange(encoder_level.dec_layers[0].cin))
        self.taps = relu_taps(teacher)
        self._modules = nn.ModuleDict({"decoder": self.model.decoder})
        self._all = [self.teacher, self.model]

    def modules(self) -> nn.ModuleDict:
        return self._modules

    def losses(self, x: torch.Tensor) -> LossTerms:
        with torch.no_grad():
            code = self.model.encoder(x)
            target = tap_features(self.teacher.encoder, self.taps, x)
            reference = self.teacher.decoder(target[-1]) if self.crd > 0 else None
        out = self.model.decoder(code)
        terms = {"pixel": pixel_loss(out, x),
                 "perceptual": perceptual_loss(tap_features(self.teacher.encoder, self.taps, out), target)}
        return self._total(terms, out, reference)

    def export(self) -> tuple[dict, dict]:
        spec = spec_of(self.family, self.family.name)
        spec.update(decoder_blocks=None, decoder_first=None)
        return spec, {self.level: level_state(self.model)}
