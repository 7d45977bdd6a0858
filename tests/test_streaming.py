"""Images beyond RAM: the disk store is exact enough, its scratch files never outlive a run,
and budgets or disks too small are one-line errors before any compute."""
from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import REFERENCE, REFERENCE_CASES, SHARED, psnr
from stylize.allocator import tuned_environ
from stylize.api import stylize_file
from stylize.settings import Settings

PHOTO = SHARED / "images/content/cornell.jpg"
STYLE = SHARED / "images/style/brushstrokes.jpg"


def run_cli(*args) -> tuple[int, str]:
    from typer.testing import CliRunner

    from stylize.cli import app

    result = CliRunner().invoke(app, [str(a) for a in args])
    return result.exit_code, result.output


@pytest.mark.parametrize("tile", [None, 256], ids=["whole", "tile256"])
@pytest.mark.parametrize("name,alpha,expected", REFERENCE_CASES, ids=[c[2].name for c in REFERENCE_CASES])
def test_reference_pairs_through_the_disk_store(name, alpha, expected, tile, tmp_path, measured):
    out = tmp_path / "out.png"
    settings = Settings(store="disk", scratch=tmp_path, tile=tile, alpha=alpha, device="cpu", max_memory="4G",
                        stroke_scale="native")
    result = stylize_file(REFERENCE / f"{name}.content.png", REFERENCE / f"{name}.style.png", out, settings)
    if tile:
        assert any(p.tile == tile for p in result.report.plans), "tiled mode did not tile"
    got = psnr(np.asarray(Image.open(out).convert("RGB")), np.asarray(Image.open(expected).convert("RGB")))
    measured(f"{got:.2f} dB vs the paper's output, through scratch files")
    assert got >= 45.0
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"], "scratch files were left behind"


def test_budget_below_the_floor_tile_names_the_least_budget(tmp_path):
    """Each run a process of its own, as a user runs it: the budget counts the whole process, so
    a run inside this one would start from whatever the tests before it left resident."""
    def cli(*args) -> tuple[int, str]:
        r = subprocess.run([sys.executable, "-m", "stylize.cli", *map(str, args)], capture_output=True, text=True)
        return r.returncode, r.stderr

    code, text = cli(PHOTO, STYLE, "-o", tmp_path / "o.png", "--max-memory", "300M", "--store", "disk",
                     "--scratch", tmp_path, "--stroke-scale", "native")
    assert code == 2 and text.startswith("error: --max-memory") and "least budget that works" in text, text
    assert len(text.strip().splitlines()) == 1
    least = int(text.split("--max-memory ")[-1].rstrip("M)\n"))
    code, text = cli(PHOTO, STYLE, "-o", tmp_path / "o.png", "--max-memory", f"{least + 64}M", "--store",
                     "disk", "--scratch", tmp_path, "--stroke-scale", "native", "--res", "400")
    assert code == 0, text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["o.png"]


def test_scratch_without_room_fails_before_compute(tmp_path, monkeypatch):
    import stylize.engine.store as store

    monkeypatch.setattr(store, "free_bytes", lambda folder: 1 << 20)
    started = []
    monkeypatch.setattr("stylize.engine.stylizer.Stylizer.stylize", lambda *a, **k: started.append(1))
    code, text = run_cli(PHOTO, STYLE, "-o", tmp_path / "o.png", "--store", "disk", "--scratch", tmp_path)
    assert code == 2 and "needs" in text and "free" in text and not started, text
    assert list(tmp_path.iterdir()) == []


def test_disk_full_mid_run_is_one_line_and_leaves_nothing(tmp_path, monkeypatch):
    real, calls = os.pwrite, []

    def pwrite(fd, data, offset):
        calls.append(1)
        if len(calls) > 400:
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd, data, offset)

    monkeypatch.setattr(os, "pwrite", pwrite)
    code, text = run_cli(PHOTO, STYLE, "-o", tmp_path / "o.png", "--store", "disk", "--scratch", tmp_path,
                         "--res", "600")
    assert code == 2 and "scratch folder" in text and "is full" in text, text
    assert list(tmp_path.iterdir()) == [], "a partial output or scratch file was left"


def test_jpeg_limits_are_checked_before_compute(tmp_path):
    code, text = run_cli(PHOTO, STYLE, "-o", tmp_path / "o.jpg", "--res", "70000", "--max-pixels", "5000000000")
    assert code == 2 and "65500" in text, text
    # A thin strip whose output fits in RAM is refused before compute too (not by libjpeg after
    # it), at libjpeg's own limit, 65500, not the format's 65535.
    Image.fromarray(np.full((3, 500, 3), 128, np.uint8)).save(tmp_path / "strip.png")
    code, text = run_cli(tmp_path / "strip.png", STYLE, "-o", tmp_path / "o.jpg", "--res", "65501")
    assert code == 2 and text.strip() == (f"error: {tmp_path / 'o.jpg'}: JPEG cannot hold 65501x393 (sides up to "
                                          "65500 px); write .png or .tif"), text
    assert sorted(p.name for p in tmp_path.iterdir()) == ["strip.png"]


