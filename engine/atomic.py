"""Files that appear complete or not at all: every result, export, engine and download.

A writer gets a temporary path beside the destination and the file is renamed into place
only when it is complete, so an interrupted run never leaves a partial file and a present
file can be trusted (a batch skips it, a cache reuses it). Temporary names are
``.NAME.XXXX.part<suffix>``: hidden, recognisable, and removable by the next run to NAME.
"""
from __future__ import annotations

import glob
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from .errors import UserError


def _read_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# Read once at import: os.umask can only be read by setting it, which must not race with
# writer threads.
_UMASK = _read_umask()


def publish(tmp: str | os.PathLike, path: str | os.PathLike) -> None:
    """Rename a finished temporary file into place with the permissions any new file gets:
    ``mkstemp`` makes it 0600, and a result must not stay private to its writer."""
    os.chmod(tmp, 0o666 & ~_UMASK)
    os.replace(tmp, path)


def part_pattern(path: Path) -> str:
    """Glob pattern of the temporary files :func:`atomic_path` makes for ``path``."""
    return glob.escape(str(path.parent / f".{path.name}.")) + "*.part" + glob.escape(path.suffix)


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it into place only on success."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part" + path.suffix, dir=path.parent or ".")
    os.close(fd)
    try:
        yield Path(tmp)
        publish(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def remove_stale_parts(path: str | os.PathLike) -> int:
    """Delete temporary files a killed run left beside ``path``; they are never complete."""
    removed = 0
    for stale in glob.glob(part_pattern(Path(path))):
        try:
            os.unlink(stale)
            removed += 1
        except OSError:
            pass
    return removed


def output_folder(path: str | os.PathLike, what: str = "output folder") -> Path:
    """Create ``path`` (and its parents) if missing and prove it writable, before any compute:
    a folder that cannot take the results is one line, not a traceback after the work."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise UserError(f"{path}: not a folder (the {what} must be one)")
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".stylize-probe-"):
            pass
    except OSError as e:
        raise UserError(f"{path}: cannot write the {what} there ({e.strerror or e})") from None
    return path
