"""What each Ray worker of ``stylize batch --ray`` holds (:func:`place`) and runs (:class:`PairWorker`).

A worker is a long-lived actor so that the models load once per worker, not once per photo.
It holds a copy of the planned :class:`~stylize.batch_runner.Batch` without its pairs and
calls that batch's own reader and writer and the local loop's per-pair step
(:func:`~stylize.batch_runner.stylize_group`), so a pair computed here gives the same pixels,
the same report record and the same failure reasons as the local batch: the cluster changes
where work runs, never what it makes.

Each result is written by the worker that made it (atomically, as the local batch writes), so
only small records travel back to the driver; style statistics travel the other way, computed
once per style and shared through the object store.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

from stylize.engine.errors import UserError

from .batch_files import Pair
from .batch_pipeline import InlineWriter, SequentialReader, WriterThread
from .batch_records import PairResult
from .batch_runner import Batch, StyleCache, stylize_group
from .imageio import ImageError
from .settings import Settings


class ClusterError(UserError):
    """The Ray cluster cannot run this batch: Ray missing or unreachable, no GPU, workers that never start."""


# What the driver hands a worker for each style: its statistics, or why the style is unusable.
StyleOutcome = tuple[object | None, str | None]


class _Collect:
    """Stands in for the report inside a worker: the driver writes the real one."""

    def __init__(self):
        self.results: list[PairResult] = []

    def add(self, result: PairResult, notify: bool = True) -> None:
        self.results.append(result)


class PairWorker:
    """The body of a Ray actor (``ray.remote(PairWorker)``); plain Python, so tests can subclass it.

    ``cwd`` is the driver's working folder: relative paths, as the user typed them, resolve
    the same way here (on a cluster, through shared storage mounted at the same place), and
    error messages name files exactly as the local batch names them.
    """

    def __init__(self, batch: Batch, cwd: str, threads: int | None = None):
        if os.path.isdir(cwd):
            os.chdir(cwd)
        if threads:
            import torch

            torch.set_num_threads(threads)
        self.batch = batch

    def load(self) -> tuple[int, str]:
        """Load the models now (a model that will not load stops the batch); returns this
        process's id and its Ray node, so that the driver can see it gone before cleaning up."""
        import ray

        self.batch._get_stylizer()
        return os.getpid(), ray.get_runtime_context().get_node_id()

    def style(self, path: Path) -> tuple[StyleOutcome, float]:
        """One style's statistics, computed here once and then shared with every worker (or, where
        the local batch would not cache them, e.g. ``--preserve-color style``, the style image)."""
        stylizer = self.batch._get_stylizer()
        try:
            stats, seconds = StyleCache(self.batch.opts, self.batch.cache_style).get(path, stylizer)
        except ImageError as e:
            return (None, str(e)), 0.0
        return (stats, None), seconds

    def group(self, group: list[Pair], *styles: StyleOutcome) -> list[PairResult]:
        """One photo with some styles (``styles[i]`` for ``group[i]``): read once, stylize, write each,
        with the local batch's own reader, per-pair step and writer."""
        batch = self.batch
        results = _Collect()
        shared = dict(zip([p.output for p in group], styles))

        def style_of(pair: Pair, stylizer, held: int) -> tuple[object, float]:
            stats, error = shared[pair.output]
            if error is not None:
                raise ImageError(error)
            return stats, 0.0  # the driver charges the seconds spent on it to the style's first pair

        writer = (WriterThread if batch.overlap_io else InlineWriter)(batch._save(results))
        try:
            for loaded in SequentialReader([group], batch._read):
                stylize_group(batch, loaded, style_of, results, writer)
        finally:
            writer.close()
        return results.results


@dataclass
class Placement:
    """How many workers, what each holds, and the settings they run with."""

    workers: int
    options: dict  # Ray resources of one worker
    settings: Settings  # device pinned to what a worker holds (its GPU is always its cuda:0)
    threads: int | None  # torch threads of a CPU worker: its share of the CPUs

    def describe(self) -> str:
        held = (f"{self.options['num_gpus']:g} GPU" if self.options.get("num_gpus")
                else f"{self.options['num_cpus']:g} CPU")
        return f"{self.workers} Ray worker(s), {held} each"


def _share(total: float, n: int) -> float:
    """Each of ``n`` workers' share of ``total``: Ray takes whole units above one, fractions below."""
    s = total / n
    return float(math.floor(s)) if s >= 1 else max(0.01, math.floor(s * 100) / 100)


def place(ray, settings: Settings, workers: int | None) -> Placement:
    """One worker per GPU when the settings' device resolves to CUDA on this cluster; otherwise
    one per node (or ``workers``), each with an equal share of the cluster's CPUs."""
    total = ray.cluster_resources()
    gpus = int(total.get("GPU", 0))
    device = str(settings.device)
    if device.startswith("cuda") or (device == "auto" and gpus):
        if not gpus:
            raise ClusterError(f"--device {device}: the Ray cluster has no GPU")
        n = workers or gpus
        return Placement(n, {"num_gpus": _share(gpus, n) if n > gpus else 1.0, "num_cpus": 1.0},
                         settings.with_(device="cuda"), None)
    nodes = [node["Resources"].get("CPU", 0) for node in ray.nodes() if node.get("Alive")]
    n = workers or max(1, sum(1 for c in nodes if c >= 1))
    share = min(_share(float(total.get("CPU", 1)), n), max(nodes, default=1))
    return Placement(n, {"num_cpus": share, "num_gpus": 0}, settings.with_(device="cpu"), max(1, int(share)))
