"""Keeping the C allocator from turning tiles into page faults and heap fragments.

Each tile allocates activations of tens to hundreds of MB and frees them again. Left alone,
glibc (a) serves them with fresh ``mmap``s the kernel zero-fills page by page (an 8K run took
90 million page faults; system time was most of its wall time) and (b) raises its mmap
threshold after each large free, so later blocks come from per-thread heaps that fragment
and never shrink (the same run's RSS crept up level after level to 3 GiB). Three tunables fix
both, measured on that 8K run (bench/, 2-core CPU): peak RSS 3.0 → 1.7 GiB, and about half
the wall time:

* ``hugetlb=1``: back large mappings with transparent huge pages (2 MiB), ~25x fewer faults;
* ``mmap_threshold=4 MiB``: fixed, so every large block is mapped and returned on free;
* ``arena_max=1``: one heap for the small rest, not one per thread.

glibc reads tunables only at process start, so the command-line entry point re-executes itself
once with them set, and benchmark children get them in their environment. A program that
imports the library is never changed behind its back.
"""
from __future__ import annotations

import os
import sys

TUNABLE = "glibc.malloc.hugetlb=1:glibc.malloc.mmap_threshold=4194304:glibc.malloc.arena_max=1"


def tuned_environ(env: dict[str, str] | None = None) -> dict[str, str]:
    """A copy of ``env`` with the allocator tunables added (other tunables kept)."""
    env = dict(os.environ if env is None else env)
    current = env.get("GLIBC_TUNABLES", "")
    if TUNABLE not in current:
        env["GLIBC_TUNABLES"] = f"{current}:{TUNABLE}" if current else TUNABLE
    return env


def reexec_with_tunables(module: str, argv: list[str]) -> None:
    """Re-run ``python -m module argv`` with the tunable set, once; no-op where unsupported
    or when STYLIZE_NO_REEXEC is set."""
    if (not sys.platform.startswith("linux") or os.environ.get("STYLIZE_NO_REEXEC")
            or TUNABLE in os.environ.get("GLIBC_TUNABLES", "")):
        return
    env = tuned_environ()
    env["STYLIZE_NO_REEXEC"] = "1"
    try:
        os.execve(sys.executable, [sys.executable, "-m", module, *argv], env)
    except OSError:
        return
