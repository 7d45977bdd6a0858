"""Shared fixtures: where ../shared is, the reference pairs, image helpers.

Two tiers. ``tests/unit`` needs no data (random weights on the real architectures, pure
maths, parsing) and runs anywhere in seconds: ``pytest tests/unit``. Everything else uses
the real weights and images in ``../shared`` (beside the checkout, or ``$STYLIZE_SHARED``),
found by the weights registry through ``$STYLIZE_WEIGHTS_PATH`` (set here if unset). Running
those without the data is a hard error, never a silent skip.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("STYLIZE_SHARED", ROOT.parent / "shared")).resolve()

HAVE_DATA = (SHARED / "weights").is_dir()
UNIT = Path(__file__).resolve().parent / "unit"


def pytest_collection_modifyitems(config, items):
    needs_data = [item for item in items if UNIT not in Path(str(item.fspath)).resolve().parents]
    if needs_data and not HAVE_DATA:
        raise pytest.UsageError(f"test data not found at {SHARED}: put shared/ beside the checkout or set "
                                f"STYLIZE_SHARED ({len(needs_data)} tests need it; 'pytest tests/unit' needs none)")


os.environ.setdefault("STYLIZE_WEIGHTS_PATH", os.pathsep.join([str(SHARED / "weights"), str(SHARED / "images")]))

REFERENCE = SHARED / "reference"
# (name, alpha, expected file)
REFERENCE_CASES = [
    (p.name.split(".")[0], 0.6 if ".alpha0.6." in p.name else 1.0, p)
    for p in sorted(REFERENCE.glob("*expected.png"))
]


def load_rgb(path: Path) -> np.ndarray:
    """(3, H, W) float32 in [0, 1]."""
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.float32).transpose(2, 0, 1) / 255.0


def to_uint8(chw: np.ndarray) -> np.ndarray:
    """The paper's output rounding: round(clamp(x, 0, 1) * 255), as (H, W, 3) uint8."""
    return np.round(np.clip(chw, 0, 1) * 255).astype(np.uint8).transpose(1, 2, 0)


def psnr(a: np.ndarray, b: np.ndarray, peak: float = 255.0) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(peak**2 / mse)


@pytest.fixture(scope="session")
def shared() -> Path:
    return SHARED


@pytest.fixture(scope="session")
def cd16x():
    """A whole-image-capable CPU stylizer on the real 16x weights, shared by tests."""
    from stylize.api import build_stylizer
    from stylize.settings import Settings

    return build_stylizer(Settings(device="cpu", max_memory="4G"))


# Figures a test measured (PSNRs, losses), printed in one section at the end of the run so
# the suite's own output shows how far above its thresholds each result is.
_MEASURED: list[str] = []


@pytest.fixture
def measured(request):
    def record(text: str) -> None:
        _MEASURED.append(f"{request.node.nodeid.split('::', 1)[-1]}: {text}")
    return record


def pytest_terminal_summary(terminalreporter):
    if _MEASURED:
        terminalreporter.section("measured")
        for line in _MEASURED:
            terminalreporter.write_line(line)
