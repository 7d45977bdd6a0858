"""One loader for every file in ``weights.toml``: find it, verify it, or fetch it.

Weights are data, not code: each entry names a path, an upstream URL pinned to a commit,
a sha256 and a licence. :func:`resolve` looks in this order and stops at the first hit:

1. an explicit directory passed by the caller (``--weights-dir``);
2. each directory of ``$STYLIZE_WEIGHTS_PATH`` (``os.pathsep``-separated);
3. the user cache (``$STYLIZE_CACHE``, else ``$XDG_CACHE_HOME/stylize``, else ``~/.cache/stylize``);
4. a download from the entry's URL into the cache, with a progress bar, verified before it
   is atomically renamed into place.

A file found anywhere is verified against its sha256 before use, so a corrupted cache or a
wrong file on the path is an error naming the file, never a silently different model.
"""
from __future__ import annotations

import hashlib
import os
import sys
import tempfile
import tomllib
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from stylize.engine.errors import UserError

# An installed package carries the registry as package data (setup.py copies it there); a
# source checkout reads the one at the repository root.
_PACKAGED = Path(__file__).resolve().parent / "weights.toml"
REGISTRY_PATH = _PACKAGED if _PACKAGED.is_file() else Path(__file__).resolve().parent.parent / "weights.toml"
ENV_PATH = "STYLIZE_WEIGHTS_PATH"
ENV_CACHE = "STYLIZE_CACHE"
# The sample pair (registry keys, resolved like the weights): `stylize demo` and the benchmarks.
SAMPLE_CONTENT = "uhd/green_park_3840x2160.jpg"
SAMPLE_STYLE = "style/wct_in1_2048.jpg"


class WeightsError(UserError):
    """A registry file could not be found, fetched or verified; the message names it."""


@dataclass(frozen=True)
class Entry:
    key: str
    url: str
    sha256: str
    license: str


def load_registry(path: Path | None = None) -> dict[str, Entry]:
    path = Path(path or REGISTRY_PATH)
    with open(path, "rb") as f:
        data = tomllib.load(f)
    return {
        key: Entry(key, v["url"], v.get("sha256", ""), v.get("license", ""))
        for key, v in data.get("files", {}).items()
    }


def cache_dir() -> Path:
    if os.environ.get(ENV_CACHE):
        return Path(os.environ[ENV_CACHE])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache")
    return Path(base) / "stylize"


def search_dirs(explicit: str | os.PathLike | None = None) -> list[Path]:
    dirs = [Path(explicit)] if explicit else []
    dirs += [Path(p) for p in os.environ.get(ENV_PATH, "").split(os.pathsep) if p]
    dirs.append(cache_dir())
    return dirs


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# Files already verified in this process, by (path, size, mtime, the hash they were checked
# against): a second backend or export for the same model does not hash its weights again, and
# a file checked for one entry is still checked for another (a copy of cd16x's enc1 passed as
# vgg19's once cd16x had been loaded).
_VERIFIED: set[tuple[str, int, int, str]] = set()


def _verify(entry: Entry, path: Path) -> Path:
    if not entry.sha256:
        return path  # nothing to check it against (the original VGG-19's levels 4-5)
    st = path.stat()
    stamp = (str(path.resolve()), st.st_size, st.st_mtime_ns, entry.sha256)
    if stamp in _VERIFIED:
        return path
    if sha256_of(path) != entry.sha256:
        raise WeightsError(
            f"{entry.key}: sha256 mismatch for {path} (expected {entry.sha256}); "
            "the file is corrupted or not the published one: delete it to re-fetch"
        )
    _VERIFIED.add(stamp)
    return path


def resolve(key: str, weights_dir: str | os.PathLike | None = None, *, download: bool = True,
            registry: dict[str, Entry] | None = None) -> Path:
    """Path of a verified local copy of registry file ``key``, fetching it if allowed."""
    registry = registry if registry is not None else load_registry()
    if key not in registry:
        raise WeightsError(f"{key}: not in the weights registry")
    entry = registry[key]
    if weights_dir and not Path(weights_dir).is_dir():
        raise WeightsError(f"--weights-dir {weights_dir}: not a folder")
    candidates = [d / key for d in search_dirs(weights_dir)]
    if weights_dir:  # an explicit folder may also hold the bare file names (enc4.pth, …)
        candidates.insert(1, Path(weights_dir) / Path(key).name)
    for candidate in candidates:
        if candidate.is_file():
            return _verify(entry, candidate)
    if not entry.sha256:
        raise WeightsError(
            f"{key}: not found, and it has no published sha256 so it is never downloaded; "
            f"fetch it from {entry.url} and pass its folder with --weights-dir "
            f"or put it at <dir>/{key} for a dir on ${ENV_PATH}"
        )
    if not download:
        raise WeightsError(f"{key}: not found in {', '.join(map(str, search_dirs(weights_dir)))}")
    return _download(entry, cache_dir() / key)


def _download(entry: Entry, dest: Path) -> Path:
    """Fetch to a temporary file beside ``dest``, verify, then rename: never a partial file."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=dest.name + ".", suffix=".part", dir=dest.parent)
    try:
        h = hashlib.sha256()
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(entry.url, timeout=60) as resp:
            total = int(resp.headers.get("Content-Length") or 0)
            with _progress(total, f"downloading {entry.key}") as bar:
                while chunk := resp.read(1 << 16):
                    out.write(chunk)
                    h.update(chunk)
                    bar.update(len(chunk))
        if h.hexdigest() != entry.sha256:
            raise WeightsError(
                f"{entry.key}: downloaded file from {entry.url} has sha256 {h.hexdigest()}, "
                f"expected {entry.sha256}; nothing was saved"
            )
        os.replace(tmp, dest)
        return dest
    except (urllib.error.URLError, OSError) as e:
        raise WeightsError(f"{entry.key}: download from {entry.url} failed ({e}); offline, pass a folder "
                           f"holding it with --weights-dir or ${ENV_PATH}") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _progress(total: int, desc: str):
    from tqdm import tqdm

    return tqdm(total=total or None, desc=desc, unit="B", unit_scale=True,
                disable=not sys.stderr.isatty(), leave=False)
