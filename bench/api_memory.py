"""The Python API under ``--max-memory``: peak RSS and output bytes of ``stylize_file`` called by
a program that holds memory of its own, with and without the command line's allocator settings.

A program that imports the library keeps glibc's allocator as it is (:mod:`stylize.allocator`
changes it only for the ``stylize`` command), and that allocator leaves freed tiles resident.
Each run is a child process (peak RSS from the kernel) that first fills ``--held`` MiB of
arrays of its own, then stylizes the sample pair at ``--res`` under ``--max-memory``. The peer
in the same run is the same call with the command line's allocator settings. Each row also
hashes its output: runs whose plans agree must write the same bytes, whatever the allocator
and whatever else the process holds below the engine's fixed charge.

    python -m stylize.bench.api_memory --out out/api_memory
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

from stylize.bench.measure import call_child
from stylize.models.weights import SAMPLE_CONTENT, SAMPLE_STYLE, resolve


def stylize_beside(held_mib: int, content: str, style: str, output: str, res: str, budget: str) -> None:
    """In the child: hold ``held_mib`` MiB of arrays of one's own, then stylize; print the plan."""
    import numpy as np

    from stylize import Settings, stylize_file

    held = np.ones(held_mib << 20, np.uint8)  # touched, so resident
    result = stylize_file(content, style, output, Settings(resolution=res, max_memory=budget, device="cpu",
                                                           stroke_scale="native"))
    print(json.dumps({"tiles": [p.tile for p in result.report.plans]}))
    del held  # held to the end of the run


def measure(out: Path, res: str, budget: str, held: list[int]) -> list[dict]:
    rows = []
    for mib in held:
        for tuned in (False, True):
            output = out / f"held{mib}_{'tuned' if tuned else 'plain'}.png"
            r = call_child(stylize_beside, mib, str(resolve(SAMPLE_CONTENT)), str(resolve(SAMPLE_STYLE)), output,
                           res, budget, tuned=tuned)
            plan = json.loads(r.output_tail.strip().splitlines()[-1]) if r.ok else None
            rows.append({"held_mib": mib, "allocator": "command line's" if tuned else "as imported",
                         "returncode": r.returncode, "wall_s": round(r.wall_s, 2),
                         "peak_rss_mib": round(r.peak_rss_bytes / 2**20), "tiles": plan and plan["tiles"],
                         "sha256": hashlib.sha256(output.read_bytes()).hexdigest()[:16] if r.ok else None,
                         "error": None if r.ok else r.output_tail.strip().splitlines()[-1]})
            print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--res", default="1600")
    ap.add_argument("--max-memory", default="1G")
    ap.add_argument("--held", default="0,48,300", help="MiB of its own arrays each child holds")
    ap.add_argument("--out", type=Path, default=Path("out/api_memory"))
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    rows = measure(a.out, a.res, a.max_memory, [int(v) for v in a.held.split(",")])
    report = {"res": a.res, "max_memory": a.max_memory, "python": sys.version.split()[0], "rows": rows}
    (a.out / "api_memory.json").write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
