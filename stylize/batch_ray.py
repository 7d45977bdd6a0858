"""``stylize batch ... --ray ADDRESS`` / ``--workers N``: the same batch, spread over a Ray cluster.

    from stylize.batch_ray import RayBatch
    summary = RayBatch("photos", ["starry.jpg"], "out", Settings(resolution="2k"), workers=4).run()

What stays the local batch's own (:class:`~stylize.batch_runner.Batch`, which this subclasses):
planning and skipping, the one-batch-per-folder lock, the JSON-lines report (written here, by
the driver, one line per pair), the summary and Ctrl-C. What changes is only where pairs are
computed: :class:`~stylize.batch_ray_worker.PairWorker` actors, each loading the models once
and holding one GPU, or a share of the CPUs, run the local batch's per-pair code.

- Style statistics: one worker computes each style's once; the driver ``ray.put``s them, so the
  object store (owned by the driver, outliving any worker) hands them to every worker.
- Work: one task per photo (read once for all its styles), at most :data:`DEPTH` queued per
  worker, so a worker never waits for the driver between photos.
- Atomicity: the worker that made a result writes it (atomically) to the output folder, which
  on a real cluster is shared storage; only small records come back.
- A worker that dies (killed, out of memory, a lost node) is replaced by a fresh one. The task
  it was running is retried elsewhere, split into single pairs so that one bad pair cannot take
  its photo's other styles down with it; a pair is tried at most :data:`MAX_ATTEMPTS` times and
  then reported failed (never retried forever). Tasks merely queued behind it are resubmitted
  uncharged. Temporary files of a killed writer are removed once its death is confirmed.
- Pixels: a result's bytes equal the local batch's at the same torch thread count (convolutions
  sum in a thread-dependent order, and WCT on small images magnifies those last bits). A CPU
  worker runs as many threads as it holds CPUs, so one worker per machine is the local batch
  exactly, and N workers each give what the local batch gives with OMP_NUM_THREADS=cores/N.
"""
from __future__ import annotations

import logging
import os
import signal
import socket
import time
from collections import deque
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from stylize.engine.atomic import remove_stale_parts
from stylize.engine.errors import UserError

from .batch_files import Pair
from .batch_ray_worker import ClusterError, PairWorker, Placement, place
from .batch_records import PairResult, Report
from .batch_runner import Batch
from .settings import Settings

RAY_EXTRA = "pip install 'stylize[ray]'"
MAX_ATTEMPTS = 3  # tries per pair (and worker starts in a row) before giving up
DEPTH = 2  # calls queued per worker: the next photo is there the moment the current one ends
STOP_WAIT_S = 10.0  # how long to wait for stopped workers to be confirmed dead
_RAY_ATTRS = ("address", "workers", "worker_class", "pids", "lost", "retried", "placement")  # not for the workers


def require_ray():
    """The ``ray`` module, or a one-line error naming the extra that installs it."""
    try:
        import ray
    except ImportError:
        raise ClusterError(f"--ray needs Ray, which is not installed: {RAY_EXTRA}") from None
    return ray


@contextmanager
def connected(ray, address: str, num_cpus: int | None = None):
    """Join the cluster at ``address`` ('local' starts one for this batch, with ``num_cpus`` or
    all cores; 'auto' finds the one ``ray start`` runs on this machine) and leave it afterwards,
    taking Ray's marks off this process (its SIGTERM handler, its environment variables). A
    session the caller already opened (an embedding program) is used as it is, and left open."""
    if ray.is_initialized():
        yield
        return
    local = address == "local"
    check_reachable(address)
    env = dict(os.environ)
    try:
        with own_sigterm():
            try:
                ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False,
                         **({"include_dashboard": False, "num_cpus": num_cpus} if local else {}))
            except (ConnectionError, RuntimeError, ValueError) as e:
                first = (str(e).strip().splitlines() or [type(e).__name__])[0]
                hint = "" if local else " (a cluster with token authentication also needs RAY_AUTH_MODE=token here)"
                raise ClusterError(f"--ray {address}: cannot {'start' if local else 'join'} the Ray cluster: "
                                   f"{first}{hint}") from None
        try:
            yield
        finally:
            ray.shutdown()
    finally:
        os.environ.clear()
        os.environ.update(env)


def check_reachable(address: str, timeout: float = 10.0) -> None:
    """A HOST:PORT (or ray://HOST:PORT) that nothing answers on is one line now: ``ray.init``
    would keep retrying it for minutes."""
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit():
        return  # 'local', 'auto' or a form Ray resolves itself
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as e:
        raise ClusterError(f"--ray {address}: nothing answers there ({e.strerror or e}); start the cluster with "
                           "'ray start --head' and give its address") from None


@contextmanager
def own_sigterm():
    """Keep the SIGTERM handler the caller had: ``ray.init`` installs its own (an exit, with no
    summary) and leaves it installed, where the batch's makes SIGTERM a clean Ctrl-C."""
    try:
        previous = signal.getsignal(signal.SIGTERM)
    except ValueError:  # not the main thread: Ray installs nothing either
        previous = None
    try:
        yield
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def forwarded_env() -> dict | None:
    """The driver's ``STYLIZE_*`` variables (the weights path above all), given to every worker:
    on a cluster the nodes see the same shared storage, but not the driver's environment."""
    env = {k: v for k, v in os.environ.items() if k.startswith("STYLIZE_")}
    return {"env_vars": env} if env else None


