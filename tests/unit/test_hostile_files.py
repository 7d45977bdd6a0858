"""Hostile files and faults, without models: every bad file is one clean ImageError line, found
from its header before anything big is allocated; special files never block; writes, the
batch report, the batch lock and the writer thread survive a full disk and each other."""
from __future__ import annotations

import errno
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from contextlib import contextmanager

import numpy as np
import pytest
import tifffile
from PIL import Image

from stylize.batch_files import find_photos, looks_like_image
from stylize.batch_pipeline import WriterThread
from stylize.batch_records import LOCK_NAME, Report, exclusive
from stylize.bench.fuzz_corpus import bombs, seed_images
from stylize.imageio import ImageError, check_output_path, probe_image, read_by_rows, read_image, write_image


@contextmanager
def deadline(seconds: int):
    """Fail (instead of hanging the suite) when the block takes longer than ``seconds``."""
    def expire(signum, frame):
        raise TimeoutError(f"took more than {seconds}s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def refused(path, *, contains: str, **kwargs) -> str:
    with pytest.raises(ImageError) as e:
        read_image(path, **kwargs)
    text = str(e.value)
    assert "\n" not in text and text.startswith(f"{path}: ") and contains in text, text
    return text


@pytest.mark.parametrize("name", sorted(bombs()))
def test_tiny_headers_claiming_huge_images_are_refused_at_once(tmp_path, name):
    """A 3 KB GIF with a 14000² screen, a JPEG or PNG claiming 14000², a 162-byte TIFF header
    claiming 14000² float64 RGB: refused from the header in milliseconds (no 196 MP decode)."""
    path = tmp_path / name
    path.write_bytes(bombs()[name])
    t = time.perf_counter()
    text = refused(path, contains="14000x14000")
    assert time.perf_counter() - t < 1.0
    # every one, the TIFF too: 4.4 GiB of float64 is no longer too much to read (by rows), but
    # no 288-byte file holds it
    assert "cannot hold" in text and "decompression bomb" in text


def test_limits_are_told_in_sensible_units(tmp_path):
    path = tmp_path / "small.png"
    Image.new("RGB", (400, 300)).save(path)
    text = refused(path, contains="over the limit of 100 pixels", max_pixels=100)
    assert "(120,000 pixels)" in text and "0 MP" not in text
    tif = tmp_path / "small.tif"
    tifffile.imwrite(tif, np.zeros((300, 400, 3), np.uint8), photometric="rgb")
    refused(tif, contains="over the limit of 100 pixels", max_pixels=100)
    refused(tif, contains="over the 1.0 KiB left of the memory budget; raise it with --max-memory", max_bytes=1024)


def test_signed_tiffs_span_the_whole_range(tmp_path):
    for dtype in (np.int8, np.int16, np.int32):
        info = np.iinfo(dtype)
        a = np.array([[info.min, -1, 0, info.max]], dtype)
        path = tmp_path / f"{np.dtype(dtype).name}.tif"
        tifffile.imwrite(path, a)
        got = read_image(path).rgb[0, 0]
        want = (a[0].astype(np.float64) - info.min) / (float(info.max) - info.min)
        assert np.allclose(got, want, atol=1e-6), (dtype, got)


@pytest.mark.parametrize("compression", ["lzw", "jpeg", "zlib", "packbits", "group4"])
def test_compressed_tiffs_decode(tmp_path, compression):
    ramp = (np.mgrid[0:48, 0:64][1] * 4).astype(np.uint8)
    rgb = np.repeat(ramp[..., None], 3, axis=2)
    path = tmp_path / f"{compression}.tif"
    if compression == "group4":  # CCITT: bilevel, written by Pillow's libtiff
        Image.fromarray(rgb).convert("1").save(path, compression="group4")
        want = np.asarray(Image.open(path).convert("L"), np.float32) / 255
    else:
        tifffile.imwrite(path, rgb, photometric="rgb", compression=compression)
        want = rgb[..., 0] / 255
    got = read_image(path).rgb
    assert got.shape == (3, 48, 64)
    assert np.abs(got[0] - want).mean() < (0.02 if compression == "jpeg" else 1e-6)


@pytest.mark.parametrize("make,contains", [
    (lambda d: _edit(seed_images()["rgba.dds"], 80, b"\0\0\0\0"), "Unknown pixel format flags 0"),  # DDS
    (lambda d: seed_images()["rgb.avif"][:-10], "truncated or corrupt"),
    (lambda d: seed_images()["u8.tif"][:60], "truncated or corrupt TIFF"),
    (lambda d: _edit(seed_images()["palette.tif"], 4, (10**6).to_bytes(4, "little")), "corrupt TIFF"),
])
def test_decoder_exceptions_are_one_line(tmp_path, make, contains):
    path = tmp_path / "bad.img"
    path.write_bytes(make(tmp_path))
    refused(path, contains=contains)


def _edit(data: bytes, at: int, new: bytes) -> bytes:
    return data[:at] + new + data[at + len(new):]


def test_special_files_never_block_or_vanish(tmp_path):
    fifo, loop, dangling, sock = tmp_path / "fifo.jpg", tmp_path / "loop.png", tmp_path / "gone.jpg", tmp_path / "s"
    os.mkfifo(fifo)
    loop.symlink_to(loop)
    dangling.symlink_to(tmp_path / "nothing.jpg")
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(sock))
    Image.new("RGB", (8, 8)).save(tmp_path / "ok.png")
    (tmp_path / "notes.txt").write_text("not an image")
    (tmp_path / "broken.dds").write_bytes(_edit(seed_images()["rgba.dds"], 80, b"\0\0\0\0"))
    with deadline(20):
        refused(fifo, contains="not a file (a FIFO)")
        refused(loop, contains="symbolic link loop")
        refused(dangling, contains="broken symbolic link")
        refused(sock, contains="not a file (a socket)")
        refused(tmp_path, contains="not a file (a directory)")
        refused(tmp_path / ("x" * 300 + ".png"), contains="File name too long")
        found = find_photos(tmp_path)
    server.close()
    assert [str(p) for p in found.photos] == ["broken.dds", "ok.png"]  # a broken image fails loudly later
    assert [str(p) for p in found.ignored] == ["notes.txt"]
    assert dict((str(p), why) for p, why in found.unreadable) == {
        "fifo.jpg": "not a file (a FIFO)", "gone.jpg": "broken symbolic link", "loop.png": "symbolic link loop",
        "s": "not a file (a socket)"}
    assert not looks_like_image(fifo)


