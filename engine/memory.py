"""Turning a memory budget into a tile size and a feature-cache decision, per level.

The estimate is the model's own: ``LevelGeometry.peak_bytes_per_pixel`` comes from the
layer widths (input, its reflection-padded copy and the output of the widest layer), so a
new model family needs no new table. Measured peaks (``bench/``) keep it honest.
"""
from __future__ import annotations

import ctypes
import os
import re
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from .errors import UserError
from .geometry import LevelGeometry
from .tiles import padded_size, round_up

DEFAULT_CPU_BUDGET = 2 << 30
# On a host with less memory than that (a small container), the default is this share of it.
HOST_SHARE = 0.75
# Allocator slack and transient copies (tile read, crop, centred features) over the
# layer-width estimate, which alone is within 10% of a measured single-tile peak.
WORKING_OVERHEAD = 1.5
# A feature cache may take at most this share of what the tiles would otherwise get.
CACHE_SHARE = 0.35
MIN_TILE = 64
# What a lean process holds besides the images it is given: the interpreter, torch (or
# onnxruntime), the model and the decoders. Measured at plan time on the CLI, 290-330 MiB with
# either backend, and up to ~380 MiB in a program that keeps glibc's allocator as it is; the
# margin over that is what keeps plans independent of allocator noise.
RUNTIME_BYTES = 448 << 20
# A process that holds more than that is charged its RSS, rounded up to this step.
RSS_STEP = 64 << 20


class BudgetTooSmall(UserError):
    """The memory budget cannot hold the smallest efficient tile; the message names the least
    budget that works (the planner never silently falls to tiles that are mostly halo)."""

    def __init__(self, message: str, short: float):
        super().__init__(message)
        self.short = short  # bytes missing from what the tiles may use


def floor_tile(g: LevelGeometry) -> int:
    """The smallest core side worth running: at least twice the halo, so a tile computes at
    most (1 + 2·halo/core)² = 4x its own pixels, and at least MIN_TILE."""
    halo = round_up(g.radius, g.stride)
    return round_up(max(MIN_TILE, 2 * halo), g.stride)


def floor_bytes(g: LevelGeometry) -> float:
    """What a floor tile needs, read region included."""
    side = floor_tile(g) + 2 * round_up(g.radius, g.stride)
    return working_bytes(g, side, side)


def parse_size(text: str | int | None) -> int | None:
    """'2G', '1536M', '800MiB', or a byte count → bytes. None stays None."""
    if text is None or isinstance(text, int):
        return text
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]?)(?:i?b)?\s*", str(text), re.IGNORECASE)
    if not m:
        raise ValueError(f"not a memory size: '{text}' (use e.g. 2G, 1536M)")
    return int(float(m.group(1)) * 1024 ** "_kmgt".index(m.group(2).lower() or "_"))


def current_rss() -> int:
    """Resident set size of this process now (Linux), 0 where unknown."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):
        return 0


def held_bytes(resident: int = 0, measured: bool = False) -> int:
    """What the process holds when a plan is made: ``RUNTIME_BYTES`` plus the ``resident``
    bytes of images it is known to hold, or its RSS (rounded up to ``RSS_STEP``) when that is
    more (a caller's own arrays, a batch's next photo). ``measured``: its RSS as it is, for a
    budget too tight for the charge.

    A charge, not a measurement, so the same run plans the same tiles every time: the tile
    side decides the last bit of the output (two 8K runs whose RSS differed by 7 MiB planned
    1616 and 1613 px tiles and differed by 1/255 on 0.06% of the pixels). RSS still bounds it,
    so the budget holds whatever else the process keeps. RSS is read after the freed heap is
    handed back, so that it counts what is held."""
    charge = RUNTIME_BYTES + resident
    rss = current_rss()
    if (measured or rss > charge) and release_free_heap():
        rss = current_rss()
    if measured:
        return rss
    return charge if rss <= charge else round_up(rss, RSS_STEP)


@lru_cache(maxsize=1)
def _malloc_trim():
    try:
        return ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None


def release_free_heap() -> bool:
    """Hand the C heap's free pages back to the system (glibc ``malloc_trim``), so that RSS
    counts what is held, not what was freed. Without the allocator tunables of the command line
    (:mod:`stylize.allocator`; a program that imports the library keeps its allocator as it
    is), a style's encoding leaves ~90 MiB of freed heap resident and tiles fragment the heap
    past the budget. False where there is no glibc."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True


