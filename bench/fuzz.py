"""Hostile files through ``read_image``: every case ends ok or as one clean ImageError line.

    python -m stylize.bench.fuzz --cases 20000 --seed 1 --workers 2

Seeds (:mod:`fuzz_corpus`) are small images in every format and layout we read (PNG, JPEG,
GIF, BMP, WebP, ICO, PCX, TGA, PPM, JPEG 2000, DDS, AVIF, TIFF in a dozen layouts and
compressions), plus tiny headers that claim huge images. Each case is a seed mutated one to three times
(truncation, byte flips, "interesting" integers written over header fields, slices deleted,
duplicated or spliced in from another seed), fully determined by ``(seed, case number)``: any
case can be replayed alone (``--replay N --keep DIR``).

Each case runs ``probe_image`` (the header-only checks, which must agree with the read),
``read_image`` read whole, and ``read_by_rows`` (what a source over 16 MP takes; where the
format allows it, it must give the whole read's pixels or fail as cleanly) in a worker
process under an address-space cap (RLIMIT_AS) and a wall-clock timeout; workers are reused until one times out, dies or runs out of memory. Outcomes:

* ok: an image came back; clean: an ImageError of one line naming the file;
* disagree: a damaged JPEG or PNG that one decoder reads and the other refuses cleanly (libvips
  by rows, Pillow whole; both give the same pixels wherever both read a file); any other format
  has one decoder, read whole or served by rows, and must agree with itself;
* other: any other exception, or an ImageError that is not one line naming the file (a bug);
* hang: over the timeout; over-memory: MemoryError under the cap; crash: the worker died;
* noise (counted beside the outcome): the read wrote to stderr (a decoder warning escaped).

Only ok, clean and disagree are acceptable; ``tests/test_hostile_input.py`` runs a few hundred cases.
"""
from __future__ import annotations

import multiprocessing as mp
import os
import resource
import sys
import tempfile
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from multiprocessing.connection import wait
from pathlib import Path

import numpy as np

from stylize.imageio import DEFAULT_MAX_PIXELS, ImageError, _into_ram, probe_image, read_by_rows, read_image

from .fuzz_corpus import bombs, mutate, seed_images

OUTCOMES = ("ok", "clean", "disagree", "other", "hang", "over-memory", "crash")
BAD = ("other", "hang", "over-memory", "crash")


@dataclass
class Config:
    seed: int = 1
    max_pixels: int = DEFAULT_MAX_PIXELS
    memory_cap: int = 3 << 30  # address space a worker may add over what it had at start
    timeout: float = 30.0


def _vm_size() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


def classify(path: Path, long_side: int | None, max_pixels: int) -> tuple[str, str]:
    """(outcome, detail) of one read, in this process; the header-only probe must agree with
    the read (same size, or refused by a read that fails too)."""
    probed = _attempt(lambda: probe_image(path, max_pixels, long_side=long_side), path)
    whole: list = []
    read = _attempt(lambda: _kept(whole, read_image(path, long_side, max_pixels, by_rows=False)).size, path)
    if probed[0] not in ("ok", "clean"):
        return probed[0], f"probe_image: {probed[1]}"
    if read[0] == "ok" and probed != read:
        return "other", f"probe_image said {probed[1]}, read_image gave {read[1]}"
    rows: list = []
    by_rows = _attempt(lambda: _rows_size(path, long_side, max_pixels, rows), path)
    if by_rows[0] not in ("ok", "clean", "whole"):
        return by_rows[0], f"read by rows: {by_rows[1]}"
    if by_rows[0] in ("ok", "clean") and (by_rows[0] == "ok") != (read[0] == "ok"):
        verdicts = f"read by rows: {by_rows[0]} ({by_rows[1]}), whole: {read[0]} ({read[1]})"
        with open(path, "rb") as f:
            two_decoders = f.read(8).startswith((b"\xff\xd8", b"\x89PNG"))
        # A damaged JPEG or PNG goes to libvips by rows and to Pillow whole: each decoder has
        # its own verdict on damage past the pixels (a JPEG's trailer, a PNG chunk's CRC). Both
        # are clean; every other format has one decoder (tifffile or Pillow), whose verdicts agree.
        return ("disagree" if two_decoders else "other"), verdicts
    if by_rows[0] == "ok" and not np.array_equal(rows[0].rgb, whole[0].rgb):
        return "other", f"read by rows gave {by_rows[1]}, not the whole read's pixels"
    return read


