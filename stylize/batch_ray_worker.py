"""What one Ray worker of ``stylize batch --ray`` runs: the local batch's per-pair path, in an actor.

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

import os
from pathlib import Path

from .batch_files import Pair
from .batch_pipeline import InlineWriter, SequentialReader, WriterThread
from .batch_runner import Batch, PairResult, StyleCache, stylize_group
from .imageio import ImageError

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
        """One style's statistics, computed here once and then shared with every worker."""
        stylizer = self.batch._get_stylizer()
        try:
            stats, seconds = StyleCache(self.batch.opts).get(path, stylizer)
        except ImageError as e:
            return (None, str(e)), 0.0
        return (stats, None), seconds

    def group(self, group: list[Pair], *styles: StyleOutcome) -> list[PairResult]:
        """One photo with some styles (``styles[i]`` for ``group[i]``): read once, stylize, write each,
        with the local batch's own reader, per-pair step and writer."""
        batch = self.batch
        results = _Collect()
        shared = dict(zip([p.output for p in group], styles))

        def style_of(pair: Pair, stylizer) -> tuple[object, float]:
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
