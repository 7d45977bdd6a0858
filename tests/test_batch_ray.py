"""``stylize batch --ray``/``--workers`` on a real local Ray cluster (2 CPUs, started once for the
module): the same outputs bit for bit, the same report and failures as the local batch, resume,
a worker killed mid-run, a pair that keeps killing its worker, and Ray missing altogether.

Pixels are compared with a local batch run at the workers' torch thread count (1: two workers
share two CPUs): convolution sums in a thread-dependent order, and on 128-px images WCT turns
those last-bit differences into visible ones, so identity holds at equal thread counts.
"""
from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

import pytest
import ray
import torch
from types import SimpleNamespace

from stylize.batch_ray import MAX_ATTEMPTS, RAY_EXTRA, ClusterError, RayBatch, _Scheduler, connected, place
from stylize.batch_ray_worker import PairWorker
from stylize.batch_runner import run_batch
from stylize.settings import Settings
from test_batch import OPTS, SMALL, STYLES, outputs, photo, run

GOOD = {"a.jpg": ("golden_gate.jpg", (150, 100)), "b.png": ("sailboat.jpg", (90, 120)),
        "sub/c.jpg": ("lenna.jpg", (100, 100))}
KEYS = ("photo", "style", "output", "status", "reason", "size")  # what a record says (not how long it took)