def _kept(into: list, image):
    into.append(image)
    return image


def _rows_size(path: Path, long_side: int | None, max_pixels: int, into: list) -> tuple[int, int]:
    """The size read by rows into ``into`` (what a large source takes); :class:`_Whole`
    where the format is read whole."""
    if not read_by_rows(path, long_side, max_pixels, _into_ram(into)):
        raise _Whole
    return into[0].size


class _Whole(Exception):
    """This file is read whole, not by rows: nothing to compare."""


def _attempt(call, path: Path) -> tuple[str, str]:
    try:
        w, h = call()
        return "ok", f"{w}x{h}"
    except ImageError as e:
        text = str(e)
        if "\n" in text or not text.startswith(f"{path}: "):
            return "other", f"unclear ImageError: {text[:300]!r}"
        return "clean", text[len(f"{path}: "):][:200]
    except _Whole:
        return "whole", ""
    except MemoryError:
        return "over-memory", "MemoryError"
    except Exception as e:  # noqa: BLE001 - the very thing we are looking for
        where = traceback.extract_tb(e.__traceback__)[-1]
        return "other", f"{type(e).__name__}: {str(e)[:200]} ({Path(where.filename).name}:{where.lineno})"


def _worker(conn, seeds: dict[str, bytes], cfg: Config) -> None:
    """Read cases until told to stop; stderr goes to a file so that any output is seen."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    cap = _vm_size() + cfg.memory_cap
    resource.setrlimit(resource.RLIMIT_AS, (cap if hard == resource.RLIM_INFINITY else min(cap, hard), hard))
    folder = Path(tempfile.mkdtemp(prefix="stylize-fuzz-"))
    err = os.open(folder / "stderr", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    os.dup2(err, 2)
    try:
        while (case := conn.recv()) is not None:
            name, data = mutate(seeds, cfg.seed, case)
            path = folder / f"case{case}{Path(name).suffix}"
            path.write_bytes(data)
            before = os.fstat(2).st_size
            outcome, detail = classify(path, 64 if case % 10 == 0 else None, cfg.max_pixels)
            path.unlink()
            conn.send((case, name, outcome, detail, os.fstat(2).st_size > before))
            if outcome == "over-memory":
                return  # the heap may be in pieces: a fresh worker takes over
    finally:
        for p in folder.iterdir():
            p.unlink()
        folder.rmdir()


@dataclass
class Summary:
    cases: int = 0
    counts: Counter = field(default_factory=Counter)
    noise: int = 0
    seconds: float = 0.0
    bad: list[tuple] = field(default_factory=list)  # (case, seed name, outcome, detail)

    @property
    def acceptable(self) -> bool:
        return not self.bad and not self.noise

    def lines(self) -> list[str]:
        counts = "  ".join(f"{o} {self.counts[o]}" for o in OUTCOMES)
        out = [f"{self.cases} cases in {self.seconds:.0f}s: {counts}  (stderr noise {self.noise})"]
        out += [f"  case {c} ({name}): {o}: {d}" for c, name, o, d in self.bad[:50]]
        return out


class _Slot:
    """One worker process and the case it is on."""

    def __init__(self, ctx, seeds: dict[str, bytes], cfg: Config):
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker, args=(child, seeds, cfg), daemon=True)
        self.proc.start()
        child.close()
        self.case: int | None = None
        self.since = 0.0

    def give(self, case: int) -> None:
        self.case, self.since = case, time.monotonic()
        self.conn.send(case)

    def stop(self, kill: bool = False) -> None:
        if kill:
            self.proc.kill()
        else:
            try:
                self.conn.send(None)
            except OSError:
                pass
        self.proc.join(5)
        self.conn.close()


def run(cases: int, cfg: Config | None = None, workers: int = 2, first: int = 0) -> Summary:
    """Cases ``first`` .. ``first + cases - 1`` of run ``cfg.seed``, on ``workers`` processes."""
    cfg = cfg or Config()
    seeds = seed_images()
    ctx = mp.get_context("forkserver")  # workers start clean, never forked from a threaded caller
    ctx.set_forkserver_preload([__name__])
    summary, todo, t0 = Summary(cases), iter(range(first, first + cases)), time.monotonic()
    slots = [_Slot(ctx, seeds, cfg) for _ in range(workers)]
    try:
        for s in slots:
            s.give(next(todo))
        while any(s.case is not None for s in slots):
            busy = [s for s in slots if s.case is not None]
            wait([s.conn for s in busy], timeout=1.0)
            for i, s in enumerate(slots):
                if s.case is None:
                    continue
                outcome = _collect(s, cfg, summary)
                if outcome is None:
                    continue
                if outcome in ("hang", "crash", "over-memory"):
                    s.stop(kill=True)
                    s = slots[i] = _Slot(ctx, seeds, cfg)
                s.case = None
                if (case := next(todo, None)) is not None:
                    s.give(case)
    finally:
        for s in slots:
            s.stop(kill=s.case is not None)
    summary.seconds = time.monotonic() - t0
    return summary


def _collect(s: _Slot, cfg: Config, summary: Summary) -> str | None:
    """The slot's outcome if it has one now (a result, a death, a timeout), else None."""
    try:
        if s.conn.poll():
            case, name, outcome, detail, noisy = s.conn.recv()
        elif time.monotonic() - s.since > cfg.timeout:
            case, name, outcome, detail, noisy = s.case, "?", "hang", f"over {cfg.timeout:.0f}s", False
        elif not s.proc.is_alive():
            raise EOFError
        else:
            return None
    except (EOFError, OSError):
        s.proc.join(5)
        case, name, outcome, detail, noisy = s.case, "?", "crash", f"worker exit code {s.proc.exitcode}", False
    if name == "?":
        name = mutate(seed_images(), cfg.seed, case)[0]
    summary.counts[outcome] += 1
    summary.noise += noisy
    if outcome in BAD or noisy:
        summary.bad.append((case, name, outcome, detail + (" [wrote to stderr]" if noisy else "")))
    return outcome


