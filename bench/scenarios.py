"""Measured points: one API load (wrk) or one limit run (pgbench), each with its CPU and memory."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import time
import urllib.request
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bench import database, limit, load, measure, profile
from bench.server import Server
from bench.settings import BenchSettings
from bench.workload import Workload

VERIFY_SAMPLE_INTERVAL_SECONDS = 0.5
VERIFY_LOAD_SECONDS_MAX = 300
VERIFY_TIMEOUT_SECONDS = 240  # `wallet ledger verify` is killed past this
# The pgbench scripts of a run (bench/limit.py), by scenario name.
LIMIT_OWN = "pgbench own SQL"
LIMIT_OWN_GROUPED = "pgbench own SQL, grouped"
LIMIT_REFERENCE = "pgbench reference"


@dataclass
class Bench:
    """Everything a measurement needs."""

    settings: BenchSettings
    server: Server
    workload: Workload
    database_url: str
    maintenance_url: str
    limit_scripts: dict[str, limit.Script]  # LIMIT_OWN, LIMIT_OWN_GROUPED, LIMIT_REFERENCE
    cpu_roots: dict[str, int]  # "server", and "database" when its postmaster is visible
    log_dir: Path


@dataclass
class Point:
    scenario: str
    connections: int
    result: dict[str, Any]
    cpu_cores: dict[str, float]
    server_rss_bytes: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_document(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "connections": self.connections,
            **self.result,
            "cpu_cores": {name: round(value, 2) for name, value in self.cpu_cores.items()},
            "server_rss_mib": None
            if self.server_rss_bytes is None
            else round(self.server_rss_bytes / 2**20, 1),
            **self.extra,
        }


QUIET_SAMPLE_SECONDS = 2.0


async def _wait_for_quiet(settings: BenchSettings) -> float:
    """With BENCH_QUIET_WAIT_SECONDS, wait (at most that long) until the whole machine is nearly
    idle between points: this machine is shared. Returns the seconds waited."""
    started = time.monotonic()
    while time.monotonic() - started < settings.quiet_wait_seconds:
        before = measure.snapshot({})
        await asyncio.sleep(QUIET_SAMPLE_SECONDS)
        if measure.cpu_use(before, measure.snapshot({})).machine_busy_cores <= settings.quiet_busy_cores_max:
            break
    return time.monotonic() - started


async def settle(bench: Bench) -> float:
    """Each point starts right after a checkpoint, so none pays for an earlier one's dirty pages,
    and (optionally) on a quiet machine. Returns the seconds waited for quiet."""
    async with database.connect(bench.maintenance_url) as connection:
        await connection.execute("CHECKPOINT")
    return await _wait_for_quiet(bench.settings)


def _wrk_arguments(bench: Bench, scenario: str, connections: int, seconds: int) -> list[str]:
    settings = bench.settings
    return load.command(
        bench.server.base_url,
        bench.workload.api_key,
        bench.workload.loads[scenario],
        connections,
        settings.wrk_threads,
        seconds,
    )


def _log_path(bench: Bench, name: str) -> Path:
    return bench.log_dir / (name.replace(" ", "_").replace("/", "_") + ".txt")


async def warm_up(bench: Bench) -> None:
    seconds = bench.settings.warmup_seconds
    arguments = _wrk_arguments(bench, "spend", bench.settings.concurrency_reference, seconds)
    await load.run(arguments, _log_path(bench, "warmup"))


WAIT_SAMPLE_INTERVAL_SECONDS = 0.2
WAITS_KEPT = 6
# What each active client backend is doing: on CPU, or the event it waits for (with the relation
# of a lock it waits for). The benchmark's own connection is left out.
BACKEND_WAITS = """
SELECT coalesce(a.wait_event_type || ':' || a.wait_event, 'on CPU')
    || coalesce(' (' || l.relation::regclass::text || ')', '') AS wait