@dataclass
class _Task:
    pairs: list[Pair]  # one photo's pairs; empty for a style task
    style: Path | None = None
    attempts: int = 0


@dataclass
class _Worker:
    actor: Any
    calls: list = field(default_factory=list)  # object refs in submission order: the first is running
    pid: int | None = None  # set once its models have loaded


class RayBatch(Batch):
    """A :class:`Batch` whose pairs run on Ray workers (``address`` as for :func:`connected`).

    ``worker_class`` is the actor's body (tests pass a subclass that misbehaves). After a run,
    ``pids`` lists the worker processes that started, ``lost`` counts those that died and
    ``retried`` the pairs resubmitted because of it.
    """

    def __init__(self, *args, address: str = "local", workers: int | None = None,
                 worker_class: type = PairWorker, **kwargs):
        if workers is not None and workers < 1:
            raise ClusterError(f"--workers must be at least 1, got {workers}")
        super().__init__(*args, **kwargs)
        self.address, self.workers, self.worker_class = address, workers, worker_class
        self.pids: list[int] = []
        self.lost = self.retried = 0
        self.placement: Placement | None = None

    def _compute(self, report: Report, on_start: Callable[[Pair], None] | None) -> bool:
        """Replaces the local loop; returns True when interrupted (as the local one does)."""
        if not self.pending:
            return False
        ray = require_ray()
        with connected(ray, self.address):
            self.placement = place(ray, self.opts, self.workers)
            scheduler = _Scheduler(ray, self, report, on_start)
            try:
                scheduler.run()
            except KeyboardInterrupt:
                return True
            finally:
                scheduler.close()
        return False

    def worker_template(self, settings: Settings) -> Batch:
        """This batch without its pairs and with the workers' settings: what each worker needs
        to read, stylize and write exactly as the local batch does."""
        template = Batch.__new__(Batch)
        template.__dict__.update({k: v for k, v in vars(self).items() if k not in _RAY_ATTRS})
        template.pairs, template.pending, template.skipped, template.ignored, template.unreadable = [], [], [], [], []
        template.opts, template._stylizer = settings, None
        return template


