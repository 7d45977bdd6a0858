"""VGG-style WCT encoders and decoders built from one layer specification.

Both model families (the distilled 16x models and the original normalised VGG-19) share
the same shape: a 1x1 ``conv0`` that does the Caffe preprocessing, then reflection-padded
3x3 convolutions with ReLU, 2x2 max pools, and mirrored decoders with nearest upsampling.
Writing the layers down once as data lets the engine derive what it must know about a
level (stride, receptive-field radius, compute per pixel, peak activation size) from the
same source that builds the module, instead of keeping hand-written tables in sync.

The modules are ``nn.Sequential`` with exactly the upstream layer order, so the original
WCT state dicts (keyed by Sequential index) load unchanged; the 16x files (keyed by
``conv11``…) are mapped by name through :attr:`VGGAutoencoderLevel.conv_index`.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from stylize.engine.geometry import LevelGeometry

# Convolutions per VGG-19 block; block k's first conv is conv{k}1 (relu{k}_1).
VGG19_BLOCKS = (2, 2, 4, 4, 4)
VGG19_WIDTHS = (64, 128, 256, 512, 512)


@dataclass(frozen=True)
class Layer:
    """One layer: ``conv`` (3x3 unless ``name == 'conv0'``), ``pool`` or ``up``."""

    kind: str
    name: str = ""
    cin: int = 0
    cout: int = 0
    relu: bool = True


@dataclass(frozen=True)
class Widths:
    """Channel widths of one family: ``blocks[b]`` for VGG block b+1, ``first`` for level 1.

    The 16x level-1 encoder is wider (24) than block 1 of the deeper levels (16), so the
    width of block 1 can depend on whether the level stops there.
    """

    blocks: tuple[int, ...]
    first: int | None = None

    def block(self, b: int, level: int) -> int:
        if b == 1 and level == 1 and self.first is not None:
            return self.first
        return self.blocks[b - 1]


def encoder_layers(level: int, widths: Widths) -> list[Layer]:
    """Layers of the encoder that ends at relu{level}_1."""
    layers = [Layer("conv", "conv0", 3, 3, relu=False)]
    cin = 3
    for b in range(1, level + 1):
        w = widths.block(b, level)
        n = VGG19_BLOCKS[b - 1] if b < level else 1
        for i in range(1, n + 1):
            layers.append(Layer("conv", f"conv{b}{i}", cin, w))
            cin = w
        if b < level:
            layers.append(Layer("pool"))
    return layers


def decoder_layers(level: int, widths: Widths, final_relu: bool) -> list[Layer]:
    """Mirror of :func:`encoder_layers`: conv{level}1 first, conv11 (to RGB) last."""
    layers: list[Layer] = []
    for b in range(level, 0, -1):
        w = widths.block(b, level)
        n = VGG19_BLOCKS[b - 1] if b < level else 1
        for i in range(n, 0, -1):
            cout = w if i > 1 else (widths.block(b - 1, level) if b > 1 else 3)
            layers.append(Layer("conv", f"conv{b}{i}", w, cout))
        if b > 1:
            layers.append(Layer("up"))
    last = layers[-1]
    layers[-1] = Layer("conv", last.name, last.cin, last.cout, relu=final_relu)
    return layers


def _build(layers: list[Layer], ceil_mode: bool) -> tuple[nn.Sequential, dict[str, int]]:
    """Sequential in upstream order (pad, conv, relu / pool / up) and conv name → index."""
    modules: list[nn.Module] = []
    index: dict[str, int] = {}
    for layer in layers:
        if layer.kind == "pool":
            modules.append(nn.MaxPool2d(2, 2, ceil_mode=ceil_mode))
        elif layer.kind == "up":
            modules.append(nn.Upsample(scale_factor=2, mode="nearest"))
        elif layer.name == "conv0":
            index[layer.name] = len(modules)
            modules.append(nn.Conv2d(layer.cin, layer.cout, 1))
        else:
            modules.append(nn.ReflectionPad2d(1))
            index[layer.name] = len(modules)
            modules.append(nn.Conv2d(layer.cin, layer.cout, 3))
            if layer.relu:
                modules.append(nn.ReLU(inplace=True))
    return nn.Sequential(*modules), index


def output_bytes(module: nn.Module, x: torch.Tensor) -> int:
    """Bytes one module of these stacks allocates for its output on ``x`` (N, C, H, W): what a
    runtime that steps through the layers makes room for before each (0 for the in-place ReLU)."""
    n, c, h, w = x.shape
    if isinstance(module, nn.Conv2d):
        return n * module.out_channels * h * w * x.element_size()
    if isinstance(module, nn.ReflectionPad2d):
        left, right, top, bottom = module.padding
        return n * c * (h + top + bottom) * (w + left + right) * x.element_size()
    if isinstance(module, nn.Upsample):
        return x.nbytes * int(module.scale_factor) ** 2
    if isinstance(module, nn.MaxPool2d):  # 2x2, stride 2
        half = (lambda side: -(-side // 2)) if module.ceil_mode else (lambda side: side // 2)
        return n * c * half(h) * half(w) * x.element_size()
    if isinstance(module, nn.ReLU) and module.inplace:
        return 0
    return x.nbytes


def _radius(layers: list[Layer], scale: int) -> tuple[int, int]:
    """(radius in input pixels, scale at the end) of a stack starting at ``scale``.

    A 3x3 conv at scale s reaches s pixels further; a 2x2 pool reaches s more on one side;
    nearest upsampling reaches nothing new. An upper bound, exact for these stacks.
    """
    r = 0
    for layer in layers:
        if layer.kind == "conv" and layer.name != "conv0":
            r += scale
        elif layer.kind == "pool":
            r += scale
            scale *= 2
        elif layer.kind == "up":
            scale //= 2
    return r, scale


def _macs_per_pixel(layers: list[Layer], scale: int) -> float:
    total = 0.0
    for layer in layers:
        if layer.kind == "conv":
            k = 1 if layer.name == "conv0" else 9
            total += layer.cin * layer.cout * k / scale**2
        elif layer.kind == "pool":
            scale *= 2
        elif layer.kind == "up":
            scale //= 2
    return total


def _peak_bytes_per_pixel(layers: list[Layer], scale: int, dtype_bytes: int) -> float:
    """Largest live activation set per input pixel while running the stack without grad:
    the input, its reflection-padded copy and the conv output of the worst layer."""
    peak = 0.0
    for layer in layers:
        if layer.kind == "conv":
            peak = max(peak, (2 * layer.cin + layer.cout) / scale**2)
        elif layer.kind == "pool":
            scale *= 2
        elif layer.kind == "up":
            scale //= 2
    return peak * dtype_bytes


class VGGAutoencoderLevel(nn.Module):
    """Encoder to relu{k}_1 and its decoder back to RGB for one WCT level."""

    def __init__(self, level: int, widths: Widths, *, final_relu: bool, ceil_mode: bool):
        super().__init__()
        self.level = level
        self.enc_layers = encoder_layers(level, widths)
        self.dec_layers = decoder_layers(level, widths, final_relu)
        self.encoder, self.enc_index = _build(self.enc_layers, ceil_mode)
        self.decoder, self.dec_index = _build(self.dec_layers, ceil_mode)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) RGB in [0, 1] → (B, C, H/s, W/s) features at relu{k}_1."""
        return self.encoder(x)

    def decode(self, f: torch.Tensor) -> torch.Tensor:
        """(B, C, h, w) features → (B, 3, h·s, w·s) RGB, not clamped."""
        return self.decoder(f)

    def geometry(self, dtype_bytes: int = 4) -> LevelGeometry:
        r_enc, scale = _radius(self.enc_layers, 1)
        r_dec, _ = _radius(self.dec_layers, scale)
        macs = _macs_per_pixel(self.enc_layers, 1) + _macs_per_pixel(self.dec_layers, scale)
        channels = self.enc_layers[-1].cout
        # The widest layer, plus what stays alive around it: the features and their
        # transformed copy while decoding, and the RGB tile in and out (measured within 5%).
        peak = max(
            _peak_bytes_per_pixel(self.enc_layers, 1, dtype_bytes),
            _peak_bytes_per_pixel(self.dec_layers, scale, dtype_bytes),
        ) + (2 * channels / scale**2 + 6) * dtype_bytes
        return LevelGeometry(
            level=self.level,
            channels=channels,
            stride=scale,
            encoder_radius=r_enc,
            decoder_radius=r_dec,
            macs_per_pixel=macs,
            peak_bytes_per_pixel=peak,
        )

    def load_named(self, part: str, state: dict[str, torch.Tensor]) -> None:
        """Load a ``conv11.weight``-style state dict into ``encoder`` or ``decoder``.

        Keys of layers this architecture does not have (the ``*_aux`` embeddings, used in
        training only) are ignored; a missing or mis-shaped layer is an error.
        """
        seq, index = (self.encoder, self.enc_index) if part == "encoder" else (self.decoder, self.dec_index)
        mapped = {}
        for name, i in index.items():
            for p in ("weight", "bias"):
                key = f"{name}.{p}"
                if key not in state:
                    raise KeyError(f"{part} of level {self.level}: missing {key}")
                mapped[f"{i}.{p}"] = state[key]
        seq.load_state_dict(mapped, strict=True)