@pytest.fixture(scope="module")
def cluster():
    """One local cluster for the module; leaving it restores the process as it was (a SIGTERM
    handler and environment variables Ray sets would change later tests)."""
    with connected(ray, "local", num_cpus=2):
        yield


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Three good photos (one nested), a truncated JPEG and a text file named .jpg."""
    d = tmp_path_factory.mktemp("ray") / "photos"
    for name, (src, size) in GOOD.items():
        photo(src, d / name, size, "PNG" if name.endswith(".png") else "JPEG")
    from conftest import SHARED

    data = (SHARED / "images/content/cornell.jpg").read_bytes()
    (d / "cut.jpg").write_bytes(data[: len(data) // 3])
    (d / "notes.jpg").write_text("shot list: not a JPEG at all")
    return d


@pytest.fixture(scope="module")
def local(folder, tmp_path_factory):
    """The local batch on the same folder, at one torch thread (a worker's share of 2 CPUs)."""
    out = tmp_path_factory.mktemp("local") / "out"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        summary = run_batch(folder, STYLES, out, OPTS)
    finally:
        torch.set_num_threads(threads)
    assert len(summary.done) == 6, [r.reason for r in summary.failed]
    return SimpleNamespace(out=out, summary=summary, records=records(out))


def records(out) -> list[dict]:
    return [json.loads(line) for line in (out / "batch-report.jsonl").read_text().splitlines()]


def same_records(out, local) -> bool:
    key = lambda r: tuple(json.dumps(r[k]) for k in KEYS)  # noqa: E731
    return sorted(map(key, records(out))) == sorted(map(key, local.records))


def same_outputs(out, local) -> bool:
    names = outputs(local.out)
    return outputs(out) == names and all((out / n).read_bytes() == (local.out / n).read_bytes() for n in names)


def no_partials(out) -> list:
    """Temporary files of a write that did not finish (the lock file is not one)."""
    return [p for p in out.rglob("*") if ".part" in p.name]


def failure_lines(text: str) -> set[str]:
    return {line.strip() for line in text.splitlines() if line.strip().startswith("failed:")}


def test_ray_batch_equals_the_local_batch_and_a_rerun_skips_everything(cluster, folder, local, tmp_path):
    out = tmp_path / "out"
    code, text = run(folder, *STYLES, "-o", out, *SMALL, "--workers", "2")
    assert code == 1 and "done 6, skipped 0, failed 4" in text, text
    assert same_outputs(out, local), "the Ray batch must write the local batch's bytes"
    assert same_records(out, local) and len(records(out)) == 10  # one line per pair, same failures
    assert failure_lines(text) == failure_lines("\n".join(local.summary.lines()))
    assert "cut.jpg [sketch, brushstrokes]: truncated or corrupt image" in text
    assert not no_partials(out)

    mtimes = {n: (out / n).stat().st_mtime_ns for n in outputs(out)}
    code, text = run(folder, *STYLES, "-o", out, *SMALL, "--ray", "local")
    assert code == 1 and "done 0, skipped 6, failed 4" in text, text
    assert {n: (out / n).stat().st_mtime_ns for n in outputs(out)} == mtimes
    assert sorted(r["status"] for r in records(out)) == ["failed"] * 4 + ["skipped"] * 6


def test_preserve_color_style_on_ray_equals_the_local_batch(cluster, folder, tmp_path):
    """``--preserve-color style`` recolours each style to each photo, so the workers must share the
    style image, not its statistics (which the engine refuses for that mode)."""
    local_out, ray_out = tmp_path / "local", tmp_path / "ray"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        local = run_batch(folder, STYLES, local_out, OPTS.with_(preserve_color="style"))
    finally:
        torch.set_num_threads(threads)
    assert len(local.done) == 6, [r.reason for r in local.failed]
    code, text = run(folder, *STYLES, "-o", ray_out, *SMALL, "--workers", "2", "--preserve-color", "style")
    assert code == 1 and "done 6, skipped 0, failed 4" in text, text
    names = outputs(local_out)
    assert outputs(ray_out) == names and all((ray_out / n).read_bytes() == (local_out / n).read_bytes()
                                             for n in names)


def test_a_worker_killed_mid_run_loses_nothing(cluster, folder, local, tmp_path):
    out = tmp_path / "out"
    plan = RayBatch(folder, STYLES, out, OPTS, workers=2)
    killed = []

    def kill_after_first(result):
        if not killed:
            killed.append(plan.pids[0])
            os.kill(plan.pids[0], signal.SIGKILL)

    summary = plan.run(on_result=kill_after_first)
    assert plan.lost == 1 and plan.retried >= 1, "the photos it had in hand are done by another worker"
    assert len(summary.done) == 6 and len(summary.failed) == 4
    assert same_outputs(out, local) and same_records(out, local) and not no_partials(out)


def test_sigterm_stops_workers_as_cleanly_as_ctrl_c_and_a_rerun_finishes(cluster, folder, local, tmp_path,
                                                                         monkeypatch):
    out = tmp_path / "out"
    original = _Scheduler._group_done

    def terminate_after_first(self, task, results):
        original(self, task, results)
        os.kill(os.getpid(), signal.SIGTERM)  # what `kill PID` or a scheduler's timeout sends the driver

    monkeypatch.setattr(_Scheduler, "_group_done", terminate_after_first)
    code, text = run(folder, *STYLES, "-o", out, *SMALL, "--workers", "2")
    assert code == 130 and "interrupted:" in text and "rerun the same command" in text, text
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL and not no_partials(out)
    monkeypatch.undo()
    kept = len(outputs(out))  # what workers finished before they were stopped: complete files
    code, text = run(folder, *STYLES, "-o", out, *SMALL, "--workers", "2")
    assert code == 1 and f"done {6 - kept}, skipped {kept}, failed 4" in text, text
    assert same_outputs(out, local) and not no_partials(out)


def test_leaving_the_cluster_takes_rays_marks_off_the_process(monkeypatch):
    def init(**kwargs):  # what ray.init does to its process
        signal.signal(signal.SIGTERM, lambda *a: None)
        os.environ["PYTHONBREAKPOINT"] = "ray.util.rpdb._driver_set_trace"

    monkeypatch.delenv("PYTHONBREAKPOINT", raising=False)
    fake = SimpleNamespace(is_initialized=lambda: False, init=init, shutdown=lambda: None)
    handler = signal.getsignal(signal.SIGTERM)
    with connected(fake, "local"):
        assert signal.getsignal(signal.SIGTERM) is handler, "the batch's SIGTERM handler stays in charge"
    assert "PYTHONBREAKPOINT" not in os.environ


def crashing_worker(photo_name: str, log: Path) -> type:
    """A worker whose process dies (as under a segfault or the OOM killer) on one photo, every
    time; each attempt on that photo first appends a line to ``log``."""
    class Crashing(PairWorker):
        def group(self, group, *styles):
            if any(p.photo.name == photo_name for p in group):
                with open(log, "a") as f:
                    f.write("attempt\n")
                os._exit(1)
            return super().group(group, *styles)
    return Crashing


def test_a_pair_that_keeps_killing_its_worker_is_failed_after_bounded_attempts(cluster, folder, local, tmp_path):
    out = tmp_path / "out"
    log = tmp_path / "attempts.log"
    plan = RayBatch(folder, STYLES[:1], out, OPTS, workers=2, worker_class=crashing_worker("b.png", log))
    summary = plan.run()
    # b.png was tried exactly MAX_ATTEMPTS times; a loaded machine may lose a worker for some
    # other reason too (a slow start), which the bound on b.png's attempts does not count.
    assert log.read_text().count("attempt") == MAX_ATTEMPTS and plan.lost >= MAX_ATTEMPTS
    [failed] = [r for r in summary.failed if r.pair.photo.name == "b.png"]
    assert f"died {MAX_ATTEMPTS} times" in failed.reason and "rerun" in failed.reason
    assert len(summary.done) == 2 and len(records(out)) == 5 and not no_partials(out)

    summary = RayBatch(folder, STYLES[:1], out, OPTS, workers=2).run()  # the rerun does it
    assert [r.pair.photo.name for r in summary.done] == ["b.png"] and len(summary.skipped) == 2
    assert all((out / n).read_bytes() == (local.out / n).read_bytes() for n in outputs(out))


def test_without_ray_the_option_is_one_line_naming_the_extra(folder, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # as if not installed
    for option in (["--ray", "local"], ["--workers", "2"]):
        code, text = run(folder, STYLES[0], "-o", tmp_path / "out", *option)
        assert code == 2 and text.strip() == f"error: --ray needs Ray, which is not installed: {RAY_EXTRA}", text
        assert not (tmp_path / "out").exists()


def test_placement_one_worker_per_gpu_or_a_share_of_the_cpus():
    def fake(cpus, gpus=0, nodes=1):
        return SimpleNamespace(cluster_resources=lambda: {"CPU": cpus * nodes, "GPU": gpus * nodes},
                               nodes=lambda: [{"Alive": True, "Resources": {"CPU": cpus}}] * nodes)

    gpu = place(fake(16, gpus=4, nodes=2), Settings(), None)
    assert gpu.workers == 8 and gpu.options["num_gpus"] == 1 and gpu.settings.device == "cuda"
    assert place(fake(16, gpus=1), Settings(device="cuda:1"), 2).options["num_gpus"] == 0.5
    cpu = place(fake(16, nodes=3), Settings(), None)
    assert cpu.workers == 3 and cpu.options["num_cpus"] == 16 and cpu.threads == 16 and cpu.settings.device == "cpu"
    assert place(fake(2), Settings(), 2).options["num_cpus"] == 1 and place(fake(2), Settings(), 3).threads == 1
    with pytest.raises(ClusterError, match="no GPU"):
        place(fake(8), Settings(device="cuda"), None)
