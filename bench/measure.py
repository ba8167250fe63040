"""CPU time and memory of the processes under test, read from /proc.

CPU of a process tree = the user + system time of its live processes plus the time of the
children they have reaped (cutime/cstime), so backends that exit during a measurement are
still counted. The load generator is a child of this process: its CPU is the growth of
RUSAGE_CHILDREN. Whatever the machine spent beyond these is "other" (this machine is shared).
"""

from __future__ import annotations

import os
import resource
import threading
import time
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

CLOCK_TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")
PAGE_SIZE_BYTES = os.sysconf("SC_PAGE_SIZE")
SAMPLE_INTERVAL_SECONDS = 0.5


@dataclass(frozen=True, slots=True)
class _ProcessStat:
    parent_id: int
    cpu_ticks: int  # own user + system
    children_cpu_ticks: int  # reaped children's user + system
    rss_bytes: int


def _read_stat(process_id: int) -> _ProcessStat | None:
    try:
        text = Path(f"/proc/{process_id}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    fields = text[text.rfind(")") + 2 :].split()
    return _ProcessStat(
        parent_id=int(fields[1]),
        cpu_ticks=int(fields[11]) + int(fields[12]),
        children_cpu_ticks=int(fields[13]) + int(fields[14]),
        rss_bytes=int(fields[21]) * PAGE_SIZE_BYTES,
    )


def _all_processes() -> dict[int, _ProcessStat]:
    stats: dict[int, _ProcessStat] = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            stat = _read_stat(int(entry.name))
            if stat is not None:
                stats[int(entry.name)] = stat
    return stats


def _tree(stats: dict[int, _ProcessStat], root_id: int) -> list[int]:
    children: dict[int, list[int]] = defaultdict(list)
    for process_id, stat in stats.items():
        children[stat.parent_id].append(process_id)
    found: list[int] = []
    pending = [root_id] if root_id in stats else []
    while pending:
        process_id = pending.pop()
        found.append(process_id)
        pending.extend(children[process_id])
    return found


def process_cpu_seconds(process_id: int) -> float | None:
    """CPU time (user + system) one process has used so far; None when it is not visible here."""
    stat = _read_stat(process_id)
    return None if stat is None else stat.cpu_ticks / CLOCK_TICKS_PER_SECOND


def tree_process_ids(root_id: int) -> list[int]:
    return _tree(_all_processes(), root_id)


def _machine_ticks() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs since boot."""
    values = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    total = sum(values[:8])  # user nice system idle iowait irq softirq steal (guest is in user)
    return total - idle, total


@dataclass(frozen=True, slots=True)
class CpuSnapshot:
    at: float
    tree_ticks: dict[str, int]
    load_generator_seconds: float
    self_seconds: float
    machine_busy_ticks: int
    machine_total_ticks: int


def snapshot(roots: dict[str, int]) -> CpuSnapshot:
    stats = _all_processes()
    tree_ticks = {
        name: sum(stats[pid].cpu_ticks + stats[pid].children_cpu_ticks for pid in _tree(stats, root))
        for name, root in roots.items()
    }
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    own = resource.getrusage(resource.RUSAGE_SELF)
    busy, total = _machine_ticks()
    return CpuSnapshot(
        at=time.monotonic(),
        tree_ticks=tree_ticks,
        load_generator_seconds=children.ru_utime + children.ru_stime,
        self_seconds=own.ru_utime + own.ru_stime,
        machine_busy_ticks=busy,
        machine_total_ticks=total,
    )


@dataclass(frozen=True, slots=True)
class CpuUse:
    """Cores used on average over a measurement, by who used them."""

    cores_by_part: dict[str, float]
    machine_busy_cores: float
    machine_cores: float

    def to_document(self) -> dict[str, float]:
        return {**self.cores_by_part, "machine_busy": self.machine_busy_cores}


def cpu_use(start: CpuSnapshot, end: CpuSnapshot) -> CpuUse:
    """Cores used between two snapshots. The load generator's time appears when it has been
    reaped, so take `end` after waiting for it."""
    wall_seconds = max(end.at - start.at, 1e-6)
    cores = {
        name: (end.tree_ticks[name] - start.tree_ticks[name]) / CLOCK_TICKS_PER_SECOND / wall_seconds
        for name in start.tree_ticks
    }
    cores["load generator"] = (end.load_generator_seconds - start.load_generator_seconds) / wall_seconds
    cores["bench itself"] = (end.self_seconds - start.self_seconds) / wall_seconds
    total_ticks = end.machine_total_ticks - start.machine_total_ticks
    busy_ticks = end.machine_busy_ticks - start.machine_busy_ticks
    machine_cores = total_ticks / CLOCK_TICKS_PER_SECOND / wall_seconds
    machine_busy = busy_ticks / CLOCK_TICKS_PER_SECOND / wall_seconds
    cores["other"] = max(0.0, machine_busy - sum(cores.values()))
    return CpuUse(cores, machine_busy, machine_cores)


def rss_bytes(process_ids: Iterable[int]) -> int:
    total = 0
    for process_id in process_ids:
        stat = _read_stat(process_id)
        total += stat.rss_bytes if stat is not None else 0
    return total


@dataclass
class RssSampler:
    """The largest summed RSS of a process tree, sampled in a thread while a load runs."""

    root_id: int
    peak_bytes: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def __enter__(self) -> RssSampler:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        assert self._thread is not None
        self._thread.join()
        self._sample()

    def _sample(self) -> None:
        self.peak_bytes = max(self.peak_bytes, rss_bytes(tree_process_ids(self.root_id)))

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_INTERVAL_SECONDS):
            self._sample()