def settle(ceiling: float) -> None:
    """Between tiles: when RSS is over ``ceiling`` (the budget less what the next tile needs),
    give the freed heap back first. Reading RSS costs microseconds; the trim is paid only then."""
    if current_rss() > ceiling:
        release_free_heap()


# The RSS the tiles in progress may reach on the host (the budget less its margin), or None.
_ceiling: ContextVar[float | None] = ContextVar("heap_ceiling", default=None)


@contextmanager
def heap_ceiling(ceiling: float | None):
    """While tiles run on the CPU: the RSS the process may reach, for :func:`room_for`."""
    token = _ceiling.set(ceiling)
    try:
        yield
    finally:
        _ceiling.reset(token)


def room_for(nbytes: int) -> None:
    """Before a backend step (a layer) that allocates ``nbytes``, inside :func:`heap_ceiling`:
    give the freed heap back first when RSS plus that would pass the ceiling.

    Trimming between tiles is not enough where glibc's allocator is as imported: a layer's
    output lands above the holes its predecessors freed, and one tile's layers grew a run
    holding 300 MiB of the caller's arrays to 1094 MiB under a 1 GiB budget (bench/api_memory).
    Checking before each layer keeps it under the budget at no measured cost; a ceiling
    that trimmed before most layers (the budget less the whole tile) cost 12-22 % of the time."""
    ceiling = _ceiling.get()
    if ceiling is not None:
        settle(ceiling - nbytes)


@dataclass(frozen=True)
class HostMemory:
    bytes: int
    what: str  # "of RAM" (and swap), or "under its container's limit" when a cgroup allows less


@lru_cache(maxsize=8)  # read once per process: every default budget and every read's limit asks
def host_memory(proc: Path = Path("/proc"), cgroups: Path = Path("/sys/fs/cgroup")) -> HostMemory | None:
    """The most memory this process can have (Linux): RAM and swap, or its cgroup's limit (v2
    ``memory.max``, v1 ``memory.limit_in_bytes``, the least along the path) when lower. A
    budget over it is not a budget: the kernel kills the run part-way, and a killed run cannot
    remove its scratch files. None where unknown. Cached: a limit changed under a running
    process is not seen until the next run."""
    try:
        info = dict(re.findall(r"^(\w+):\s+(\d+) kB", (proc / "meminfo").read_text(), re.M))
        ram, swap = int(info["MemTotal"]) * 1024, int(info.get("SwapTotal", 0)) * 1024
        lines = (proc / "self" / "cgroup").read_text().splitlines()
    except (OSError, KeyError, ValueError):
        return None
    limits = []
    for line in lines:  # "0::/path" (v2) or "4:memory:/path" (v1)
        _, controllers, path = line.split(":", 2)
        if controllers == "" and (cgroups / "cgroup.controllers").is_file():
            root, name = cgroups, "memory.max"
        elif "memory" in controllers.split(","):
            root, name = cgroups / "memory", "memory.limit_in_bytes"
        else:
            continue
        here = Path(path.lstrip("/"))
        for folder in (here, *here.parents):  # the limit of every ancestor applies too
            try:
                limits.append(int((root / folder / name).read_text().strip()))
            except (OSError, ValueError):  # absent, or "max"
                pass
    least = min(limits, default=ram + swap)
    if least < ram + swap:
        return HostMemory(least, "under its container's limit")
    return HostMemory(ram + swap, "of RAM and swap" if swap else "of RAM")


