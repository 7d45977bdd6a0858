"""Throughput of ``stylize batch`` on a Ray cluster against the local batch, and what Ray costs per pair.

    python -m stylize.bench.batch_ray_throughput --out out/ray-bench [--res 512] [--subset 8] [--workers 1,2]

On the photo folder of :mod:`stylize.bench.batch_throughput` (its first --subset photos of the
comparison subset, two styles), back to back, each a fresh process timed end to end:

- the local batch (the default);
- ``--workers N`` for each N: a local Ray cluster started by the command on all cores, N
  workers each holding cores/N CPUs (and as many torch threads).

Timings on a shared machine drift, so the variants run in --rounds interleaved rounds and each
is judged by its fastest run (a run that failed, e.g. killed from outside, never counts).

Start-up differs (Ray starts a cluster, then each worker imports torch and loads the models),
so each variant also runs once on a single tiny pair; the overhead per pair is what Ray adds
beyond that fixed cost: ((wall - tiny wall) for Ray - the same for local) / pairs.

Honest reading on a small machine: workers share the same cores the local batch already keeps
busy with its torch threads, so more workers cannot add compute; what they can win is overlap
(one worker reads or writes while another computes) and what they cost is scheduling and
start-up. On a cluster, throughput scales with the nodes or GPUs the workers hold.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
from pathlib import Path

from .batch_throughput import DEFAULT_IMAGES, STYLES, SUBSET, batch_cmd, build_folder, report, timed


def subset_folder(photos: Path, dest: Path, count: int) -> int:
    """Copy the first ``count`` photos of the comparison subset into ``dest`` (flat)."""
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    chosen = SUBSET[: max(1, min(count, len(SUBSET)))]
    for rel in chosen:
        shutil.copyfile(photos / rel, dest / Path(rel).name)
    return len(chosen)


def measure(label: str, cmd_for, out: Path) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    run = timed(cmd_for(out), label)
    rows = report(out)
    run["pairs"] = sum(r["status"] == "done" for r in rows)
    run["engine_s"] = sum(r["compute_seconds"] + r["style_seconds"] for r in rows)
    return run


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--res", default="512")
    ap.add_argument("--subset", type=int, default=8, help="photos (max 8), each with 2 styles")
    ap.add_argument("--workers", default="1,2", help="comma list of Ray worker counts")
    ap.add_argument("--rounds", type=int, default=2, help="interleaved repetitions; the fastest of each counts")
    ap.add_argument("--images", type=Path, default=DEFAULT_IMAGES)
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    build_folder(args.out / "photos", args.images)
    folder, tiny = args.out / "subset", args.out / "tiny"
    count = subset_folder(args.out / "photos", folder, args.subset)
    subset_folder(args.out / "photos", tiny, 1)
    styles = [args.images / s for s in STYLES]
    variants = [("local batch", [])] + [(f"ray --workers {n}", ["--workers", n]) for n in args.workers.split(",")]
    print(f"{count} photos × {len(styles)} styles at --res {args.res} on {os.cpu_count()} CPU(s)")

    runs: dict[str, dict[str, list[dict]]] = {}
    for round_ in range(args.rounds):  # interleaved; each variant keeps its fastest (least disturbed) run
        for label, flags in variants:
            slug = label.replace(" ", "_").replace("-", "")
            mine = runs.setdefault(label, {"full": [], "fixed": []})
            mine["full"].append(measure(f"{label}, round {round_ + 1}",
                                        lambda out: batch_cmd(folder, styles, out, args.res, flags), args.out / slug))
            mine["fixed"].append(measure(f"{label}, 1 tiny pair, round {round_ + 1}",
                                         lambda out: batch_cmd(tiny, styles[:1], out, "64", flags),
                                         args.out / f"{slug}_tiny"))
    fastest = lambda rs: min((r for r in rs if r["rc"] == 0), key=lambda r: r["wall_s"])  # noqa: E731
    rows = [{"label": label, "full": fastest(r["full"]), "fixed": fastest(r["fixed"]), "all": r}
            for label, r in runs.items()]

    local = rows[0]
    print(f"\nfastest of {args.rounds} round(s)")
    print(f"{'variant':<20}{'pairs':>6}{'wall s':>9}{'images/min':>12}{'engine s':>10}{'start-up s':>12}"
          f"{'overhead/pair s':>17}")
    for row in rows:
        full, fixed = row["full"], row["fixed"]
        row["images_per_min"] = 60 * full["pairs"] / full["wall_s"]
        marginal = (full["wall_s"] - fixed["wall_s"]) - (local["full"]["wall_s"] - local["fixed"]["wall_s"])
        row["overhead_per_pair_s"] = marginal / max(1, full["pairs"])
        print(f"{row['label']:<20}{full['pairs']:>6}{full['wall_s']:>9.1f}{row['images_per_min']:>12.2f}"
              f"{full['engine_s']:>10.1f}{fixed['wall_s']:>12.1f}{row['overhead_per_pair_s']:>17.2f}")
    print("engine s: the workers' compute and style seconds, summed over workers; start-up s: the same command "
          "on one 64-px pair")
    (args.out / "ray_throughput.json").write_text(json.dumps({"res": args.res, "photos": count, "cpus": os.cpu_count(),
                                                              "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
