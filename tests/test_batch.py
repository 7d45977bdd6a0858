"""``stylize batch``: a real folder of small real photos with bad files mixed in, run through
the CLI in-process; resume, overwrite, cached style statistics, write failures and Ctrl-C
(a real SIGINT delivered mid-batch)."""
from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from conftest import SHARED
from stylize.batch import app
from stylize.batch_records import LOCK_NAME, BatchInterrupted
from stylize.batch_runner import Batch, run_batch
from stylize.api import stylize_file
from stylize.settings import Settings
from stylize.imageio import ImageError
from stylize.engine.stylizer import Stylizer

CONTENT = SHARED / "images/content"
STYLES = [SHARED / "images/style/sketch.png", SHARED / "images/style/brushstrokes.jpg"]
SMALL = ["--res", "128", "--style-res", "128", "-q"]
OPTS = Settings(resolution=128, style_resolution=128)
GOOD = ["a.jpg", "b.png", "nested/deeper/c.jpg", "nested/photo_without_extension"]


def photo(src: str, dest, size, fmt="JPEG"):
    dest.parent.mkdir(parents=True, exist_ok=True)
    Image.open(CONTENT / src).convert("RGB").resize(size).save(dest, format=fmt)
    return dest


@pytest.fixture
def folder(tmp_path):
    """Four good photos (one nested two deep, one with no extension), a truncated JPEG, a text
    file named .jpg, a non-image that must be ignored and a hidden file that must be skipped."""
    d = tmp_path / "photos"
    photo("golden_gate.jpg", d / "a.jpg", (150, 100))
    photo("sailboat.jpg", d / "b.png", (90, 120), "PNG")
    photo("lenna.jpg", d / "nested/deeper/c.jpg", (100, 100))
    photo("brad_pitt.jpg", d / "nested/photo_without_extension", (120, 80))
    data = (CONTENT / "cornell.jpg").read_bytes()
    (d / "cut.jpg").write_bytes(data[: len(data) // 3])
    (d / "notes.jpg").write_text("shot list: not a JPEG at all")
    (d / "readme.txt").write_text("not an image, not named like one")
    photo("avril.jpg", d / "nested/._c.jpg", (64, 64))
    return d


def run(*args):
    result = CliRunner().invoke(app, [str(a) for a in args], catch_exceptions=False)
    return result.exit_code, result.output


def outputs(out):
    return sorted(str(p.relative_to(out)) for p in out.rglob("*")
                  if p.is_file() and p.suffix != ".jsonl" and p.name != LOCK_NAME)


def expected_outputs(fmt="png"):
    return sorted(f"{os.path.splitext(g)[0]}__{s.stem}.{fmt}" for g in GOOD for s in STYLES)


def no_partials(out):
    """Temporary or hidden files, but the batch lock (kept: deleting it would break the lock)."""
    return [p for p in out.rglob("*") if ".part" in p.name or p.name.startswith(".") and p.name != LOCK_NAME]


def count_calls(monkeypatch, cls, name):
    calls = []
    original = getattr(cls, name)

    def counted(self, *a, **k):
        calls.append(a)
        return original(self, *a, **k)

    monkeypatch.setattr(cls, name, counted)
    return calls


def test_mixed_folder_resume_and_overwrite(folder, tmp_path, monkeypatch):
    out = tmp_path / "out"
    stats = count_calls(monkeypatch, Stylizer, "style_statistics")
    code, text = run(folder, *STYLES, "-o", out, *SMALL)
    assert code == 1, text
    assert outputs(out) == expected_outputs()
    assert len(stats) == len(STYLES), "style statistics must be computed once per style, not per photo"
    for name in outputs(out):
        im = Image.open(out / name)
        im.load()
        assert max(im.size) == 128 and im.mode == "RGB"
    assert "done 8, skipped 0, failed 4" in text
    assert "cut.jpg [sketch, brushstrokes]: truncated or corrupt image" in text
    assert "notes.jpg [sketch, brushstrokes]: not an image" in text
    assert "ignored 1 file(s)" in text and "readme.txt" in text
    records = [json.loads(line) for line in (out / "batch-report.jsonl").read_text().splitlines()]
    assert len(records) == 12
    failed = {(r["photo"], r["reason"].split(" (")[0]) for r in records if r["status"] == "failed"}
    assert failed == {("cut.jpg", "truncated or corrupt image"), ("notes.jpg", "not an image")}
    done = [r for r in records if r["status"] == "done"]
    assert sorted(r["output"] for r in done) == expected_outputs()
    assert all(r["bytes"] > 0 and max(r["size"]) == 128 and r["compute_seconds"] > 0 for r in done)
    assert not no_partials(out)

    # The rerun computes nothing (not even style statistics) and reports the same failures.
    mtimes = {n: (out / n).stat().st_mtime_ns for n in outputs(out)}
    stylize_calls = count_calls(monkeypatch, Stylizer, "stylize")
    code, text = run(folder, *STYLES, "-o", out, *SMALL)
    assert code == 1 and "done 0, skipped 8, failed 4" in text, text
    assert "cut.jpg [sketch, brushstrokes]: truncated" in text
    assert not stylize_calls and len(stats) == len(STYLES)
    assert {n: (out / n).stat().st_mtime_ns for n in outputs(out)} == mtimes
    statuses = [json.loads(line)["status"] for line in (out / "batch-report.jsonl").read_text().splitlines()]
    assert sorted(statuses) == ["failed"] * 4 + ["skipped"] * 8

    code, text = run(folder, STYLES[0], "-o", out, "--overwrite", *SMALL)
    assert code == 1 and "done 4, skipped 0, failed 2" in text, text
    assert all(((out / n).stat().st_mtime_ns != t) == ("__sketch" in n) for n, t in mtimes.items())


@pytest.fixture
def two_photos(tmp_path):
    d = tmp_path / "two"
    photo("golden_gate.jpg", d / "a.jpg", (150, 100))
    photo("lenna.jpg", d / "sub/c.jpg", (100, 100))
    return d


def test_batch_output_equals_single_command_in_every_mode(two_photos, tmp_path):
    """Cached statistics, prefetch and the writer thread change the speed, never the pixels, at
    sizes planned whole (where a photo tiles, overlapping I/O leaves room for the I/O threads'
    buffers: smaller tiles, and the last bit may differ from a single run's)."""
    single = tmp_path / "single.png"
    stylize_file(two_photos / "sub/c.jpg", STYLES[1], single, OPTS)
    want = np.asarray(Image.open(single))
    for i, (cache, overlap) in enumerate([(True, True), (False, False)]):
        out = tmp_path / f"out{i}"
        summary = run_batch(two_photos, STYLES, out, OPTS, cache_style=cache, overlap_io=overlap)
        assert len(summary.done) == 4 and not summary.failed and summary.remaining == 0
        assert np.array_equal(np.asarray(Image.open(out / "sub/c__brushstrokes.png")), want)


def test_a_batch_plans_room_for_its_next_photo_and_last_result_when_it_overlaps_io(two_photos, tmp_path,
                                                                                   monkeypatch):
    """The reader decodes the next photo while this one computes, often after the plan is made,
    so the plan is told of it (and of the result being written) rather than measuring the
    process at that moment: each is taken as this photo's size, nothing without overlap."""
    seen = []
    stylize = Stylizer.stylize

    def spy(self, content, style, **kw):
        seen.append((content.nbytes, kw["held"]))
        return stylize(self, content, style, **kw)

    monkeypatch.setattr(Stylizer, "stylize", spy)
    for overlap in (True, False):
        seen.clear()
        run_batch(two_photos, STYLES[1], tmp_path / f"out{overlap}", OPTS, overlap_io=overlap)
        assert len(seen) == 2 and all(held == (2 * size if overlap else 0) for size, held in seen), seen


def test_a_failed_write_is_reported_and_the_batch_goes_on(two_photos, tmp_path):
    out = tmp_path / "out"
    (out / "a__sketch.png").mkdir(parents=True)  # a folder squats the output's name
    summary = run_batch(two_photos, str(STYLES[0]), out, OPTS)  # one style may be a bare path
    assert [r.pair.photo.name for r in summary.done] == ["c.jpg"]
    assert len(summary.failed) == 1 and summary.failed[0].reason.startswith("writing ")
    assert "is a directory" in summary.failed[0].reason


def test_a_bug_in_one_pair_fails_it_keeps_its_traceback_and_the_batch_goes_on(two_photos, tmp_path, monkeypatch,
                                                                              capsys):
    import stylize.batch_runner as runner

    real, calls = runner.stylize_prepared, []

    def first_fails(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:
            raise TypeError("a bug planted by the test")
        return real(*args, **kwargs)

    monkeypatch.setattr(runner, "stylize_prepared", first_fails)
    summary = run_batch(two_photos, STYLES[0], tmp_path / "out", OPTS)
    assert len(summary.done) == 1 and len(summary.failed) == 1
    assert summary.failed[0].reason == "TypeError: a bug planted by the test (internal error: traceback on stderr)"
    err = capsys.readouterr().err
    assert "internal error (a bug" in err and "Traceback" in err and 'raise TypeError("a bug planted' in err


def test_a_style_that_did_not_fit_beside_one_photo_is_tried_again_for_the_next(tmp_path):
    """Only a file's own fault is remembered for every later photo: a budget error depends on
    what the batch held beside that photo."""
    from types import SimpleNamespace

    from stylize.batch_runner import StyleCache
    from stylize.engine.memory import BudgetTooSmall

    calls = []

    def statistics(image, held=0):
        calls.append(held)
        if len(calls) == 1:
            raise BudgetTooSmall("--max-memory 1G is too small for the style", 1)
        return {"computed": True}

    cache = StyleCache(OPTS)
    fake = SimpleNamespace(style_statistics=statistics)
    with pytest.raises(ImageError, match="too small for the style"):
        cache.get(STYLES[0], fake, held=900 << 20)
    assert cache.get(STYLES[0], fake)[0] == {"computed": True} and len(calls) == 2
    broken = tmp_path / "broken.png"
    broken.write_bytes(STYLES[0].read_bytes()[:200])
    for _ in range(2):
        with pytest.raises(ImageError, match="broken.png"):
            cache.get(broken, fake)
    assert len(calls) == 2 and broken in cache._errors  # read once, remembered


def test_a_photo_its_output_format_cannot_hold_fails_before_compute(tmp_path, monkeypatch):
    d = tmp_path / "photos"
    photo("golden_gate.jpg", d / "ok.png", (40, 30), "PNG")
    Image.new("RGB", (65_600, 3), (90, 120, 200)).save(d / "panorama.png")  # wider than JPEG allows
    computed = []
    real = Stylizer.stylize
    monkeypatch.setattr(Stylizer, "stylize", lambda self, content, *a, **k: computed.append(content.shape)
                        or real(self, content, *a, **k))
    summary = run_batch(d, STYLES[0], tmp_path / "out", Settings(style_resolution=128), fmt="jpg")
    assert [r.pair.photo.name for r in summary.done] == ["ok.png"] and computed == [(3, 30, 40)]
    assert "JPEG cannot hold 65600x3" in summary.failed[0].reason


def test_a_report_that_names_a_photo_is_refused_before_it_truncates_it(folder, tmp_path):
    photo_file = folder / "a.jpg"
    before = photo_file.read_bytes()
    with pytest.raises(ImageError, match="the report would overwrite an input"):
        Batch(folder, STYLES[0], tmp_path / "out", OPTS, report_path=photo_file)
    assert photo_file.read_bytes() == before


@pytest.fixture
def ctrl_c_raises():
    """SIGINT as a terminal delivers it. A test run as a background job of a shell without job
    control inherits SIGINT ignored, which Python (and so the batch) rightly keeps ignored."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_ctrl_c_mid_batch_leaves_only_complete_outputs_and_rerun_finishes(folder, tmp_path, monkeypatch,
                                                                          ctrl_c_raises):
    out = tmp_path / "out"
    original = Stylizer.stylize
    calls = []

    def interrupt_on_third(self, *a, **k):
        calls.append(1)
        if len(calls) == 3:
            os.kill(os.getpid(), signal.SIGINT)  # a real Ctrl-C, delivered while computing
        return original(self, *a, **k)

    monkeypatch.setattr(Stylizer, "stylize", interrupt_on_third)
    code, text = run(folder, *STYLES, "-o", out, *SMALL)
    assert code == 130 and "interrupted:" in text and "rerun" in text, text
    assert not [t for t in threading.enumerate() if t.name.startswith("batch-")]
    first = outputs(out)
    assert 1 <= len(first) < 8 and not no_partials(out)
    for name in first:
        Image.open(out / name).load()  # complete files only

    # A temp file from a hard kill (which no handler sees) is swept by the rerun.
    missing = sorted(set(expected_outputs()) - set(first))[0]
    stale = (out / missing).parent / f".{os.path.basename(missing)}.x1y2.part.png"
    stale.parent.mkdir(parents=True, exist_ok=True)
    stale.write_bytes(b"\x89PNG half")
    monkeypatch.setattr(Stylizer, "stylize", original)
    code, text = run(folder, *STYLES, "-o", out, *SMALL)
    assert code == 1 and f"done {8 - len(first)}, skipped {len(first)}, failed 4" in text, text
    assert outputs(out) == expected_outputs() and not no_partials(out)
    for name in outputs(out):
        Image.open(out / name).load()


def test_ctrl_c_while_the_last_result_is_written_is_reported_not_swallowed(folder, tmp_path, monkeypatch,
                                                                           ctrl_c_raises):
    """The compute loop is over and the batch waits for its writer: a Ctrl-C then lets the
    write in progress finish, and the batch says it was interrupted (exit 130), as it does
    mid-compute, rather than reporting a finished batch."""
    import stylize.batch_runner as runner

    real_write, writes = runner.write_image, []

    def interrupt_on_last(path, *a, **k):
        writes.append(path)
        if len(writes) == len(expected_outputs()):
            os.kill(os.getpid(), signal.SIGINT)  # the main thread is waiting in the writer's close
            time.sleep(0.3)
        return real_write(path, *a, **k)

    monkeypatch.setattr(runner, "write_image", interrupt_on_last)
    code, text = run(folder, *STYLES, "-o", tmp_path / "out", *SMALL)
    assert code == 130 and text.startswith("interrupted: done 8, skipped 0, failed 4, not started 0"), text
    assert outputs(tmp_path / "out") == expected_outputs() and not no_partials(tmp_path / "out")


def test_interrupt_from_python_carries_the_summary(folder, tmp_path, monkeypatch):
    def stop(self, *a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(Stylizer, "stylize", stop)
    with pytest.raises(BatchInterrupted) as e:
        run_batch(folder, STYLES, tmp_path / "out", OPTS)
    assert e.value.summary.interrupted and not e.value.summary.done and e.value.summary.remaining > 0


def test_names_clashes_and_nested_output_folder(tmp_path):
    d = tmp_path / "photos"
    photo("golden_gate.jpg", d / "x.jpg", (40, 30))
    photo("golden_gate.jpg", d / "x.png", (40, 30), "PNG")
    photo("golden_gate.jpg", d / "out/old_result.png", (40, 30), "PNG")  # the output folder itself
    plan = Batch(d, STYLES[:1], d / "out", fmt="tif")
    assert sorted(p.output.name for p in plan.pairs) == ["x_jpg__sketch.tif", "x_png__sketch.tif"]
    assert {p.output.suffix for p in Batch(d, STYLES[:1], d / "out", fmt="JPEG").pairs} == {".jpg"}
    with pytest.raises(ImageError, match="must not be the photo folder"):
        Batch(d, STYLES[:1], d / ".")
    # An earlier batch's output folder inside the photos (it holds a report) is not searched
    # under another -o: its results were stylized again as photos.
    (d / "out" / "batch-report.jsonl").write_text("")
    plan = Batch(d, STYLES[:1], tmp_path / "elsewhere")
    assert sorted(p.output.name for p in plan.pairs) == ["x_jpg__sketch.png", "x_png__sketch.png"]
    assert plan.unreadable == [(Path("out"), "a batch's output folder (it holds batch-report.jsonl), "
                                             "not searched for photos")]


@pytest.mark.parametrize("args,message", [
    (["missing_dir", STYLES[0]], "not a folder"),
    (["PHOTOS", STYLES[0], STYLES[0]], "given twice"),
    (["PHOTOS", SHARED / "images/style/none.jpg"], "no such file"),
    (["PHOTOS", "loop.png"], "symbolic link loop"),
    (["empty_dir", STYLES[0]], "no images in this folder"),
    (["PHOTOS", STYLES[0], "--report", "missing_dir/r.jsonl"], "missing_dir does not exist"),
    (["PHOTOS", STYLES[0], "-o", "a_file"], "not a folder (the output folder must be one)"),
    (["PHOTOS", STYLES[0], "--format", "gif"], "bad --format"),
    (["PHOTOS", STYLES[0], "--bits", "16"], "needs --format tif"),
    (["PHOTOS", STYLES[0], "--levels", "7"], "bad --levels"),
    (["PHOTOS", STYLES[0], "--max-pixels", "10000"], "sketch.png: image is 300x300"),  # checked from the header, not per pair
    (["PHOTOS", STYLES[0], "--report", STYLES[0]], "the report would overwrite an input"),
    (["PHOTOS", STYLES[0], "--mask", "missing_dir/m.png"], "--mask"),
])
def test_usage_errors_are_one_line_and_compute_nothing(folder, tmp_path, args, message):
    (tmp_path / "empty_dir").mkdir()
    (tmp_path / "a_file").write_bytes(b"x")
    (tmp_path / "loop.png").symlink_to(tmp_path / "loop.png")
    named = ("missing_dir", "empty_dir", "a_file", "loop.png", "missing_dir/r.jsonl", "missing_dir/m.png")
    args = [folder if a == "PHOTOS" else tmp_path / a if a in named else a for a in args]
    code, text = run(*args, *([] if "-o" in args else ["-o", tmp_path / "out"]))
    assert code == 2 and message in text and "Traceback" not in text, text
    assert len(text.strip().splitlines()) == 1 and not (tmp_path / "out").exists()


def test_sigterm_stops_as_cleanly_as_ctrl_c(two_photos, tmp_path, monkeypatch):
    out = tmp_path / "out"
    original = Stylizer.stylize

    def terminate_on_second(self, *a, **k):
        result = original(self, *a, **k)
        if not (out / "a__sketch.png").exists():
            os.kill(os.getpid(), signal.SIGTERM)  # what `kill PID` or a scheduler's timeout sends
        return result

    monkeypatch.setattr(Stylizer, "stylize", terminate_on_second)
    code, text = run(two_photos, STYLES[0], "-o", out, *SMALL)
    assert code == 130 and "interrupted:" in text, text
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # restored after the batch
    assert not no_partials(out) and len(outputs(out)) <= 1
