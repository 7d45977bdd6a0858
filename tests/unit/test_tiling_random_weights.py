"""Data-free exactness: tiled output equals whole-image output on the real architectures
with random weights, for every level, odd sizes, both transforms, and both pass-2 paths
(features cached from pass 1 or re-encoded). The planner and stylizer never see the values,
so random weights test the same tiling as the real ones, in seconds and without ../shared."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from stylize.engine.memory import LevelPlan
from stylize.engine.stylizer import Stylizer
from stylize.export.torch_backend import TorchBackend
from stylize.models.architecture import output_bytes
from stylize.models.zoo import load_levels

LEVELS = (5, 4, 3, 2, 1)


@pytest.fixture(scope="module")
def backend():
    torch.manual_seed(0)
    modules = load_levels("cd16x", LEVELS, pretrained=False)
    for m in modules.values():  # He initialisation keeps activations alive through the ReLUs
        for conv in (c for c in m.modules() if isinstance(c, torch.nn.Conv2d)):
            torch.nn.init.kaiming_normal_(conv.weight, nonlinearity="relu")
            torch.nn.init.constant_(conv.bias, 0.05)
    return TorchBackend(modules, "cpu")


@pytest.fixture(scope="module")
def pair():
    rng = np.random.default_rng(3)
    content = rng.random((3, 171, 203), dtype=np.float32)  # no side a multiple of 16
    style = rng.random((3, 97, 130), dtype=np.float32)
    return content, style


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(1.0 / mse)


@pytest.mark.parametrize("transform", ["wct", "adain"])
def test_tiled_equals_whole(backend, pair, transform):
    content, style = pair
    whole = Stylizer(backend, max_memory="4G").stylize(content, style, transform=transform)
    tiled = Stylizer(backend, tile=48, max_memory="4G").stylize(content, style, transform=transform)
    assert all(p.tile is None for p in whole.report.plans) and all(p.tile for p in tiled.report.plans)
    assert whole.image.std() > 0.01, "degenerate output: the test would prove nothing"
    assert psnr(tiled.image, whole.image) >= 70.0


def test_recomputed_features_equal_cached(backend, pair, monkeypatch):
    content, style = pair
    cached = Stylizer(backend, tile=64, max_memory="4G").stylize(content, style)
    import stylize.engine.stylizer as st

    real = st.plan_level
    monkeypatch.setattr(st, "plan_level", lambda *a, **k: LevelPlan(**{**real(*a, **k).__dict__,
                                                                        "cache_features": False}))
    recomputed = Stylizer(backend, tile=64, max_memory="4G").stylize(content, style)
    assert not any(p.cache_features for p in recomputed.report.plans)
    assert psnr(recomputed.image, cached.image) >= 70.0


def test_stroke_scale_tiled_equals_whole(backend, pair):
    """Levels 3, 2, 1 (the deep levels would see fewer pixels than channels at this size, a
    rank-deficient covariance no real image has): level 3 at 86x102, levels 2, 1 at full size."""
    content, style = pair
    whole = Stylizer(backend, levels=(3, 2, 1), max_memory="4G").stylize(content, style, stroke_scale=2)
    tiled = Stylizer(backend, levels=(3, 2, 1), tile=32, max_memory="4G").stylize(content, style, stroke_scale=2)
    assert whole.report.working_size == (86, 102) and whole.report.stroke_factor == 2
    assert any(p.tile for p in tiled.report.plans)
    assert psnr(tiled.image, whole.image) >= 70.0


def test_the_cpu_backend_steps_through_each_layer_as_the_module_does_and_sizes_each_output(backend):
    """The backend runs the stacks layer by layer (to check the memory ceiling before each):
    bit for bit what the modules give, and ``output_bytes`` is what each layer allocates (a 3x3
    conv's output is smaller than its padded input by its border, so the estimate is an upper bound)."""
    x = torch.rand(1, 3, 61, 75).contiguous(memory_format=torch.channels_last)
    for level in LEVELS:
        m = backend.modules[level]
        with torch.no_grad():
            f = backend.encode(level, x)
            assert torch.equal(f, m.encode(x).float()) and torch.equal(backend.decode(level, f), m.decode(f).float())
            for stack, y in ((m.encoder, x), (m.decoder, f.contiguous(memory_format=torch.channels_last))):
                for layer in stack:
                    estimate = output_bytes(layer, y)
                    inplace = isinstance(layer, torch.nn.ReLU) and layer.inplace
                    out = layer(y.clone() if inplace else y)
                    real = 0 if inplace else out.nbytes
                    if isinstance(layer, torch.nn.Conv2d) and layer.kernel_size == (3, 3):
                        h, w = y.shape[-2:]
                        assert real <= estimate <= real * h * w / ((h - 2) * (w - 2)), layer
                    else:
                        assert estimate == real, layer
                    y = out


def test_a_cpu_run_checks_its_budget_before_every_layer_and_only_while_tiles_run(backend, pair, monkeypatch):
    import stylize.engine.memory as memory
    from stylize.engine.stylizer import SAFETY

    ceilings = []  # the RSS each step may start from: the run's ceiling less the step's output
    monkeypatch.setattr(memory, "settle", ceilings.append)
    content, style = pair
    Stylizer(backend, tile=64, max_memory="1G").stylize(content, style)
    layers = sum(len(m.encoder) + len(m.decoder) for m in backend.modules.values())
    assert len(ceilings) > layers and max(ceilings) == (1 - SAFETY) * 2 ** 30  # an in-place ReLU asks for 0
    assert min(ceilings) < max(ceilings) - 1e5 and memory._ceiling.get() is None


def test_a_budget_too_small_for_the_content_fails_before_any_style_is_encoded(backend, pair, monkeypatch):
    """Every plan is made before any compute: a style's statistics (minutes for a 16K scan) are
    not taken for a run whose content cannot fit."""
    from stylize.engine.memory import BudgetTooSmall

    encoded = []
    real = backend.encode
    monkeypatch.setattr(backend, "encode", lambda level, x: encoded.append(level) or real(level, x))
    content, style = pair
    big = np.ascontiguousarray(np.tile(content, (1, 12, 12)))  # 2052x2436: no 300-MiB plan holds it
    with pytest.raises(BudgetTooSmall, match="least budget"):
        Stylizer(backend, max_memory="300M").stylize(big, style)
    assert encoded == []
    Stylizer(backend, max_memory="1G").stylize(content, style)
    assert encoded, "the counter sees the style's and content's encodes"
