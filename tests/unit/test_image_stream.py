"""Writing a store strip by strip: JPEG through libvips in constant memory gives the pixels of
Pillow's whole-image encoder, and whatever the strips raise reaches the caller with no output."""
import numpy as np
import pytest
from PIL import Image

import stylize.image_stream as image_stream
from stylize.engine.store import DiskStore, RamStore
from stylize.image_guard import ImageError
from stylize.image_stream import check_writable, write_store
from stylize.imageio import to_integer

pytest.importorskip("pyvips", reason="libvips encodes JPEG strip by strip (pyvips, pyvips-binary: dependencies)")


def _image(h=613, w=397, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    smooth = np.stack([np.sin(x / 11.0 + c) * np.cos(y / 17.0 - c) for c in range(3)]) * 0.4 + 0.5
    return np.clip(smooth + rng.normal(0, 0.05, (3, h, w)), 0, 1).astype(np.float32)


@pytest.mark.parametrize("quality", [60, 95, 100])
@pytest.mark.parametrize("on_disk", [False, True])
def test_a_streamed_jpeg_has_the_pixels_of_pillows_whole_encode(quality, on_disk, tmp_path):
    image = _image()
    store = DiskStore(tmp_path, 3, *image.shape[1:]) if on_disk else RamStore.empty(3, *image.shape[1:])
    store.write(0, 0, image)
    write_store(tmp_path / "streamed.jpg", store, quality=quality)
    Image.fromarray(to_integer(image)).save(tmp_path / "whole.jpg", quality=quality, subsampling=0)
    with Image.open(tmp_path / "streamed.jpg") as a, Image.open(tmp_path / "whole.jpg") as b:
        assert a.size == b.size == (397, 613) and a.mode == "RGB"
        assert np.array_equal(np.asarray(a), np.asarray(b))
        assert not a.getexif()  # no metadata of libvips' own


@pytest.mark.parametrize("error", [OSError(5, "scratch read failed"), KeyboardInterrupt()], ids=["OSError", "Ctrl-C"])
def test_what_a_strip_raises_reaches_the_caller_and_no_output_is_left(error, tmp_path, monkeypatch):
    store = RamStore(_image(h=1500))
    real, calls = image_stream.read_rows, []

    def failing(s, y0, y1):
        calls.append(y0)
        if len(calls) == 3:
            raise error
        return real(s, y0, y1)

    monkeypatch.setattr(image_stream, "read_rows", failing)
    expected = (ImageError, "out.jpg: cannot write") if isinstance(error, OSError) else (KeyboardInterrupt, None)
    with pytest.raises(expected[0], match=expected[1]):  # a failing disk is one line naming the output
        write_store(tmp_path / "out.jpg", store)
    assert len(calls) == 3 and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("suffix", [".png", ".tif", ".jpg"])
def test_a_streamed_write_removes_what_a_killed_run_left_and_a_full_disk_is_one_line(suffix, tmp_path,
                                                                                     monkeypatch):
    out = tmp_path / f"out{suffix}"
    stale = tmp_path / f".out{suffix}.k1ll3d.part{suffix}"  # as atomic_path names its temporary file
    stale.write_bytes(b"half an image")
    write_store(out, RamStore(_image(h=40, w=30)))
    assert out.is_file() and not stale.exists()

    def full(*args):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(image_stream, "read_rows", full)
    with pytest.raises(ImageError, match=f"again{suffix}: cannot write .*No space left"):
        write_store(tmp_path / f"again{suffix}", RamStore(_image(h=40, w=30)))
    assert sorted(p.name for p in tmp_path.iterdir()) == [f"out{suffix}"]


def test_a_jpeg_past_half_the_budget_is_refused_only_without_libvips(tmp_path, monkeypatch):
    check_writable(tmp_path / "o.jpg", 20000, 30000, 2 << 30)  # streamed: any size libjpeg takes
    monkeypatch.setattr(image_stream, "_has_vips", lambda: False)
    with pytest.raises(ImageError, match="encoded whole"):
        check_writable(tmp_path / "o.jpg", 20000, 30000, 2 << 30)


def test_a_ctrl_c_during_the_encode_stops_it_and_reaches_the_caller(tmp_path, monkeypatch):
    """A real SIGINT, from another thread, while libvips encodes: it must end the write early
    with KeyboardInterrupt and no output. Raised inside one of libvips' callbacks it used to be
    printed and dropped by cffi, and the encode ran to the end."""
    import os
    import signal
    import threading
    import time

    store = RamStore(_image(h=8000, w=300))
    real, calls = image_stream.read_rows, []

    def slow(s, y0, y1):  # a scratch file on a slow disk: the encode lasts seconds
        calls.append(y0)
        time.sleep(0.05)
        return real(s, y0, y1)

    monkeypatch.setattr(image_stream, "read_rows", slow)
    timer = threading.Timer(0.5, lambda: os.kill(os.getpid(), signal.SIGINT))
    timer.start()
    try:
        with pytest.raises(KeyboardInterrupt):
            write_store(tmp_path / "out.jpg", store)
    finally:
        timer.cancel()
    strips = -(-8000 // image_stream.STRIP)
    assert len(calls) < strips, f"the encode read all {strips} strips: the interrupt did not stop it"
    assert list(tmp_path.iterdir()) == []
