"""What a batch leaves behind, and what keeps two batches apart: each pair's result, the
end-of-batch summary, the JSON-lines report written as pairs finish, and the output folder's lock.

Kept apart from the loop (:mod:`stylize.batch_runner`) because the distributed batch
(:mod:`stylize.batch_ray`) records and reports exactly as the local one does: both import these.
"""
from __future__ import annotations

import errno
import json
import os
import sys
import traceback
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from threading import Lock
from typing import Callable

from stylize.engine.errors import UserError

from .batch_files import Pair
from .image_guard import describe_error
from .imageio import ImageError

LOCK_NAME = ".stylize-batch.lock"


@dataclass
class PairResult:
    pair: Pair
    status: str  # done | skipped | failed
    reason: str | None = None
    size: tuple[int, int] | None = None
    read_seconds: float = 0.0  # decoding the photo (charged to its first style)
    style_seconds: float = 0.0  # loading the style and computing its statistics (first use only)
    compute_seconds: float = 0.0
    write_seconds: float = 0.0

    def record(self, out_dir: Path) -> dict:
        out = self.pair.output
        return {"photo": str(self.pair.photo), "style": str(self.pair.style),
                "output": str(out.relative_to(out_dir)) if out.is_relative_to(out_dir) else str(out),
                "status": self.status, "reason": self.reason, "size": list(self.size) if self.size else None,
                "bytes": out.stat().st_size if self.status == "done" and out.is_file() else None,
                "read_seconds": round(self.read_seconds, 3), "style_seconds": round(self.style_seconds, 3),
                "compute_seconds": round(self.compute_seconds, 3), "write_seconds": round(self.write_seconds, 3)}


@dataclass
class BatchSummary:
    results: list[PairResult] = field(default_factory=list)
    pending: int = 0  # pairs this run had to compute (not skipped)
    ignored: list[Path] = field(default_factory=list)  # files in the folder that are not images
    seconds: float = 0.0
    interrupted: bool = False
    report: Path | None = None
    unreadable: list[tuple[Path, str]] = field(default_factory=list)  # FIFOs, sockets, link loops...
    report_error: str | None = None  # why the report is incomplete (the results are all here)

    def _with(self, status: str) -> list[PairResult]:
        return [r for r in self.results if r.status == status]

    @property
    def done(self) -> list[PairResult]:
        return self._with("done")

    @property
    def skipped(self) -> list[PairResult]:
        return self._with("skipped")

    @property
    def failed(self) -> list[PairResult]:
        return self._with("failed")

    @property
    def remaining(self) -> int:
        return self.pending - len(self.done) - len(self.failed)

    @property
    def images_per_minute(self) -> float:
        return 60 * len(self.done) / self.seconds if self.seconds > 0 else 0.0

    def lines(self) -> list[str]:
        """The end-of-batch summary: counts, then each failure with its reason (one line per photo)."""
        head = f"done {len(self.done)}, skipped {len(self.skipped)}, failed {len(self.failed)}"
        if self.interrupted:
            head = f"interrupted: {head}, not started {self.remaining} (rerun the same command to finish)"
        head += f" in {self.seconds:.1f}s"
        if self.done:
            head += f" ({self.images_per_minute:.2f} images/min)"
        lines = [head]
        grouped: dict[tuple[str, str], list[str]] = {}
        for r in self.failed:
            grouped.setdefault((str(r.pair.photo), r.reason or "?"), []).append(r.pair.style.stem)
        for (photo, reason), styles in grouped.items():
            lines.append(f"  failed: {photo} [{', '.join(styles)}]: {reason}")
        if self.ignored:
            lines.append(f"ignored {len(self.ignored)} file(s) that are not images, e.g. {self.ignored[0]}")
        for path, why in self.unreadable:
            lines.append(f"  skipped: {path}: {why}")
        if self.report:
            incomplete = f" is incomplete: {self.report_error}" if self.report_error else ""
            lines.append(f"report: {self.report}{incomplete}")
        return lines