def default_cpu_budget() -> int:
    """``DEFAULT_CPU_BUDGET``, or ``HOST_SHARE`` of the host's memory where that is less."""
    host = host_memory()
    return DEFAULT_CPU_BUDGET if host is None else min(DEFAULT_CPU_BUDGET, int(HOST_SHARE * host.bytes))


def check_host_budget(budget: int | None) -> None:
    """A CPU budget the host cannot give is a one-line error before any work, not a run the
    kernel kills part-way (leaving its scratch files behind)."""
    host = host_memory() if budget else None
    if host is not None and budget > host.bytes:
        fit = int(HOST_SHARE * host.bytes)
        hint = f"{fit >> 30}G" if fit >= 1 << 30 else f"{fit >> 20}M"
        raise UserError(f"--max-memory {budget / 2**30:.1f} GiB is more than this machine has "
                        f"({host.bytes / 2**30:.1f} GiB {host.what}): the system would kill the run part-way; "
                        f"give less, e.g. --max-memory {hint}")


@dataclass(frozen=True)
class LevelPlan:
    level: int
    padded: tuple[int, int]  # the image as the level sees it (sides multiples of the stride)
    tile: int | None  # core side; None = whole image in one piece
    cache_features: bool  # keep pass-1 features for pass 2 instead of re-encoding

    def describe(self) -> str:
        t = "whole image" if self.tile is None else f"tiles of {self.tile}px"
        return f"level {self.level}: {t}, features {'cached' if self.cache_features else 'recomputed'}"


def working_bytes(g: LevelGeometry, side_h: int, side_w: int) -> float:
    return side_h * side_w * g.peak_bytes_per_pixel * WORKING_OVERHEAD


def feature_bytes(g: LevelGeometry, padded: tuple[int, int]) -> int:
    return g.channels * (padded[0] // g.stride) * (padded[1] // g.stride) * 4


def _largest_tile(g: LevelGeometry, room: float) -> int:
    """The largest core side (a multiple of the stride) whose read region fits ``room`` bytes."""
    side = (max(room, 0) / (g.peak_bytes_per_pixel * WORKING_OVERHEAD)) ** 0.5
    return (int(side) - 2 * round_up(g.radius, g.stride)) // g.stride * g.stride


def plan_level(g: LevelGeometry, height: int, width: int, available: float,
               tile: int | None = None) -> LevelPlan:
    """Whole image if it fits ``available`` bytes; else the largest tile that does.

    Caching: pass 1 has computed every feature already; keeping them spares pass 2 the
    encoder *and* the encoder's share of the halo. Deep levels have small features (level 5
    stores 2 B/px, level 1 96 B/px) and costly encoders, shallow levels the reverse, so the
    cache is taken exactly when it is a small share of the budget, which selects the deep
    levels first at any resolution.
    """
    padded = padded_size(height, width, g.stride, 2 * g.stride)
    if tile is None and working_bytes(g, *padded) <= available:
        return LevelPlan(g.level, padded, None, True)
    cache = feature_bytes(g, padded) <= CACHE_SHARE * available
    if tile is None:
        tile = _largest_tile(g, available - (feature_bytes(g, padded) if cache else 0))
        if cache and tile < floor_tile(g):  # the cache is a speed-up: give it up before the tile size
            cache, tile = False, _largest_tile(g, available)
        if tile < floor_tile(g):
            whole = max(padded) <= floor_tile(g)  # smaller than that tile: the image itself is the least
            need = working_bytes(g, *padded) if whole else floor_bytes(g)
            what = "the whole image" if whole else f"its smallest efficient tile, {floor_tile(g)} px,"
            raise BudgetTooSmall(f"the memory budget is {(need - available) / 2**20:.0f} MiB short for level "
                                 f"{g.level} at {width}x{height} ({what} needs {need / 2**20:.0f} MiB)",
                                 need - available)
    if tile >= max(padded):
        return LevelPlan(g.level, padded, None, True)
    return LevelPlan(g.level, padded, round_up(tile, g.stride), cache)