FROM pg_stat_activity a
LEFT JOIN LATERAL (
    SELECT l.relation FROM pg_locks l
    WHERE l.pid = a.pid AND NOT l.granted AND l.relation IS NOT NULL LIMIT 1
) l ON true
WHERE a.state = 'active' AND a.backend_type = 'client backend' AND a.pid <> pg_backend_pid()
"""


class WaitSampler:
    """Samples what PostgreSQL's active backends wait for while a point runs (every
    WAIT_SAMPLE_INTERVAL_SECONDS): the shares of the most frequent waits, 'on CPU' included."""

    def __init__(self, url: str) -> None:
        self._url = url
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.counts: Counter[str] = Counter()

    async def __aenter__(self) -> WaitSampler:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._stop.set()
        assert self._task is not None
        await self._task

    async def _run(self) -> None:
        async with database.connect(self._url) as connection:
            while not self._stop.is_set():
                self.counts.update(row["wait"] for row in await connection.fetch(BACKEND_WAITS))
                try:
                    await asyncio.wait_for(self._stop.wait(), WAIT_SAMPLE_INTERVAL_SECONDS)
                except TimeoutError:
                    pass

    def shares(self) -> dict[str, float]:
        total = sum(self.counts.values())
        return {wait: round(count / total, 3) for wait, count in self.counts.most_common(WAITS_KEPT)}


GROUP_COMMIT_METRIC = "wallet_group_commit_size"
METRICS_TIMEOUT_SECONDS = 10.0


def _group_commit_totals(base_url: str) -> tuple[float, float]:
    """(movements, groups) the group commit has posted, from the service's GET /metrics (summed
    over the workers)."""
    with urllib.request.urlopen(f"{base_url}/metrics", timeout=METRICS_TIMEOUT_SECONDS) as response:
        text = response.read().decode()
    totals = {"sum": 0.0, "count": 0.0}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        for suffix in totals:
            if name.split("{")[0] == f"{GROUP_COMMIT_METRIC}_{suffix}":
                totals[suffix] += float(value)
    return totals["sum"], totals["count"]


async def api_point(bench: Bench, scenario: str, connections: int) -> Point:
    waited = await settle(bench)
    arguments = _wrk_arguments(bench, scenario, connections, bench.settings.duration_seconds)
    groups_before = await asyncio.to_thread(_group_commit_totals, bench.server.base_url)
    start = measure.snapshot(bench.cpu_roots)
    with measure.RssSampler(bench.server.process_id) as rss:
        async with WaitSampler(bench.database_url) as waits:
            result = await load.run(arguments, _log_path(bench, f"wrk {scenario} c{connections}"))
    cpu = measure.cpu_use(start, measure.snapshot(bench.cpu_roots))
    groups_after = await asyncio.to_thread(_group_commit_totals, bench.server.base_url)
    point = Point(scenario, connections, result.to_document(), cpu.to_document(), rss.peak_bytes)
    point.extra["waited_for_quiet_seconds"] = round(waited, 1)
    point.extra["group_commit"] = {
        "movements": groups_after[0] - groups_before[0],
        "groups": groups_after[1] - groups_before[1],
    }
    point.extra["database_waits"] = waits.shares()
    _print_point(point, f"{result.requests_per_second:8.0f} req/s", result.latency_ms)
    return point


async def _pgbench_keys(bench: Bench) -> int:
    """Idempotency rows of the pgbench API key: one per spend the service's SQL posted (a
    deferred spend keeps none)."""
    async with database.connect(bench.database_url) as connection:
        count = await connection.fetchval(
            "SELECT count(*) FROM idempotency_key WHERE api_key_id = $1", bench.workload.pgbench_api_key_id
        )
    assert isinstance(count, int)
    return count


async def limit_point(bench: Bench, scenario: str, connections: int) -> Point:
    script = bench.limit_scripts[scenario]
    counted = scenario != LIMIT_REFERENCE
    waited = await settle(bench)
    settings = bench.settings
    keys_before = await _pgbench_keys(bench) if counted else 0
    start = measure.snapshot(bench.cpu_roots)
    async with WaitSampler(bench.database_url) as waits:
        result = await limit.run(
            bench.database_url,
            script,
            connections,
            settings.wrk_threads,
            settings.duration_seconds,
            bench.log_dir / f"pgbench_{script.name}_c{connections}",
        )
    cpu = measure.cpu_use(start, measure.snapshot(bench.cpu_roots))
    if counted:
        result = dataclasses.replace(result, spends_posted=await _pgbench_keys(bench) - keys_before)
    point = Point(scenario, connections, result.to_document(), cpu.to_document())
    point.extra["waited_for_quiet_seconds"] = round(waited, 1)
    point.extra["database_waits"] = waits.shares()
    _print_point(point, f"{result.spends_per_second:8.0f} sp/s ", result.latency_ms)
    return point


def _print_point(point: Point, rate: str, latency_ms: dict[str, float]) -> None:
    latency = " ".join(f"{name} {latency_ms.get(name, 0):.1f}" for name in ("p50", "p99", "p99.9"))
    failed = point.result.get("failed", 0)
    print(
        f"bench: {point.scenario:<26} c={point.connections:<3} {rate} {latency} ms  failed {failed}",
        flush=True,
    )


# --- ledger verify while spends run -------------------------------------------------------------


def uuid7_floor(at_ns: int) -> uuid.UUID:
    """The smallest UUIDv7 of the millisecond `at_ns` falls in: every transaction id the service
    makes from then on (its ids are UUIDv7 of the clock) sorts after it."""
    return uuid.UUID(int=(at_ns // 1_000_000) << 80)


async def _transaction_samples(url: str, stop: asyncio.Event, samples: list[tuple[float, int]]) -> None:
    """Every VERIFY_SAMPLE_INTERVAL_SECONDS, the transactions made since the sampling started
    (counted on the transaction id's index, so each count reads only the new ones)."""
    floor = uuid7_floor(time.time_ns())
    async with database.connect(url) as connection:
        while not stop.is_set():
            count = await connection.fetchval("SELECT count(*) FROM transaction WHERE id >= $1", floor)
            samples.append((time.monotonic(), int(count)))
            try:
                await asyncio.wait_for(stop.wait(), VERIFY_SAMPLE_INTERVAL_SECONDS)
            except TimeoutError:
                pass


def _spends_per_second(samples: list[tuple[float, int]], start: float, end: float) -> float | None:
    """Spends committed per second between two instants: each spend is one transaction."""
    inside = [sample for sample in samples if start <= sample[0] <= end]
    if len(inside) < 2 or inside[-1][0] <= inside[0][0]:
        return None
    return (inside[-1][1] - inside[0][1]) / (inside[-1][0] - inside[0][0])


async def verify_command(
    url: str, *options: str, timeout_seconds: float = VERIFY_TIMEOUT_SECONDS
) -> tuple[float, dict[str, Any]]:
    environment = {**os.environ, "WALLET_DATABASE_URL": url}
    started = time.monotonic()
    process = await asyncio.create_subprocess_exec(
        database.WALLET_COMMAND, "ledger", "verify", *options, env=environment,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    try:
        output, errors = await asyncio.wait_for(process.communicate(), timeout_seconds)
    except TimeoutError:
        process.kill()
        await process.wait()
        raise RuntimeError(f"wallet ledger verify took more than {timeout_seconds} s") from None
    seconds = time.monotonic() - started
    if process.returncode not in (0, 1):
        raise RuntimeError(f"wallet ledger verify failed ({process.returncode}): {errors.decode()}")
    return seconds, json.loads(output)


async def ledger_verify(bench: Bench) -> dict[str, Any]:
    """`wallet ledger verify` alone, timed: the ledger after the whole run."""
    async with database.connect(bench.database_url) as connection:
        entries = await connection.fetchval("SELECT count(*) FROM entry")
    seconds, verification = await verify_command(bench.database_url)
    print(
        f"bench: wallet ledger verify on {entries} entries: {seconds:.1f} s, ok={verification['ok']}",
        flush=True,
    )
    return {"entries": entries, "seconds": round(seconds, 2), "verification": verification}


async def verify_under_load(bench: Bench) -> dict[str, Any]:
    """Spends at the reference concurrency; after a baseline, `wallet ledger verify` runs;
    the spend rate is sampled from the count of new transactions before, during and after it."""
    settings = bench.settings
    async with database.connect(bench.database_url) as connection:
        entries = await connection.fetchval("SELECT count(*) FROM entry")
    waited = await settle(bench)
    connections = settings.concurrency_reference
    arguments = _wrk_arguments(bench, "spend", connections, VERIFY_LOAD_SECONDS_MAX)
    samples: list[tuple[float, int]] = []
    stop = asyncio.Event()
    sampler = asyncio.create_task(_transaction_samples(bench.database_url, stop, samples))
    load_started = time.monotonic()
    wrk = await load.start(arguments)
    await asyncio.sleep(settings.verify_baseline_seconds)
    verify_started = time.monotonic()
    seconds, verification = await verify_command(bench.database_url)
    verify_ended = time.monotonic()
    await asyncio.sleep(settings.verify_tail_seconds)
    result = await load.finish(wrk, _log_path(bench, "wrk spend during verify"), interrupt=True)
    stop.set()
    await sampler
    rates = {
        "before": _spends_per_second(samples, load_started + 1, verify_started),
        "during": _spends_per_second(samples, verify_started, verify_ended),
        "after": _spends_per_second(samples, verify_ended, time.monotonic()),
    }
    print(f"bench: wallet ledger verify under load on {entries} entries: {seconds:.1f} s, "
          f"ok={verification['ok']}, spends/s {rates}", flush=True)  # fmt: skip
    return {
        "entries": entries,
        "seconds": round(seconds, 2),
        "verification": {
            key: verification[key] for key in ("ok", "accounts_checked", "transactions_checked")
        },
        "problems": verification["problems"][:5],
        "connections": connections,
        "spends_per_second": {name: None if rate is None else round(rate, 1) for name, rate in rates.items()},
        "load": result.to_document(),
        "timeline": [(round(at - load_started, 2), newest) for at, newest in samples],
        "verify_window": [round(verify_started - load_started, 2), round(verify_ended - load_started, 2)],
        "waited_for_quiet_seconds": round(waited, 1),
    }


# --- profile --------------------------------------------------------------------------------------


async def profile_spend(bench: Bench, output_dir: Path) -> dict[str, Any]:
    """py-spy record (GIL samples) on the first worker and py-spy dump of it, during spends."""
    settings = bench.settings
    await settle(bench)
    workers = bench.server.worker_process_ids()
    worker = workers[0]
    seconds = settings.profile_seconds
    arguments = _wrk_arguments(bench, "spend", settings.concurrency_reference, seconds + 2)
    raw_path = output_dir / "py-spy-spend.raw"
    wrk = await load.start(arguments)
    await asyncio.sleep(1)
    roots = {"worker": worker, "server": bench.server.process_id}
    before = measure.snapshot(roots)
    recorder = await profile.record(worker, seconds, raw_path)
    await asyncio.sleep(seconds / 2)
    dump_text = await profile.dump(workers[-1])
    recorder_output, _ = await recorder.communicate()
    after = measure.snapshot(roots)
    result = await load.finish(wrk, _log_path(bench, "wrk spend profiled"))
    (output_dir / "py-spy-dump.txt").write_text(dump_text)
    if recorder.returncode != 0 or not raw_path.exists():
        raise RuntimeError(f"py-spy record failed: {recorder_output.decode(errors='replace')}")
    analysed = profile.analyse(raw_path.read_text())
    cores = measure.cpu_use(before, after).cores_by_part
    worker_cores = cores["worker"]
    print(
        f"bench: profiled worker {worker}: {analysed.samples} samples, {worker_cores:.2f} cores", flush=True
    )
    return {
        "worker_process_id": worker,
        "worker_cores": round(worker_cores, 2),
        "server_cores": round(cores["server"], 2),
        "seconds": seconds,
        "connections": settings.concurrency_reference,
        "load_during_profile": result.to_document(),
        "py_spy_output": recorder_output.decode(errors="replace").strip().splitlines()[-2:],
        **analysed.to_document(),
    }


# --- bytes stored per movement ------------------------------------------------------------------

STORAGE_TABLES = ("transaction", "entry", "idempotency_key")


async def storage(bench: Bench) -> dict[str, dict[str, int]]:
    """Per table of STORAGE_TABLES: its rows, and its bytes on disk (pg_total_relation_size:
    the table with its TOAST, free space and visibility maps, and its indexes), split into the
    table and its indexes."""
    result: dict[str, dict[str, int]] = {}
    async with database.connect(bench.database_url) as connection:
        for table in STORAGE_TABLES:
            row = await connection.fetchrow(
                f"""
                SELECT (SELECT count(*) FROM {table}) AS rows,
                    pg_total_relation_size($1::regclass) AS total, pg_indexes_size($1::regclass) AS indexes
                """,  # noqa: S608 -- the table names are this module's constants
                table,
            )
            assert row is not None
            result[table] = {
                "rows": row["rows"],
                "table_bytes": row["total"] - row["indexes"],
                "index_bytes": row["indexes"],
            }
    return result