class BatchInterrupted(KeyboardInterrupt):
    """Ctrl-C during a batch, after the cleanup: finished results are on disk, none is partial."""

    def __init__(self, summary: BatchSummary):
        super().__init__("batch interrupted")
        self.summary = summary


def is_bug(e: BaseException) -> bool:
    """Not a file, a setting, the disk or memory: what the command line shows with its traceback."""
    return not isinstance(e, (UserError, OSError, MemoryError)) and "out of memory" not in str(e).lower()


def failure_reason(e: BaseException, path: Path | None = None) -> str:
    """One line; an ImageError's leading 'PATH: ' is dropped (the record names the file).

    A bug fails its pair and the batch goes on, but it is not reduced to that line: its
    traceback goes to stderr (a Ray worker's stderr reaches the driver's console)."""
    msg = (str(e).strip().splitlines() or [""])[0]
    if path is not None and msg.startswith(f"{path}: "):
        msg = msg[len(f"{path}: "):]
    if not isinstance(e, ImageError):
        msg = f"{type(e).__name__}: {msg}" if msg else type(e).__name__
    if "out of memory" in msg.lower():
        msg += " (lower --max-memory or --tile)"
    if is_bug(e):
        sys.stderr.write("stylize batch: internal error (a bug, not a problem with your input; please report it "
                         "with this traceback); the pair fails and the batch goes on\n"
                         + "".join(traceback.format_exception(e)))
        msg += " (internal error: traceback on stderr)"
    return msg


class Report:
    """The JSON-lines report, one line per pair as each finishes (thread-safe).

    Each line goes to an ``O_APPEND`` file in one ``write``, so a line is whole whatever else
    writes to the file. A report that cannot be written (a full disk) never stops the batch
    or loses a result: the results stay in memory for the summary, which names the error.
    """

    def __init__(self, path: Path, out_dir: Path, on_result: Callable[[PairResult], None] | None):
        self.path, self.out_dir, self.on_result = path, out_dir, on_result
        self.results: list[PairResult] = []
        self.error: str | None = None
        self._lock = Lock()
        try:
            flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND | getattr(os, "O_CLOEXEC", 0)
            self._fd = os.open(path, flags, 0o666)
        except OSError as e:
            raise ImageError(f"{path}: cannot write the report ({describe_error(e)})") from None

    def add(self, result: PairResult, notify: bool = True) -> None:
        self.add_line(json.dumps(result.record(self.out_dir)), result)
        if notify and self.on_result:
            self.on_result(result)

    def add_line(self, line: str, result: PairResult | None = None) -> None:
        data = (line + "\n").encode()
        with self._lock:
            if result is not None:
                self.results.append(result)
            if self.error is None:
                try:
                    if os.write(self._fd, data) != len(data):
                        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                except OSError as e:
                    self.error = describe_error(e)

    def close(self) -> None:
        os.close(self._fd)


@contextmanager
def exclusive(out_dir: Path):
    """One batch per output folder at a time: a second would race on the same outputs.

    ``flock`` on a lock file that is never deleted (deleting it would let a batch that opened
    it a moment earlier, and one that creates it anew, both "hold" it), and on the folder
    itself, which no one can delete under a running batch. A lock the filesystem does not
    support is skipped: the batch runs unguarded, as it must on such a filesystem.
    """
    try:
        import fcntl
    except ImportError:  # no flock on this platform: run unguarded
        yield
        return
    held = []
    try:
        for target, flags in ((out_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT), (out_dir, os.O_RDONLY)):
            try:
                fd = os.open(target, flags | getattr(os, "O_CLOEXEC", 0), 0o666)
            except OSError as e:
                raise ImageError(f"{out_dir}: cannot lock the output folder ({describe_error(e)})") from None
            held.append(fd)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise ImageError(f"{out_dir}: another batch is writing into this folder") from None
            except OSError:  # a filesystem without this lock
                pass
        yield
    finally:
        for fd in held:
            os.close(fd)  # releases the lock; the lock file stays