class _Scheduler:
    """Keeps every worker busy, merges results into the report, and replaces workers that die."""

    def __init__(self, ray, batch: RayBatch, report: Report, on_start: Callable[[Pair], None] | None):
        self.ray, self.batch, self.report, self.on_start = ray, batch, report, on_start
        p = batch.placement
        self.actor_class = ray.remote(batch.worker_class).options(max_restarts=0, max_task_retries=0,
                                                                  runtime_env=forwarded_env(), **p.options)
        self.template, self.cwd, self.threads = batch.worker_template(p.settings), os.getcwd(), p.threads
        self.inflight: dict[Any, tuple[_Worker, _Task | None]] = {}  # ref → (worker, task; None: loading)
        self.queue: deque[_Task] = deque()
        self.style_refs: dict[Path, Any] = {}  # style → object-store ref of its (statistics, error)
        self.style_seconds: dict[Path, float] = {}  # charged to the first pair that uses the style
        self.touched: list[Pair] = []  # pairs a dead worker may have been writing
        self.failed_starts = 0
        self.node, self.local_pids = ray.get_runtime_context().get_node_id(), []  # workers on the driver's node
        self.workers = [self._spawn() for _ in range(p.workers)]

    def run(self) -> None:
        styles = list(dict.fromkeys(p.style for p in self.batch.pending))
        self._drive([_Task([], style=s) for s in styles], self._style_done)
        self._drive([_Task(group) for group in self.batch._groups()], self._group_done)

    # -- submitting ----------------------------------------------------------------------------
    def _spawn(self) -> _Worker:
        worker = _Worker(self.actor_class.remote(self.template, self.cwd, self.threads))
        self._track(worker, None, worker.actor.load.remote())
        return worker

    def _track(self, worker: _Worker, task: _Task | None, ref) -> None:
        worker.calls.append(ref)
        self.inflight[ref] = (worker, task)

    def _submit(self, worker: _Worker, task: _Task) -> None:
        if task.style is not None:
            ref = worker.actor.style.remote(task.style)
        else:
            ref = worker.actor.group.remote(task.pairs, *[self.style_refs[p.style] for p in task.pairs])
            if self.on_start:
                self.on_start(task.pairs[0])
        self._track(worker, task, ref)

    def _fill(self) -> None:
        """Round-robin, so a few tasks (the styles) spread over all workers instead of queueing on one."""
        while self.queue:
            room = [w for w in self.workers if len(w.calls) < DEPTH + (w.pid is None)]
            if not room:
                return
            for worker in room[:len(self.queue)]:
                self._submit(worker, self.queue.popleft())

    # -- collecting ----------------------------------------------------------------------------
    def _drive(self, tasks: list[_Task], done: Callable[[_Task, Any], None]) -> None:
        """Run ``tasks`` to the end, through deaths and retries; ``done(task, value)`` for each."""
        self.queue.extend(tasks)
        while self.queue or any(task is not None for _, task in self.inflight.values()):
            self._fill()
            [ref], _ = self.ray.wait(list(self.inflight), num_returns=1)
            worker, task = self.inflight[ref]
            ok, value = self._get(ref)
            if not ok:
                self._replace(worker, done)
                continue
            del self.inflight[ref]
            worker.calls.remove(ref)
            self._finished(worker, task, value, done)

    def _get(self, ref, timeout: float | None = None) -> tuple[bool, Any]:
        """(True, value), or (False, error) when the worker is gone. An exception our own code
        raised in a worker (a model that will not load, a bug) stops the batch, as it does locally."""
        try:
            return True, self.ray.get(ref, timeout=timeout)
        except self.ray.exceptions.RayTaskError as e:
            if isinstance(e.cause, UserError):
                raise e.cause from None
            raise
        except self.ray.exceptions.RayError as e:  # the actor died or is unreachable
            return False, e

    def _finished(self, worker: _Worker, task: _Task | None, value: Any, done) -> None:
        if task is None:
            worker.pid, node = value
            self.batch.pids.append(worker.pid)
            if node == self.node:
                self.local_pids.append(worker.pid)
            self.failed_starts = 0
        else:
            done(task, value)

    def _style_done(self, task: _Task, value: tuple) -> None:
        outcome, seconds = value
        self.style_refs[task.style] = self.ray.put(outcome)
        self.style_seconds[task.style] = seconds

    def _group_done(self, task: _Task, results: list[PairResult]) -> None:
        for result in results:
            if result.size is not None:  # the photo was read: the style was used
                result.style_seconds = self.style_seconds.pop(result.pair.style, 0.0)
            self.report.add(result)

    # -- deaths --------------------------------------------------------------------------------
    def _replace(self, worker: _Worker, done) -> None:
        """A worker died: keep what it finished, charge the call it died in, requeue the rest
        (uncharged: they never started), and start a fresh worker in its place."""
        self.batch.lost += 1
        self.ray.kill(worker.actor)  # merely unreachable is dead to us: it must not write any more
        self.ray.wait(worker.calls, num_returns=len(worker.calls), timeout=STOP_WAIT_S)
        charged, requeue = False, []
        for ref in worker.calls:
            task = self.inflight.pop(ref)[1]
            ok, value = self._get(ref, timeout=0)
            if ok:
                self._finished(worker, task, value, done)
            elif not charged:
                charged = True
                requeue += self._charge(task, value)
            elif task is not None:
                requeue.append(task)
        self.queue.extendleft(reversed(requeue))
        self.batch.retried += sum(len(t.pairs) for t in requeue)
        self.workers[self.workers.index(worker)] = self._spawn()

    def _charge(self, task: _Task | None, error: Exception) -> list[_Task]:
        """Count a death against the call that was running; the tasks to retry."""
        why = type(error).__name__
        if task is None:
            self.failed_starts += 1
            if self.failed_starts >= MAX_ATTEMPTS:
                raise ClusterError(f"Ray workers died {self.failed_starts} times in a row while loading the models "
                                   f"({why}): see 'ray status' and the Ray logs")
            return []
        task.attempts += 1
        self.touched += task.pairs
        if task.attempts < MAX_ATTEMPTS:
            return [_Task([p], attempts=task.attempts) for p in task.pairs] if task.pairs else [task]
        reason = f"the Ray worker computing it died {task.attempts} times ({why}); rerun to try again"
        if task.style is not None:
            self._style_done(task, ((None, f"style {task.style}: {reason}"), 0.0))
        for pair in task.pairs:
            self.report.add(PairResult(pair, "failed", reason))
        return []

    def close(self) -> None:
        """Stop every worker and wait for each to be gone, then delete any temporary file a dead
        or stopped worker left: a result on disk is complete, and nothing half-written stays.

        Ray reports an actor dead as soon as it is killed, a moment before its process exits,
        so the processes on this node are also watched until they are gone (a remote worker's
        leftovers are removed by the next run, which clears them before computing).
        """
        for worker in self.workers:
            if worker.pid is None and worker.calls:  # loaded, maybe, and writing: learn its pid first
                try:
                    self._finished(worker, None, self.ray.get(worker.calls[0], timeout=0), None)
                except Exception:  # not loaded yet, so it has written nothing
                    pass
            self.ray.kill(worker.actor)
        unfinished = [p for _, task in self.inflight.values() if task is not None for p in task.pairs]
        if self.inflight:
            self.ray.wait(list(self.inflight), num_returns=len(self.inflight), timeout=STOP_WAIT_S)
        deadline = time.monotonic() + STOP_WAIT_S
        while not all(map(_gone, self.local_pids)) and time.monotonic() < deadline:
            time.sleep(0.05)
        for pair in self.touched + unfinished:
            remove_stale_parts(pair.output)


def _gone(pid: int) -> bool:
    """True once process ``pid`` has exited (a zombie, exited but not yet reaped, counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return False