def test_reads_are_silent_and_close_their_files(tmp_path, capfd):
    bad = tmp_path / "bad.tif"
    bad.write_bytes(_edit(seed_images()["u8.tif"], 4, (10**6).to_bytes(4, "little")))  # tifffile logs this
    good = tmp_path / "good.png"
    Image.new("RGB", (8, 8)).save(good)
    fds = len(os.listdir("/proc/self/fd"))
    for _ in range(3):
        read_image(good)
        with pytest.raises(ImageError):
            read_image(bad)
    assert len(os.listdir("/proc/self/fd")) == fds
    assert capfd.readouterr().err == ""


def test_a_corrupt_avif_is_refused_without_a_glib_warning(tmp_path, capfd):
    """An AVIF whose 'ispe' box claims a height past 2**30 (fuzz seed 142, case 28636): libvips,
    asked for the header of a format it is never used to stream, printed GLib warnings from C;
    only JPEG, PNG and WebP signatures now reach it, and Pillow refuses the file in one line."""
    data = seed_images()["rgb.avif"]
    bad = tmp_path / "tall.avif"
    bad.write_bytes(_edit(data, data.find(b"ispe") + 12, b"\x40"))
    refused(bad, contains="not an image")
    for read in (probe_image, lambda p: read_by_rows(p, None, 10**9, lambda *a: None)):
        with pytest.raises(ImageError):
            read(bad)
    assert capfd.readouterr().err == ""


