"""The weights registry and its one loader: search order, verification, download."""
from __future__ import annotations

import functools
import hashlib
import http.server
import shutil
import threading

import pytest
import torch

from conftest import SHARED
from stylize.models import load_levels
from stylize.models.weights import Entry, WeightsError, load_registry, resolve, sha256_of

KEY = "cd16x/enc2.pth"


def test_registry_lists_every_shared_file_with_its_hash():
    reg = load_registry()
    for path in sorted((SHARED / "weights").rglob("*.pth")):
        key = str(path.relative_to(SHARED / "weights"))
        assert key in reg, key
        assert reg[key].sha256 == sha256_of(path), key
        assert reg[key].url.startswith("https://") and reg[key].license


def test_search_order_explicit_dir_then_env_then_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("STYLIZE_CACHE", str(tmp_path / "cache"))
    explicit = tmp_path / "mine"
    explicit.mkdir()
    shutil.copy(SHARED / "weights" / KEY, explicit / "enc2.pth")  # bare names are accepted there
    assert resolve(KEY, explicit) == explicit / "enc2.pth"
    assert resolve(KEY).resolve().is_relative_to(SHARED / "weights")  # from STYLIZE_WEIGHTS_PATH
    monkeypatch.setenv("STYLIZE_WEIGHTS_PATH", "")
    cached = tmp_path / "cache" / KEY
    cached.parent.mkdir(parents=True)
    shutil.copy(SHARED / "weights" / KEY, cached)
    assert resolve(KEY, download=False) == cached


def test_wrong_file_on_path_is_an_error_naming_it(tmp_path, monkeypatch):
    bad = tmp_path / "cd16x"
    bad.mkdir()
    (bad / "enc2.pth").write_bytes(b"not the weights")
    monkeypatch.setenv("STYLIZE_WEIGHTS_PATH", str(tmp_path))
    with pytest.raises(WeightsError, match="enc2.pth: sha256 mismatch"):
        resolve(KEY)


def test_a_file_checked_for_one_entry_is_checked_again_for_another(tmp_path):
    """A copy of cd16x's enc1 passed as vgg19's enc1 once cd16x's had been checked in the same
    process: the record of checked files did not say which hash they had matched."""
    folder = tmp_path / "w"
    folder.mkdir()
    shutil.copy(SHARED / "weights/cd16x/enc1.pth", folder / "enc1.pth")
    assert resolve("cd16x/enc1.pth", folder) == folder / "enc1.pth"
    with pytest.raises(WeightsError, match="vgg19-wct/enc1.pth: sha256 mismatch"):
        resolve("vgg19-wct/enc1.pth", folder)


def test_a_page_saved_as_weights_is_one_line(tmp_path, monkeypatch):
    """The original VGG-19's levels 4-5 have no hash, so their first check is the load: an
    HTML page saved as enc4.pth was torch's UnpicklingError traceback."""
    for name in ("enc4.pth", "dec4.pth"):
        (tmp_path / name).write_text("<html>404 Not Found</html>")
    with pytest.raises(WeightsError, match=r"enc4.pth: not a PyTorch weights file \(UnpicklingError\)"):
        load_levels("vgg19", (4,), tmp_path)


def test_user_supplied_levels_without_hash_are_never_downloaded(tmp_path, monkeypatch):
    monkeypatch.setenv("STYLIZE_CACHE", str(tmp_path))
    with pytest.raises(WeightsError, match="no published sha256.*--weights-dir"):
        load_levels("vgg19", (4,))


@pytest.fixture
def server(tmp_path):
    """HTTP server on 127.0.0.1 serving a copy of shared/weights plus a corrupted file."""
    root = tmp_path / "www"
    shutil.copytree(SHARED / "weights", root)
    (root / "corrupt.pth").write_bytes((root / KEY).read_bytes()[:-10] + b"0123456789")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *a: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.fixture
def no_local_copies(tmp_path, monkeypatch):
    """An empty cache and no search path: the only way to a file is the download."""
    monkeypatch.setenv("STYLIZE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("STYLIZE_WEIGHTS_PATH", "")


def _entry(url: str) -> dict[str, Entry]:
    sha = sha256_of(SHARED / "weights" / KEY)
    return {KEY: Entry(KEY, url, sha, "MIT")}


def test_download_verifies_and_writes_atomically(server, tmp_path, no_local_copies):
    got = resolve(KEY, registry=_entry(f"{server}/{KEY}"))
    assert got == tmp_path / "cache" / KEY
    assert hashlib.sha256(got.read_bytes()).hexdigest() == sha256_of(SHARED / "weights" / KEY)
    state = torch.load(got, map_location="cpu", weights_only=True)
    assert "model" in state
    assert [p.name for p in got.parent.iterdir()] == ["enc2.pth"]  # no .part left behind


def test_download_of_corrupted_file_saves_nothing(server, tmp_path, no_local_copies):
    with pytest.raises(WeightsError, match="enc2.pth: downloaded file .* expected"):
        resolve(KEY, registry=_entry(f"{server}/corrupt.pth"))
    assert not any(p.is_file() for p in (tmp_path / "cache").rglob("*"))


def test_download_404_is_a_clear_error(server, tmp_path, no_local_copies):
    want = r"enc2.pth: download from .* failed \(HTTP Error 404.*--weights-dir or \$STYLIZE_WEIGHTS_PATH"
    with pytest.raises(WeightsError, match=want):
        resolve(KEY, registry=_entry(f"{server}/missing.pth"))
    assert not any(p.is_file() for p in (tmp_path / "cache").rglob("*"))


def test_every_family_level_loads_with_the_right_shapes():
    for model, levels in (("cd16x", (1, 2, 3, 4, 5)), ("vgg19", (1, 2, 3))):
        for k, m in load_levels(model, levels).items():
            g = m.geometry()
            x = torch.rand(1, 3, 4 * g.stride, 2 * g.stride)
            f = m.encode(x)
            assert f.shape == (1, g.channels, 4, 2)
            assert m.decode(f).shape == x.shape
    # README facts measured on the weights: receptive-field radius per level
    radii = [load_levels("cd16x", (k,))[k].geometry().radius for k in range(1, 6)]
    assert radii == [2, 9, 23, 67, 155]
