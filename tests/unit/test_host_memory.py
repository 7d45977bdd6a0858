"""Data-free: what the host can give a process, read from files laid out as Linux lays them out
(/proc/meminfo, /proc/self/cgroup and the cgroup v1 or v2 hierarchy), and what a plan charges
the process for what it holds."""
from __future__ import annotations

from pathlib import Path

import stylize.engine.memory as memory
from stylize.engine.memory import (RSS_STEP, RUNTIME_BYTES, HostMemory, heap_ceiling, held_bytes, host_memory, room_for,
                                   settle)

GiB = 1 << 30


def _host(tmp_path: Path, cgroup_lines: str, files: dict[str, str], *, ram_kb=16 << 20, swap_kb=0) -> HostMemory | None:
    proc, fs = tmp_path / "proc", tmp_path / "cgroup"
    (proc / "self").mkdir(parents=True)
    (proc / "meminfo").write_text(f"MemTotal:       {ram_kb} kB\nMemFree:  1000 kB\nSwapTotal:  {swap_kb} kB\n")
    (proc / "self" / "cgroup").write_text(cgroup_lines)
    fs.mkdir()
    for name, text in files.items():
        (fs / name).parent.mkdir(parents=True, exist_ok=True)
        (fs / name).write_text(text)
    return host_memory(proc, fs)


def test_without_a_limit_the_host_has_its_ram_and_swap(tmp_path):
    assert _host(tmp_path, "0::/\n", {}) == HostMemory(16 * GiB, "of RAM")
    v1_unlimited = {"memory/memory.limit_in_bytes": "9223372036854771712\n"}
    assert _host(tmp_path / "b", "4:memory:/\n", v1_unlimited, swap_kb=4 << 20) == HostMemory(20 * GiB, "of RAM and swap")


def test_a_cgroup_v2_limit_counts_at_its_own_level_and_its_ancestors(tmp_path):
    files = {"cgroup.controllers": "cpu memory\n", "user.slice/memory.max": "3221225472\n",
             "user.slice/job/memory.max": "max\n"}
    assert _host(tmp_path, "0::/user.slice/job\n", files) == HostMemory(3 * GiB, "under its container's limit")
    files["user.slice/memory.max"] = "max\n"
    assert _host(tmp_path / "b", "0::/user.slice/job\n", files) == HostMemory(16 * GiB, "of RAM")


def test_a_cgroup_v1_memory_limit_is_read_from_the_memory_hierarchy(tmp_path):
    lines = "9:name=systemd:/\n4:memory:/docker/abc\n0::/\n"  # hybrid: v2 mounted elsewhere
    files = {"memory/memory.limit_in_bytes": "9223372036854771712\n",
             "memory/docker/abc/memory.limit_in_bytes": str(2 * GiB)}
    assert _host(tmp_path, lines, files) == HostMemory(2 * GiB, "under its container's limit")


def test_an_unreadable_host_is_unknown(tmp_path):
    (tmp_path / "proc").mkdir()
    assert host_memory(tmp_path / "proc", tmp_path) is None


def _fake_process(monkeypatch, rss: list[int]) -> list[int]:
    """RSS reads from ``rss`` in turn (the last one repeats); returns the list of trims made."""
    trims: list[int] = []
    monkeypatch.setattr(memory, "current_rss", lambda: rss[min(len(trims), len(rss) - 1)])
    monkeypatch.setattr(memory, "release_free_heap", lambda: trims.append(1) or True)
    return trims


def test_a_lean_process_is_charged_the_same_fixed_runtime_whatever_its_rss(monkeypatch):
    for rss in (0, 250 << 20, RUNTIME_BYTES + (40 << 20)):
        trims = _fake_process(monkeypatch, [rss])
        assert held_bytes(40 << 20) == RUNTIME_BYTES + (40 << 20) and not trims


def test_a_process_holding_more_is_charged_its_rss_after_a_trim_rounded_up(monkeypatch):
    trims = _fake_process(monkeypatch, [900 << 20, (700 << 20) + 1])
    assert held_bytes(0) == 704 << 20 and held_bytes(0) % RSS_STEP == 0 and trims == [1, 1]
    trims = _fake_process(monkeypatch, [900 << 20, 100 << 20])  # freed heap only: the charge again
    assert held_bytes(0) == RUNTIME_BYTES and trims == [1]


def test_a_budget_too_tight_for_the_charge_is_planned_from_the_rss_as_measured(monkeypatch):
    trims = _fake_process(monkeypatch, [300 << 20, (290 << 20) + 5])
    assert held_bytes(40 << 20, measured=True) == (290 << 20) + 5 and trims == [1]


def test_the_heap_is_trimmed_between_tiles_only_when_over_the_ceiling(monkeypatch):
    trims = _fake_process(monkeypatch, [500])
    settle(1000)
    assert not trims
    settle(400)
    assert trims == [1]


def test_a_layer_makes_room_only_inside_a_ceiling_and_only_when_its_output_would_pass_it(monkeypatch):
    trims = _fake_process(monkeypatch, [500])
    room_for(10 ** 12)  # no tiles running: nothing to keep under
    with heap_ceiling(1000):
        room_for(500)
        assert not trims
        room_for(501)
        assert trims == [1]
        with heap_ceiling(None):  # a CUDA run inside: host RSS is not its budget
            room_for(10 ** 12)
        room_for(501)
    room_for(10 ** 12)
    assert trims == [1, 1]
