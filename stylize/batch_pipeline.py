"""The two I/O threads of a batch: a reader that decodes the next photo and a writer that
encodes the previous result while the engine computes the current one.

Both are bounded by a semaphore of one slot, so at most one decoded photo waits and one
result is being written: memory stays at a few image buffers however large the folder, and
the engine's memory planner (which charges the process its RSS when that is over its
fixed charge) sees them. Only the main thread
computes and only it receives Ctrl-C; the writer always finishes the file it is on (writes
are atomic), so an interrupt can never leave a partial image.
"""
from __future__ import annotations

import queue
import sys
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

_DONE = object()


@dataclass
class Loaded:
    key: Any  # what the caller asked to read (a group of pairs of one photo)
    value: Any  # the decoded image, or None on error
    error: Exception | None
    seconds: float


def _load(key: Any, read: Callable[[Any], Any]) -> Loaded:
    t = time.perf_counter()
    try:
        return Loaded(key, read(key), None, time.perf_counter() - t)
    except Exception as e:  # a bad file is a result to report, never the end of the batch
        return Loaded(key, None, e, time.perf_counter() - t)


class Prefetcher:
    """Iterate ``read(key)`` over ``keys`` one step ahead, in a worker thread."""

    def __init__(self, keys: Iterable[Any], read: Callable[[Any], Any], depth: int = 1):
        self._slots = threading.Semaphore(depth)
        self._queue: queue.Queue = queue.Queue()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(list(keys), read), name="batch-reader", daemon=True)
        self._thread.start()

    def _run(self, keys: list, read: Callable[[Any], Any]) -> None:
        try:
            for key in keys:
                while not self._slots.acquire(timeout=0.2):
                    if self._stop.is_set():
                        return
                if self._stop.is_set():
                    return
                self._queue.put(_load(key, read))
        finally:
            self._queue.put(_DONE)

    def __iter__(self) -> Iterator[Loaded]:
        while (item := self._queue.get()) is not _DONE:
            self._slots.release()  # the reader may start on the next photo now
            yield item

    def close(self) -> bool:
        """Stop reading; True when a Ctrl-C came meanwhile (the caller reports the batch
        interrupted: a Ctrl-C is never swallowed)."""
        self._stop.set()
        try:
            self._thread.join()
        except KeyboardInterrupt:  # don't wait for the read (it writes nothing)
            return True
        while not self._queue.empty():  # drop a prefetched image now, not at garbage collection
            self._queue.get_nowait()
        return False


class SequentialReader:
    """The same interface without a thread: read, then compute, then read (for comparison)."""

    def __init__(self, keys: Iterable[Any], read: Callable[[Any], Any]):
        self._keys, self._read = list(keys), read

    def __iter__(self) -> Iterator[Loaded]:
        for key in self._keys:
            yield _load(key, self._read)

    def close(self) -> bool:
        return False


class WriterThread:
    """Run ``save(job)`` for each submitted job in a worker thread, one job behind compute.

    ``save`` records its own failures (a file that cannot be written is a result). Anything
    it raises all the same (a bug, a callback that fails) stops the writer and is raised again
    in the main thread, at its next ``put`` or at ``close``: the main thread never waits on a
    writer that is gone. ``close`` waits for the queue to drain, so every computed result is
    kept; a Ctrl-C during that wait drops the results not yet started (they are recomputed on
    the rerun) but still finishes the current file.
    """

    def __init__(self, save: Callable[[Any], None], depth: int = 1):
        self._save = save
        self._slots = threading.Semaphore(depth)
        self._queue: queue.Queue = queue.Queue()
        self._abort = threading.Event()
        self._finished = threading.Event()
        self.dropped = 0
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="batch-writer")  # not daemon: never cut a write
        self._thread.start()

    def _run(self) -> None:
        try:
            self._write_jobs()
        finally:
            self._finished.set()

    def _write_jobs(self) -> None:
        while True:
            try:
                job = self._queue.get(timeout=0.5)
            except queue.Empty:
                if threading.main_thread().is_alive():
                    continue
                return  # the main thread is gone without closing us: never hold the process open
            if job is _DONE:
                return
            try:
                if self._abort.is_set() or self.error is not None:
                    self.dropped += 1
                else:
                    self._save(job)
            except BaseException as e:  # handed to the main thread; later jobs are dropped
                self.error = e
            finally:
                self._slots.release()

    def _raise_error(self) -> None:
        error, self.error = self.error, None
        if error is not None:
            self._abort.set()
            raise error

    def put(self, job: Any) -> None:
        while not self._slots.acquire(timeout=0.2):  # back-pressure: the previous result is being written
            self._raise_error()
        self._raise_error()
        self._queue.put(job)

    def close(self) -> bool:
        """Wait for the queued results; then raise what the writer raised, if nothing else is
        on its way out already (an exception in flight in the caller is never replaced).
        True when a Ctrl-C came during the wait: the results it dropped are not done, and the
        caller must report the batch interrupted, not finished."""
        self._queue.put(_DONE)
        interrupted = False
        while True:
            try:  # not Thread.join: on Python 3.11 a join cut by Ctrl-C marks a live thread stopped
                self._finished.wait()
                break
            except KeyboardInterrupt:
                self._abort.set()
                interrupted = True
        self._thread.join()
        if sys.exc_info()[1] is None:
            self._raise_error()
        return interrupted


class InlineWriter:
    """The same interface, writing in the caller's thread (for comparison)."""

    def __init__(self, save: Callable[[Any], None]):
        self._save = save
        self.dropped = 0

    def put(self, job: Any) -> None:
        self._save(job)

    def close(self) -> bool:
        return False