def open_scratch_files(pid: int, scratch: Path) -> list[str]:
    """The scratch files a process holds open: nameless ("(deleted)") files of ``scratch``."""
    held = []
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:  # closed meanwhile
            continue
        if target.startswith(f"{scratch}/") and target.endswith(" (deleted)"):
            held.append(target)
    return held


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs Linux /proc to see a run's open scratch files")
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL], ids=["SIGINT", "SIGTERM", "SIGKILL"])
def test_interrupt_or_kill_leaves_no_scratch_and_no_output(tmp_path, sig):
    """Scratch files have no name from the moment they are made, so nothing is left in the scratch
    folder however the run ends: a SIGKILL (the out-of-memory killer's signal) included."""
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    env = {**os.environ, "STYLIZE_NO_REEXEC": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "stylize.cli", str(PHOTO), str(STYLE), "-o", str(tmp_path / "o.png"),
                             "--store", "disk", "--scratch", str(scratch), "--res", "2000", "-q"],
                            env=env, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None and len(open_scratch_files(proc.pid, scratch)) < 2:
        time.sleep(0.05)
    assert len(open_scratch_files(proc.pid, scratch)) >= 2, "the run never held its scratch files"
    assert list(scratch.iterdir()) == [], "a scratch file has a name while the run holds it"
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode != 0, err
    assert list(scratch.iterdir()) == [], "scratch files left behind"
    assert not (tmp_path / "o.png").exists()
    if sig != signal.SIGKILL:  # a killed run cannot remove its temporary output; the next run to o.png does
        assert not [p for p in tmp_path.iterdir() if p.name.startswith(".o.png")], "temporary output left behind"


@pytest.mark.parametrize("tile,preserve", [(None, "off"), (192, "style")], ids=["whole", "tiled-recoloured"])
def test_a_style_too_large_for_ram_is_read_into_a_scratch_file_with_the_same_output(tile, preserve, tmp_path,
                                                                                     monkeypatch):
    """A style over a quarter of the budget (a 16K scan) is filled into a scratch store by rows
    and its statistics read from there, whole or by tiles, recoloured strip by strip: the output
    is the one a style in RAM gives, pixel for pixel, and the scratch folder is gone after."""
    import stylize.api as api
    from stylize.engine import store

    made = []
    real_disk = store.DiskStore.__init__
    monkeypatch.setattr(store.DiskStore, "__init__", lambda self, *a, **k: (made.append(a), real_disk(self, *a, **k))[1])
    (tmp_path / "scratch").mkdir()
    settings = Settings(resolution=384, style_resolution=320, tile=tile, preserve_color=preserve, device="cpu",
                        scratch=tmp_path / "scratch")
    stylize_file(PHOTO, STYLE, tmp_path / "ram.png", settings)
    assert made == []
    monkeypatch.setattr(api, "STYLE_RAM_SHARE", 0.0)
    stylize_file(PHOTO, STYLE, tmp_path / "disk.png", settings)
    recoloured = [(3, 240, 320)] if preserve == "style" else []  # beside it, not in RAM
    assert [a[1:4] for a in made] == [(3, 240, 320)] + recoloured  # the style, at --style-res, and nothing else
    assert np.array_equal(np.asarray(Image.open(tmp_path / "ram.png")), np.asarray(Image.open(tmp_path / "disk.png")))
    assert list((tmp_path / "scratch").iterdir()) == []


RUN_BESIDE = """
import json, sys
import numpy as np
ballast = np.ones(int(sys.argv[1]) << 20, np.uint8)  # the caller's own memory, not given to the engine
from stylize import Settings, stylize_file
result = stylize_file(sys.argv[2], sys.argv[3], sys.argv[4],
                      Settings(resolution="1400", max_memory="1G", stroke_scale="native", device="cpu"))
print(json.dumps([p.tile for p in result.report.plans]))
"""


def test_a_run_plans_the_same_tiles_and_bytes_whatever_small_memory_its_process_holds_and_less_beside_more(tmp_path):
    """The tile side decides the last bit of the output, so a plan made from the RSS of the
    moment made the same command write different bytes (two 8K runs 7 MiB apart planned 1616
    and 1613 px tiles). The plan charges a fixed runtime instead; only a process holding more
    than that (here 300 MiB of its own) plans smaller tiles, so the budget still holds. Each
    run is a child with the command's allocator settings (the API without them: the
    api_memory bench's test)."""
    def run(ballast: int) -> tuple[list, bytes]:
        out = tmp_path / f"beside{ballast}.png"
        r = subprocess.run([sys.executable, "-c", RUN_BESIDE, str(ballast), PHOTO, STYLE, out],
                           capture_output=True, text=True, env=tuned_environ())  # as the command runs
        assert r.returncode == 0, r.stderr
        return json.loads(r.stdout), out.read_bytes()

    lean, lean_bytes = run(0)
    assert any(lean), f"the case must tile: {lean}"
    assert run(48) == (lean, lean_bytes)
    heavy, _ = run(300)
    assert all(h is not None and (t is None or h < t) for h, t in zip(heavy, lean)), (heavy, lean)
