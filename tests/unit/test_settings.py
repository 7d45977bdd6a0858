"""Data-free: settings are parsed and validated when made, before any file or model."""
from __future__ import annotations

import pytest
from PIL import Image

from stylize.engine import memory
from stylize.engine.errors import UserError
from stylize.settings import Settings, SettingsError, parse_levels


def test_values_are_parsed():
    s = Settings(resolution="8k", style_resolution="512", levels="5,3,1", max_memory="1.5G")
    assert (s.output_px, s.style_px, s.levels, s.memory_bytes) == (7680, 512, (5, 3, 1), 3 << 29)
    assert Settings().levels == (5, 4, 3, 2, 1) and Settings().output_px is None


@pytest.mark.parametrize("kwargs,message", [
    ({"alpha": 1.5}, "--alpha"), ({"transform": "magic"}, "transform"), ({"levels": "6,1"}, "levels"),
    ({"levels": "3,3"}, "levels"), ({"resolution": "huge"}, "--res"), ({"max_memory": "0"}, "positive"),
    ({"max_memory": "lots"}, "--max-memory"), ({"model": "nope"}, "unknown model"),
    ({"backend": "tflite"}, "unknown backend"), ({"tile": 4}, "--tile"), ({"max_pixels": 0}, "--max-pixels"),
    ({"quality": 0}, "--quality"), ({"bits": 12}, "--bits"), ({"weights_dir": "/no/such/folder"}, "not a folder"),
    ({"half": True, "device": "cpu"}, "half"), ({"half": True, "device": "cpu:0"}, "half"),
    ({"device": "gpu"}, "unknown device 'gpu'"), ({"device": "CPU"}, "unknown device"),
    ({"device": "mps"}, "unknown device 'mps': use auto, cpu, cuda or cuda:N"), ({"device": "meta"}, "unknown device"),
    ({"mask": ""}, "--mask is an empty path"), ({"mask": "/no/such/mask.png"}, "--mask /no/such/mask.png: no such file"),
])
def test_bad_values_are_one_line_errors(kwargs, message):
    with pytest.raises(SettingsError, match=message) as e:
        Settings(**kwargs)
    assert "\n" not in str(e.value)


def test_levels_parse():
    assert parse_levels("5, 4") == (5, 4) and parse_levels((2, 1)) == (2, 1)


def test_settings_do_not_change_pillow_globally(tmp_path):
    """Reading an image must not switch off Pillow's decompression-bomb limit for the process."""
    from stylize.imageio import read_image

    before = Image.MAX_IMAGE_PIXELS
    Image.new("RGB", (20, 10)).save(tmp_path / "a.png")
    read_image(tmp_path / "a.png")
    assert Image.MAX_IMAGE_PIXELS == before


def test_values_from_python_are_read_as_the_command_line_reads_them():
    s = Settings(alpha="0.5", tile=64.0, quality=95.0, bits="16", max_pixels=10**12, resolution=7680.0)
    assert (s.alpha, s.tile, s.quality, s.bits, s.max_pixels, s.output_px) == (0.5, 64, 95, 16, 10**12, 7680)
    assert type(s.tile) is int and type(s.quality) is int


@pytest.mark.parametrize("kwargs,message", [
    ({"alpha": None}, "--alpha must be a number, got None"), ({"alpha": True}, "--alpha must be a number"),
    ({"alpha": float("nan")}, r"--alpha must be in \[0, 1\]"), ({"tile": 64.5}, "--tile must be a whole number"),
    ({"max_pixels": 1.5}, "--max-pixels must be a whole number"), ({"quality": [1]}, "--quality must be a number"),
    ({"resolution": 0}, "--res: bad resolution '0'"), ({"resolution": -1}, "--res: bad resolution"),
    ({"resolution": 7680.5}, "--res: bad resolution"), ({"scratch": 123}, "--scratch must be a path"),
    ({"mask": 1}, "--mask must be a path"), ({"half": "yes"}, "--half is True or False"),
])
def test_values_from_python_that_the_command_line_could_not_give_are_one_line_errors(kwargs, message):
    """Not a TypeError from deep inside, nor a resolution of 0 px that reaches the resampler."""
    with pytest.raises(SettingsError, match=message):
        Settings(**kwargs)


def test_a_budget_the_process_has_spent_leaves_small_decodes_to_the_planners_error(monkeypatch):
    """A budget below what the interpreter holds must not refuse a 729x512 JPEG's decode (the
    planner says which budget works); a decode past the floor is checked against what is left."""
    from stylize.settings import DECODE_FLOOR

    assert Settings(max_memory="1M").budget_left() == 0
    assert Settings(max_memory="1M").decode_limit() == DECODE_FLOOR
    monkeypatch.setattr(memory, "host_memory", lambda: memory.HostMemory(1 << 40, "of RAM"))
    assert Settings(max_memory="64G").decode_limit() > 60 << 30


def test_a_cpu_budget_over_the_hosts_memory_is_refused_and_the_default_fits_a_small_host(monkeypatch):
    """A budget the host cannot give would be a run the kernel kills part-way (its scratch files
    left behind): one line naming what the host has; a 1-GiB container gets a default inside it."""
    monkeypatch.setattr(memory, "host_memory", lambda: memory.HostMemory(1 << 30, "under its container's limit"))
    with pytest.raises(UserError, match=r"--max-memory 2\.0 GiB is more than this machine has \(1\.0 GiB under "
                                        r"its container's limit\).*--max-memory 768M") as e:
        Settings(max_memory="2G", device="cpu")
    assert "\n" not in str(e.value)
    assert Settings(max_memory="1G", device="cpu").budget_bytes == 1 << 30
    assert Settings(device="cpu").budget_bytes == 768 << 20
    monkeypatch.setattr(memory, "host_memory", lambda: memory.HostMemory(64 << 30, "of RAM"))
    assert Settings(device="cpu").budget_bytes == 2 << 30
