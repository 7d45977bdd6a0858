"""The benchmark suite end to end on a tiny matrix: what it writes, that failures are rows,
and that its FLOP accounting matches the architecture worked out by hand.

Nothing here asserts a speed or a memory size: those are what the suite measures.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent


def run_bench(out: Path, *args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "bench", "--out", str(out), "--devices", "cpu", "--repeats", "1", "--warmup", "0",
           *args]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=os.environ.copy(), timeout=300)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """res 256, levels 2 and 1, torch whole and tiled, and the paper pipeline, on the CPU."""
    out = tmp_path_factory.mktemp("bench")
    proc = run_bench(out, "--res", "256", "--levels", "2,1", "--backends", "torch", "--modes", "whole,tiled",
                     "--tile", "64")
    assert proc.returncode == 0, proc.stderr[-2000:]
    return out, json.loads((out / "results.json").read_text()), proc.stdout


def _cell(data: dict, mode: str) -> dict:
    (cell,) = [c for c in data["cells"] if c["spec"]["mode"] == mode]
    return cell["result"]


def test_tiny_matrix_writes_json_markdown_and_plots(tiny):
    out, data, stdout = tiny
    assert sorted(c["spec"]["mode"] for c in data["cells"]) == ["paper", "tiled", "whole"]
    for c in data["cells"]:
        r = c["result"]
        assert r["status"] == "ok", r
        assert r["median_s"] > 0 and len(r["times_s"]) == 1
        assert r["peak_rss_bytes"] > 50 * 2**20  # a child that imported torch, measured by wait4
        assert r["content_hw"][1] == 256 and r["style_hw"] == [512, 512]
    whole, tiled, paper = _cell(data, "whole"), _cell(data, "tiled"), _cell(data, "paper")
    assert whole["tiles"] == 2  # one per level
    assert tiled["tiles"] > 2 * 2  # 64 px tiles on a 256 x 144 image: several per level
    assert paper["speedup_vs_paper"] == pytest.approx(1.0) and paper["memory_vs_paper"] == pytest.approx(1.0)
    for r in (whole, tiled):
        assert r["speedup_vs_paper"] == pytest.approx(paper["median_s"] / r["median_s"])
        assert r["memory_vs_paper"] == pytest.approx(r["peak_rss_bytes"] / paper["peak_rss_bytes"])
    assert data["machine"]["cores"] == os.cpu_count() and "torch" in data["machine"]["versions"]

    md = (out / "bench.md").read_text()
    assert "| res | MP | model | backend | mode |" in md and md.count("| 256 |") == 3
    assert "python -m stylize.bench --res 256" in md and "time_vs_mp.png" in md
    assert "| cd16x | 2 | 3,897 | 3,888 | 7,785 |" in md  # the per-level compute table
    assert "| 256 |" in stdout  # the table is printed too
    for name in ("time_vs_mp.png", "memory_vs_mp.png"):
        with Image.open(out / name) as im:
            assert im.format == "PNG" and im.width >= 600 and im.height >= 400
    text = (out / "results.json").read_text() + md
    assert str(ROOT) not in text and sys.prefix not in text and str(out) not in text


def test_gflops_match_a_hand_count(tiny):
    """cd16x, per pixel of the level's input (3x3 convs: 9*cin*cout, conv0 1x1: 3*3):
    level 1: encoder conv0 9 + conv11 3->24 648 = 657, decoder conv11 24->3 648;
    level 2: encoder 9 + 3->16 432 + 16->16 2304 + (16->32 4608)/4 = 3897,
             decoder (32->16 4608)/4 + 16->16 2304 + 16->3 432 = 3888.
    Content goes through encoder and decoder, style through the encoder, 2 FLOP per MAC."""
    _, data, _ = tiny
    for mode in ("whole", "tiled", "paper"):
        r = _cell(data, mode)
        content = r["content_hw"][0] * r["content_hw"][1]
        style = r["style_hw"][0] * r["style_hw"][1]
        flop = 2 * ((657 + 648 + 3897 + 3888) * content + (657 + 3897) * style)
        assert r["gflops"] == pytest.approx(flop / r["median_s"] / 1e9, rel=1e-9)


def test_out_of_memory_timeout_and_unavailable_are_results(tmp_path):
    """A cell capped at 16 MB of address space runs out of memory inside the child; the suite
    records it (and a backend that cannot run on this device) and still writes its report."""
    proc = run_bench(tmp_path, "--res", "256", "--levels", "1", "--backends", "torch,tensorrt", "--modes", "tiled",
                     "--no-baseline", "--memory-cap", "16M")
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads((tmp_path / "results.json").read_text())
    status = {c["spec"]["backend"]: c["result"] for c in data["cells"]}
    assert status["torch"]["status"] == "oom", status["torch"]
    assert status["tensorrt"] == {**status["tensorrt"], "status": "skipped", "reason": "tensorrt runs on CUDA only"}
    md = (tmp_path / "bench.md").read_text()
    assert "OOM" in md and "skipped: tensorrt runs on CUDA only" in md
    assert (tmp_path / "time_vs_mp.png").is_file()

    proc = run_bench(tmp_path, "--res", "256", "--levels", "1", "--backends", "torch", "--modes", "whole",
                     "--no-baseline", "--timeout", "0.5", "--append")
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads((tmp_path / "results.json").read_text())
    by_id = {c["id"]: c["result"] for c in data["cells"]}
    assert by_id["cd16x|torch|whole|cpu|256"]["status"] == "timeout"
    assert by_id["cd16x|torch|tiled|cpu|256"]["status"] == "oom"  # kept from the first run (--append)
    assert len(data["runs"]) == 2


def test_stylize_bench_is_the_same_command(capsys):
    from stylize.cli import main

    with pytest.raises(SystemExit) as e:
        main(["bench", "--help"])
    assert e.value.code == 0
    help_text = capsys.readouterr().out
    for option in ("--res", "--models", "--backends", "--modes", "--devices", "--max-baseline-res", "--out"):
        assert option in help_text


def test_bad_options_are_one_line_before_any_cell(tmp_path, capsys):
    from stylize.cli import main

    (tmp_path / "file").write_bytes(b"x")
    (tmp_path / "notes.jpg").write_text("not an image")
    cases = [(["--memory-cap", "xyz"], "--memory-cap: not a memory size: 'xyz'"),
             (["--max-memory", "xyz"], "--max-memory: not a memory size: 'xyz'"),
             (["--max-memory", "0"], "--max-memory must be positive"),
             (["--content", str(tmp_path / "nope.jpg")], f"content {tmp_path / 'nope.jpg'}: no such file"),
             (["--style", str(tmp_path / "notes.jpg")], f"style {tmp_path / 'notes.jpg'}: "),
             (["--max-baseline-res", "foo"], "--max-baseline-res: bad resolution 'foo'"),
             (["--res", "256,huge"], "--res: bad resolution 'huge'"),
             (["--style-res", "abc"], "--style-res: bad resolution 'abc'"),
             (["--timeout", "-1"], "--timeout must be positive"),
             (["--devices", "gpu"], "--devices: unknown device 'gpu'"),  # was a matrix of failed cells, exit 0
             (["--out", str(tmp_path / "file")], f"{tmp_path / 'file'}: not a folder")]
    for args, want in cases:
        out = ["--out", str(tmp_path / "out")] if "--out" not in args else []
        with pytest.raises(SystemExit) as e:
            main(["bench", "--res", "256", "--devices", "cpu", "-q", *out, *args])
        err = capsys.readouterr().err
        assert e.value.code == 2 and err.startswith(f"error: {want}") and len(err.splitlines()) == 1, (args, err)
        assert not (tmp_path / "out").exists(), args


def test_formats_bench_makes_its_inputs_in_a_child_and_measures_each_format(tmp_path):
    """``python -m stylize.bench.formats_memory`` end to end at a small size: its inputs are made
    by a child process (:func:`call_child`, from a module run as ``__main__``), every format is
    stylized by the CLI as a child, and Pillow's float decode is measured beside it."""
    proc = subprocess.run([sys.executable, "-m", "stylize.bench.formats_memory", "--size", "160x96", "--formats",
                           "png,gif", "--res", "128", "--out", str(tmp_path)], capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert [r["format"] for r in rows if r["returncode"] == 0] == ["png", "gif"], rows
    assert all(r["peak_rss_gib"] > 0.05 and r["pillow_floats_peak_rss_gib"] > 0.01 for r in rows), rows
    assert json.loads((tmp_path / "formats_memory.json").read_text())["rows"] == rows


def test_api_memory_bench_runs_the_api_with_both_allocators_and_they_write_the_same_bytes(tmp_path):
    """``python -m stylize.bench.api_memory`` end to end at a small size: the API in a child with
    glibc as imported and with the command line's settings. Their RSS differs by ~150 MiB, and
    the plan (here the 2048-px style's tiles) must not: the two outputs are the same bytes."""
    proc = subprocess.run([sys.executable, "-m", "stylize.bench.api_memory", "--res", "600", "--max-memory", "700M",
                           "--held", "0", "--out", str(tmp_path)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert [r["allocator"] for r in rows] == ["as imported", "command line's"], rows
    assert all(r["returncode"] == 0 and r["peak_rss_mib"] > 100 for r in rows), rows
    assert rows[0]["tiles"] == rows[1]["tiles"] and rows[0]["sha256"] == rows[1]["sha256"], rows
    assert json.loads((tmp_path / "api_memory.json").read_text())["rows"] == rows


def test_a_childs_peak_rss_is_its_own_not_its_parents():
    """The kernel carries a process's peak RSS across exec, and a child starts as a copy of its
    parent: spawned from this test holding 400 MiB, a child that touches 100 MiB must still be
    measured at about 100 MiB plus its interpreter (it was measured at the parent's 400+)."""
    import numpy as np

    from stylize.bench.measure import run_child

    held = np.ones(400 << 20, np.uint8)  # touched: resident in this process
    r = run_child([sys.executable, "-c", "import numpy as np; a = np.ones(100 << 20, np.uint8); print(int(a[-1]))"])
    assert r.ok and r.output_tail.strip() == "1", r.output_tail
    assert 100 << 20 < r.peak_rss_bytes < held.nbytes, r.peak_rss_bytes / 2**20
    slow = run_child([sys.executable, "-c", "import time; time.sleep(60)"], timeout=1)
    assert slow.timed_out and slow.returncode == -9 and slow.wall_s < 30


def test_the_batch_benchs_shell_loop_runs_the_command_it_compares_with(tmp_path):
    """The loop of single ``stylize`` commands once ran a module that had moved: every pair
    failed and the comparison divided by zero."""
    from conftest import SHARED
    from stylize.bench.batch_throughput import loop_script

    photo = SHARED / "images/content/golden_gate.jpg"
    style = SHARED / "images/style/sketch.png"
    script = loop_script([photo], [style], tmp_path / "loop", "64", [])
    run = subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=300)
    assert run.returncode == 0 and "failed" not in run.stdout, run.stdout + run.stderr
    assert [p.name for p in (tmp_path / "loop").iterdir()] == ["golden_gate__sketch.png"]
