"""Hostile input and faults through the real commands: one ``error:`` line (never a traceback),
no hang, no lost or overwritten file. The fault-free pieces are in ``unit/test_hostile_files.py``;
here are the ones that need the models: the CLI, SIGTERM, full disks in a batch, and the fuzz."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
from PIL import Image
from typer.testing import CliRunner

from conftest import SHARED
from stylize.bench.fuzz import Config, run as fuzz
from stylize.bench.fuzz_corpus import bombs, seed_images
from stylize.bench.fuzz_options import check, run as fuzz_options

STYLE = SHARED / "images/style/sketch.png"
PHOTO = SHARED / "images/content/golden_gate.jpg"


def cli(*args: str):
    from stylize.cli import app

    result = CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)
    return result.exit_code, result.output


def small_photo(path, size=(96, 64)):
    Image.open(PHOTO).convert("RGB").resize(size).save(path)
    return path


def test_an_output_that_is_an_input_is_refused_and_the_input_kept(tmp_path):
    photo, style = small_photo(tmp_path / "photo.png"), small_photo(tmp_path / "style.png", (64, 64))
    (tmp_path / "hard.png").hardlink_to(photo)
    (tmp_path / "soft.png").symlink_to(style)
    before = {p: p.read_bytes() for p in (photo, style)}
    for out in (photo, style, tmp_path / "hard.png", tmp_path / "soft.png", tmp_path / "sub" / ".." / "photo.png"):
        (tmp_path / "sub").mkdir(exist_ok=True)
        code, text = cli(photo, style, "-o", out, "-q")
        assert code == 2 and "is one of the input files" in text and len(text.strip().splitlines()) == 1, text
    assert {p: p.read_bytes() for p in (photo, style)} == before
    mask = tmp_path / "mask.png"  # a mask is an input too
    Image.new("L", (96, 64), 255).save(mask)
    code, text = cli(photo, style, style, "--mask", mask, "-o", mask, "-q")
    assert code == 2 and text.strip() == f"error: {mask}: is one of the input files; choose another output path", text
    assert Image.open(mask).getextrema() == (255, 255)


def test_a_budget_over_the_machines_memory_is_one_line_before_any_work(tmp_path, capsys):
    """--max-memory past RAM and swap (or a container's limit) would be a run the kernel kills
    part-way, leaving its scratch files; it is refused before any file is read."""
    from stylize.cli import main

    photo = small_photo(tmp_path / "photo.png")
    for command in ([photo, STYLE, "-o", tmp_path / "out.png"], ["batch", tmp_path, STYLE, "-o", tmp_path / "outs"]):
        with pytest.raises(SystemExit) as e:
            main([str(a) for a in command] + ["--device", "cpu", "--max-memory", "1000T", "-q"])
        err = capsys.readouterr().err
        assert e.value.code == 2 and len(err.splitlines()) == 1, err
        assert err.startswith("error: --max-memory 1024000.0 GiB is more than this machine has ("), err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["photo.png"]


def test_a_link_loop_anywhere_is_one_line(tmp_path):
    photo, style = small_photo(tmp_path / "photo.png"), small_photo(tmp_path / "style.png", (64, 64))
    loop = tmp_path / "loop.png"
    loop.symlink_to(tmp_path / "loop2.png")
    (tmp_path / "loop2.png").symlink_to(loop)
    for args in ((loop, style), (photo, loop)):
        code, text = cli(*args, "-o", tmp_path / "o.png", "-q")
        assert code == 2 and text.strip() == "error: " + ("content" if args[0] == loop else "style") + \
            f" {loop}: symbolic link loop", (args, text)
        assert not (tmp_path / "o.png").exists()
    code, text = cli(photo, style, "-o", loop, "-q")  # an output replaces the link, as any output does
    assert code == 0 and loop.is_file() and not loop.is_symlink(), text


@pytest.mark.parametrize("name", ["bomb.gif", "bomb.jpg", "bomb.tif"])
def test_bombs_and_broken_files_are_one_line_naming_the_file(tmp_path, name):
    bad = tmp_path / name
    bad.write_bytes(bombs()[name])
    t = time.perf_counter()
    code, text = cli(bad, STYLE, "-o", tmp_path / "o.png")
    assert code == 2 and text.startswith(f"error: content {bad}: ") and "Traceback" not in text, text
    assert len(text.strip().splitlines()) == 1 and time.perf_counter() - t < 5
    dds = tmp_path / "style.dds"
    data = seed_images()["rgba.dds"]
    dds.write_bytes(data[:80] + b"\0\0\0\0" + data[84:])  # Pillow raises NotImplementedError
    code, text = cli(PHOTO, dds, "-o", tmp_path / "o.png")
    assert code == 2 and text.strip() == f"error: style {dds}: unsupported or corrupt image (NotImplementedError: " \
                                          "Unknown pixel format flags 0)", text


# Runs the real command line in a child; ``marker`` appears when it reaches the phase to kill
# (a compute long enough to be interrupted; a write that waits to be).
RES = {"compute": 1024, "write": 128}
KILL_AT = {
    "compute": """
import stylize.engine.stylizer as s
original = s.Stylizer.stylize
def marked(self, *a, **k):
    open(MARKER, "w").close()
    return original(self, *a, **k)
s.Stylizer.stylize = marked
""",
    "write": """
import time, stylize.imageio as io
def slow(tmp, *a):
    tmp.write_bytes(b"half an image")
    open(MARKER, "w").close()
    time.sleep(120)
io._encode = slow
""",
}


@pytest.mark.parametrize("phase", sorted(KILL_AT))
def test_sigterm_in_a_single_run_leaves_no_file(tmp_path, phase):
    out, marker = tmp_path / "out", tmp_path / "marker"
    out.mkdir()
    script = f"MARKER = {str(marker)!r}\n{KILL_AT[phase]}\nfrom stylize.cli import main\n" \
             f"main([{str(PHOTO)!r}, {str(STYLE)!r}, '-o', {str(out / 'o.png')!r}, '--res', '{RES[phase]}', '-q'])"
    child = subprocess.Popen([sys.executable, "-c", script], stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(1200):
            if marker.exists() or child.poll() is not None:
                break
            time.sleep(0.05)
        assert marker.exists(), child.stderr.read()
        child.send_signal(signal.SIGTERM)
        code = child.wait(60)
    finally:
        child.kill()
    err = child.stderr.read()
    assert code == 130 and "interrupted: no output was written" in err and "Traceback" not in err, err
    assert list(out.iterdir()) == []  # no .o.png.XXXX.part.png


def test_a_batch_survives_any_file_in_the_folder(tmp_path):
    from stylize.batch import app

    d = tmp_path / "photos"
    d.mkdir()
    small_photo(d / "good.jpg")
    data = seed_images()
    (d / "broken.dds").write_bytes(data["rgba.dds"][:80] + b"\0\0\0\0" + data["rgba.dds"][84:])
    (d / "cut.avif").write_bytes(data["rgb.avif"][:-10])
    (d / "huge.gif").write_bytes(bombs()["bomb.gif"])
    os.mkfifo(d / "fifo.jpg")
    (d / "loop.png").symlink_to(d / "loop.png")
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(d / "socket"))
    out = tmp_path / "out"
    result = CliRunner().invoke(app, [str(d), str(STYLE), "-o", str(out), "--res", "96", "--style-res", "96", "-q"],
                                catch_exceptions=False)
    server.close()
    text = result.output
    assert result.exit_code == 1 and "done 1, skipped 0, failed 3" in text and "Traceback" not in text, text
    for line in ("failed: broken.dds [sketch]: unsupported or corrupt image (NotImplementedError",
                 "failed: cut.avif [sketch]: truncated or corrupt image", "failed: huge.gif [sketch]: a ",
                 "file cannot hold the 14000x14000 image", "skipped: fifo.jpg: not a file (a FIFO)",
                 "skipped: loop.png: symbolic link loop", "skipped: socket: not a file (a socket)"):
        assert line in text, (line, text)
    records = [json.loads(line) for line in (out / "batch-report.jsonl").read_text().splitlines()]
    assert sorted((r["photo"], r["status"]) for r in records) == [
        ("broken.dds", "failed"), ("cut.avif", "failed"), ("fifo.jpg", "skipped"), ("good.jpg", "done"),
        ("huge.gif", "failed"), ("loop.png", "skipped"), ("socket", "skipped")]


# A disk that fills: every write fails, the report's included. Simulated ENOSPC (monkeypatched
# writes) and a real write failure from the kernel (RLIMIT_FSIZE=0: EFBIG on every write).
FULL_DISK = {
    "enospc": """
import errno, os, stylize.imageio as io
def full(*a, **k):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
real_write = os.write
os.write = lambda fd, data: real_write(fd, data) if fd in (1, 2) else full()
io._encode = full
""",
    "fsize": """
import resource, signal, stylize.batch, stylize.batch_runner  # imported before the limit: no pyc writes
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))
""",
}


@pytest.mark.parametrize("how", sorted(FULL_DISK))
def test_a_batch_into_a_full_disk_fails_every_pair_and_ends(tmp_path, how):
    d, out = tmp_path / "photos", tmp_path / "out"
    d.mkdir()
    for name in ("a.jpg", "b.jpg"):
        small_photo(d / name)
    script = f"{FULL_DISK[how]}\nfrom stylize.cli import main\nmain(['batch', {str(d)!r}, {str(STYLE)!r}, " \
             f"'-o', {str(out)!r}, '--res', '96', '--style-res', '96', '-q'])"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    why = "No space left on device" if how == "enospc" else "File too large"
    text = done.stdout + done.stderr
    assert done.returncode == 1 and "done 0, skipped 0, failed 2" in text and "Traceback" not in text, text
    assert text.count("done 0, skipped 0, failed 2") == 1 and f"is incomplete: {why}" in text, text
    assert f"a.jpg [sketch]: writing {out / 'a__sketch.png'}: cannot write ({why})" in text, text
    assert not [p for p in out.iterdir() if ".part" in p.name]


def test_seeded_fuzz_every_case_is_ok_or_one_clean_line(measured):
    summary = fuzz(400, Config(seed=20260514, timeout=60), workers=2)
    measured(summary.lines()[0])
    assert summary.acceptable, "\n".join(summary.lines())
    assert summary.counts["ok"] > 40 and summary.counts["clean"] > 200


@pytest.mark.parametrize("valid", [True, False], ids=["values-that-must-work", "any-values"])
def test_seeded_option_combinations_end_in_an_output_or_one_error_line(valid, measured):
    """A few cases of ``python -m stylize.bench.fuzz_options``: the real command as a child."""
    bad: list[str] = []
    outcomes = fuzz_options(6, seed=20261124, valid=valid, report=bad.append)
    measured(f"{'valid' if valid else 'any'} values: {dict(outcomes)}")
    assert not bad, "\n".join(bad)
    assert outcomes["ok"] == 6 if valid else outcomes["refused"] >= 3


def test_the_option_fuzz_tells_a_bug_from_a_refusal(tmp_path):
    (tmp_path / "out").mkdir()
    args = ["photo.jpg", "style1.png", "-o", "out/0.png", "-q", "--res", "97"]
    assert check(args, 2, "error: --alpha must be in [0, 1], got 2\n", tmp_path) == "refused"
    assert check(args, 2, "error: --alpha must be in [0, 1], got 2\n", tmp_path, valid=True) == "refused valid values"
    assert check(args, 2, "Traceback (most recent call last):\n  ...\nerror: x\n", tmp_path) == "not one error line"
    assert check(args, 1, "", tmp_path) == "exit 1"
    Image.new("RGB", (96, 72)).save(tmp_path / "out/0.png")
    assert check(args, 0, "", tmp_path) == "output 96x72"
    assert check(args, 2, "error: x\n", tmp_path) == "wrote an output"
    Image.new("RGB", (97, 73)).save(tmp_path / "out/0.png")
    assert check(args, 0, "", tmp_path) == "ok"
    (tmp_path / "out/.1.png.5678.part.png").write_bytes(b"")  # another worker's, being written now
    assert check(args, 0, "", tmp_path) == "ok"
    (tmp_path / "out/.0.png.1234.part.png").write_bytes(b"")
    assert check(args, 0, "", tmp_path).startswith("left")


@pytest.mark.parametrize("args, want", [
    (["--alpha", "abc"], "error: Invalid value for '--alpha': "),
    (["--tile", "x"], "error: Invalid value for '--tile': "),
    (["--no-such-option"], "error: No such option: --no-such-option"),
    ([], None),  # CONTENT and STYLE given; below, STYLE is left out
])
def test_usage_errors_are_one_line_too(args, want, capsys):
    from stylize.cli import main

    argv = ["photo.jpg", "painting.jpg", *args] if want else ["photo.jpg"]
    with pytest.raises(SystemExit) as e:
        main(argv)
    err = capsys.readouterr().err
    first = want or "error: Missing argument 'STYLE...'"
    assert e.value.code == 2 and err.startswith(first) and err.endswith("(see 'stylize --help')\n"), err
    assert len(err.splitlines()) == 1


def test_a_mistyped_command_is_named_and_version_is_printed(capsys):
    from stylize.cli import main

    with pytest.raises(SystemExit) as e:
        main(["bach", "photos/", "painting.jpg"])
    assert e.value.code == 2
    assert capsys.readouterr().err == "error: content bach: no such file (did you mean 'stylize batch'?)\n"
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out.startswith("stylize ")