def main(argv: list[str] | None = None) -> int:
    import argparse

    p = argparse.ArgumentParser(prog="python -m stylize.bench.fuzz", description=__doc__.split("\n")[0])
    p.add_argument("--cases", type=int, default=1000)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--first", type=int, default=0, help="number of the first case")
    p.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS)
    p.add_argument("--memory-cap", type=float, default=3.0, help="GiB a worker may add to its address space")
    p.add_argument("--timeout", type=float, default=30.0, help="seconds per case")
    p.add_argument("--replay", type=int, help="write case N to --keep and read it here, with its traceback")
    p.add_argument("--keep", type=Path, default=Path("."), help="folder for --replay")
    a = p.parse_args(argv)
    cfg = Config(a.seed, a.max_pixels, int(a.memory_cap * (1 << 30)), a.timeout)
    if a.replay is not None:
        name, data = mutate(seed_images(), a.seed, a.replay)
        a.keep.mkdir(parents=True, exist_ok=True)
        path = a.keep / f"case{a.replay}{Path(name).suffix}"
        path.write_bytes(data)
        print(f"{path} (from {name}):", *classify(path, 64 if a.replay % 10 == 0 else None, a.max_pixels))
        return 0
    summary = run(a.cases, cfg, a.workers, a.first)
    print(f"fuzz: seed {a.seed}, cases {a.first}..{a.first + a.cases - 1}, {a.workers} workers, "
          f"max {a.max_pixels:,} pixels, cap +{a.memory_cap:g} GiB, timeout {a.timeout:g}s")
    print("\n".join(summary.lines()))
    return 0 if summary.acceptable else 1


if __name__ == "__main__":
    sys.exit(main())