def test_a_full_disk_on_write_is_one_line_and_leaves_nothing(tmp_path, monkeypatch):
    import stylize.imageio

    def full(tmp, *a):
        with open(tmp, "wb") as f:
            f.write(b"partial")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(stylize.imageio, "_encode", full)
    with pytest.raises(ImageError, match=r"o\.png: cannot write \(No space left on device\)$"):
        write_image(tmp_path / "o.png", np.zeros((3, 8, 8), np.float32))
    assert list(tmp_path.iterdir()) == []


def test_the_next_write_removes_what_a_killed_run_left(tmp_path):
    stale = tmp_path / ".o.png.k1ll3d.part.png"
    stale.write_bytes(b"\x89PNG half")
    other = tmp_path / ".other.png.k1ll3d.part.png"  # another output's: not ours to remove
    other.write_bytes(b"x")
    write_image(tmp_path / "o.png", np.zeros((3, 8, 8), np.float32))
    assert sorted(p.name for p in tmp_path.iterdir()) == [other.name, "o.png"]


def test_output_paths_that_would_destroy_an_input_or_fail_late(tmp_path):
    photo = tmp_path / "photo.png"
    Image.new("RGB", (8, 8)).save(photo)
    (tmp_path / "hard.png").hardlink_to(photo)
    (tmp_path / "soft.png").symlink_to(photo)
    for out in (photo, tmp_path / "hard.png", tmp_path / "soft.png", tmp_path / "." / "photo.png"):
        with pytest.raises(ImageError, match="is one of the input files"):
            check_output_path(out, inputs=(photo, tmp_path / "style.png"))
    with pytest.raises(ImageError, match="file name too long"):
        check_output_path(tmp_path / ("x" * 240 + ".png"))


def test_a_writer_failure_reaches_the_main_thread():
    def save(job):
        raise RuntimeError(f"report flush failed on {job}")

    writer = WriterThread(save)
    with deadline(20):
        writer.put(1)
        with pytest.raises(RuntimeError, match="on 1"):
            for job in range(2, 100):  # the main thread never waits on a writer that is gone
                writer.put(job)
        writer.close()
    assert not writer._thread.is_alive()
    late = WriterThread(save)
    late.put("last")
    with deadline(20), pytest.raises(RuntimeError, match="on last"):
        late.close()


def test_a_report_on_a_full_disk_keeps_every_result(tmp_path, monkeypatch):
    report = Report(tmp_path / "r.jsonl", tmp_path, None)
    report.add_line('{"first": 1}')

    def full(fd, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "write", full)
    report.add_line('{"second": 2}', result="kept")
    monkeypatch.undo()
    report.close()
    assert report.results == ["kept"] and report.error == "No space left on device"
    assert (tmp_path / "r.jsonl").read_text() == '{"first": 1}\n'


def test_report_lines_stay_whole_under_any_interleaving(tmp_path):
    """Two writers of one report (two batches given the same --report): every line whole."""
    path = tmp_path / "r.jsonl"
    reports = [Report(path, tmp_path, None) for _ in range(2)]
    line = json.dumps({"photo": "p" * 5000})

    def write(report):
        for _ in range(200):
            report.add_line(line)

    threads = [threading.Thread(target=write, args=(r,)) for r in reports for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lines = path.read_text().splitlines()
    assert len(lines) == 800 and all(json.loads(x) for x in lines)


HOLD = """
import sys, time
from pathlib import Path
from stylize.batch_records import exclusive
with exclusive(Path(sys.argv[1])):
    print("held", flush=True)
    time.sleep(120)
"""


def test_the_batch_lock_holds_across_processes_even_when_its_file_is_deleted(tmp_path):
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        for _ in range(2):
            with pytest.raises(ImageError, match="another batch is writing into this folder"):
                with exclusive(tmp_path):
                    pass
            (tmp_path / LOCK_NAME).unlink()  # a user deletes it: the folder's own lock still holds
    finally:
        holder.kill()
        holder.wait()
    with exclusive(tmp_path):
        pass
    with exclusive(tmp_path):  # released on exit, and the lock file is kept
        assert (tmp_path / LOCK_NAME).exists()
    assert (tmp_path / LOCK_NAME).exists()


@pytest.mark.parametrize("long_side", [None, 24])
def test_the_header_probe_agrees_with_the_read(tmp_path, long_side):
    """``probe_image`` (what a run checks before any compute) gives the size ``read_image``
    gives, for every seed format, and refuses the bombs and oversized outputs the same way."""
    from stylize.imageio import probe_image

    for name, data in seed_images().items():
        path = tmp_path / name
        path.write_bytes(data)
        if name.startswith("bomb"):
            with pytest.raises(ImageError, match="14000x14000"):
                probe_image(path, long_side=long_side)
            continue
        assert probe_image(path, long_side=long_side) == read_image(path, long_side).size, name
    with pytest.raises(ImageError, match="requested output is 7680x5760"):
        probe_image(tmp_path / "rgb.png", max_pixels=10_000, long_side=7680)


def test_a_short_write_reads_as_a_full_disk():
    """numpy's tofile (under tifffile) reports a full disk as a short write with no errno."""
    from stylize.image_guard import describe_error

    assert describe_error(OSError("786432 requested and 204528 written")) == \
        "No space left on device (a short write: 786432 requested and 204528 written)"
    assert describe_error(OSError(28, "No space left on device")) == "No space left on device"


def _damaged_tiff(path, damage: str) -> None:
    """A small real TIFF with one layout tag broken, as the fuzz found them."""
    a = np.full((30, 40, 3), 200, np.uint8)
    tifffile.imwrite(path, a, **({"tile": (16, 16)} if damage == "missing tiles" else {"rowsperstrip": 30}))
    with tifffile.TiffFile(path, mode="r+b") as tf:
        tags = tf.pages[0].tags
        if damage == "missing tiles":  # 2 of its 6 tiles: tifffile would fill the rest black
            tags["TileOffsets"].overwrite(tags["TileOffsets"].value[:2])
            tags["TileByteCounts"].overwrite(tags["TileByteCounts"].value[:2])
        elif damage == "short strip":  # 100 of 3,600 bytes: tifffile would pad it black
            tags["StripByteCounts"].overwrite([100])
        elif damage == "float width":
            tags["ImageWidth"].overwrite(40.5, dtype=11)


@pytest.mark.parametrize("damage, message", [("missing tiles", "2 of its 6 tiles are in the file"),
                                             ("short strip", "its strips hold fewer bytes than its pixels"),
                                             ("float width", "corrupt TIFF (image size 40.5 x 30)")])
def test_a_damaged_tiff_is_refused_whole_and_by_rows_alike(damage, message, tmp_path):
    """One decoder (tifffile), one verdict: whole, it would have given a black image where the
    read by rows fails (or crashed with a TypeError, for a float size); now both refuse it."""
    from stylize.imageio import _into_ram, read_by_rows, read_image

    path = tmp_path / "x.tif"
    _damaged_tiff(path, damage)
    for read in (lambda: read_image(path, by_rows=False), lambda: read_by_rows(path, None, 10**9, _into_ram([]))):
        with pytest.raises(ImageError, match=re.escape(f"{path}: ") + ".*" + re.escape(message)):
            read()


@pytest.mark.parametrize("seed, case, message", [(152, 2999, "unsupported TIFF layout (30, 40, 0)")])
def test_fuzz_cases_that_were_bugs_are_refused_whole_and_by_rows(tmp_path, seed, case, message):
    """Cases ``python -m stylize.bench.fuzz --seed S --replay N`` found (regenerated from the
    same seed and case): a TIFF of zero samples per pixel was refused whole but reached the
    read by rows, which failed on an empty band list (IndexError)."""
    from stylize.bench.fuzz import classify
    from stylize.bench.fuzz_corpus import mutate

    name, data = mutate(seed_images(), seed, case)
    path = tmp_path / f"case{case}.{name.rsplit('.', 1)[-1]}"
    path.write_bytes(data)
    assert classify(path, None, 10**8) == ("clean", message)
