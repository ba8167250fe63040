"""`make bench`: one benchmark run, end to end.

1. The database server (embedded, or WALLET_DATABASE_URL's), the template database (built once:
   funded wallets and the history ledger), a fresh run database copied from it, with the
   reference spend's tables beside the ledger's.
2. `wallet serve --workers BENCH_WORKERS` on 127.0.0.1, a warm-up.
3. `wallet ledger verify` while spends run.
4. The concurrency sweep, 8-64 clients: API spends over all wallets, pgbench of the service's
   own spend SQL (one spend per call) and of the reference spend; at the reference concurrency
   also the service's SQL with 8 spends per call. The bytes the ledger's tables grew by.
5. The other scenarios at the reference concurrency.
6. The features' costs (bench/features.py), in a copy of the template of their own: pgbench
   rounds of the service's SQL as is and without hash chains, without the outbox, on wallets
   of 10 lots; the relay's events/s to a nats-server of the run's own; the hashes' CPU alone.
7. py-spy on a worker during spends; the ledger verified after everything, plainly and deep.
8. results.json, results.md and the plots in BENCH_OUTPUT_DIR.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench import database, features, limit, report, scenarios, server, settings, workload
from bench.settings import BenchSettings

SWEEP_SCENARIO = "spend"
SWEEP_LIMITS = (scenarios.LIMIT_OWN, scenarios.LIMIT_REFERENCE)
REFERENCE_SCENARIOS = (
    "topup",
    "spend one wallet",
    "transfer",
    "journal",
    "batch",
    "replay",
    "wallet read",
    "history small",
    "history big",
    "balance at small",
    "balance at big",
    "statement small",
    "statement big",
)


def _command_output(*arguments: str) -> str:
    try:
        result = subprocess.run(arguments, capture_output=True, text=True, timeout=30, check=False)
    except OSError as error:
        return f"({error})"
    return (result.stdout or result.stderr).strip()


def _git(*arguments: str) -> str:
    return _command_output("git", "-C", str(settings.PROJECT_DIRECTORY), *arguments)


def machine_facts() -> dict[str, Any]:
    cpu_model = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")),
        "unknown",
    )  # fmt: skip
    return {
        "nproc": _command_output("nproc"),
        "free -h": _command_output("free", "-h"),
        "cpu model": cpu_model,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "wrk": _command_output("wrk", "-v").splitlines()[0],
        "pgbench": _command_output(str(database.pgbench_binary()), "--version"),
        "load average at start": Path("/proc/loadavg").read_text().strip(),
        "git commit": _git("rev-parse", "--short", "HEAD"),
        "git changes": _git("status", "--short", "--untracked-files=no", "src", "bench"),
    }


def service_settings(bench_settings: BenchSettings) -> dict[str, str]:
    overrides = {
        name: value
        for name, value in sorted(os.environ.items())
        if name.startswith("WALLET_") and name != "WALLET_DATABASE_URL"
    }
    return {"workers": str(bench_settings.workers), **overrides}


async def _limit_scripts(
    connection: Any, prepared: workload.Workload, wallet_count: int, directory: Path
) -> tuple[dict[str, limit.Script], str]:
    """The pgbench scripts of the run (written to `directory`), and the service's statement."""
    await limit.install_reference(connection, wallet_count)
    scripts = {
        scenarios.LIMIT_REFERENCE: limit.Script(
            "reference", limit.REFERENCE_SCRIPT, 1, (f"wallets={wallet_count}",)
        )
    }
    statement = ""
    shapes = ((scenarios.LIMIT_OWN, 1), (scenarios.LIMIT_OWN_GROUPED, limit.SPENDS_PER_CALL_GROUPED))
    for scenario, spends in shapes:
        text, statement = await limit.service_script(
            connection, prepared.pgbench_api_key_id, wallet_count, spends
        )
        path = directory / f"service-{spends}.pgbench.sql"
        path.write_text(text)
        scripts[scenario] = limit.Script(f"service-{spends}", path, spends)
    return scripts, statement


async def _prepare(
    bench_settings: BenchSettings, database_server: database.DatabaseServer, output_dir: Path
) -> tuple[dict[str, Any], workload.Workload, dict[str, limit.Script]]:
    started = time.monotonic()
    template = await database.ensure_template(database_server, bench_settings)
    copy_seconds = await database.create_run_database(database_server, bench_settings)
    async with database.connect(database_server.run_url) as connection:
        prepared = await workload.prepare(connection, bench_settings, output_dir / "data")
        scripts, statement = await _limit_scripts(
            connection, prepared, bench_settings.wallet_count, output_dir / "data"
        )
    setup = {
        "template": template,
        "run database copy seconds": round(copy_seconds, 1),
        "setup seconds": round(time.monotonic() - started, 1),
        "service statement": statement,
        "pgbench scripts": {name: script.path.read_text() for name, script in scripts.items()},
        "history wallet entries": prepared.history_entries,
    }
    return setup, prepared, scripts


class _Phases:
    """How long each phase of the measurement took."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._started = time.monotonic()

    def done(self, phase: str) -> None:
        now = time.monotonic()
        self.seconds[phase] = round(now - self._started, 1)
        self._started = now


async def _measure(
    bench: scenarios.Bench, output_dir: Path, database_server: database.DatabaseServer
) -> dict[str, Any]:
    bench_settings = bench.settings
    phases = _Phases()
    await scenarios.warm_up(bench)
    verify = await scenarios.verify_under_load(bench)
    phases.done("warm-up and verify under load")
    storage_before = await scenarios.storage(bench)
    sweep: list[dict[str, Any]] = []
    for connections in bench_settings.concurrency_levels:
        sweep.append((await scenarios.api_point(bench, SWEEP_SCENARIO, connections)).to_document())
        for scenario in SWEEP_LIMITS:
            sweep.append((await scenarios.limit_point(bench, scenario, connections)).to_document())
        if connections == bench_settings.concurrency_reference:
            grouped = await scenarios.limit_point(bench, scenarios.LIMIT_OWN_GROUPED, connections)
            sweep.append(grouped.to_document())
    storage_after = await scenarios.storage(bench)
    phases.done("sweep")
    reference = []
    for scenario in REFERENCE_SCENARIOS:
        point = await scenarios.api_point(bench, scenario, bench_settings.concurrency_reference)
        reference.append(point.to_document())
    phases.done("scenarios")
    feature_costs = await features.run(bench, database_server, output_dir)
    phases.done("feature costs")
    profiled = await scenarios.profile_spend(bench, output_dir)
    phases.done("profile")
    final_verify = await scenarios.ledger_verify(bench)
    phases.done("final verify")
    feature_costs["deep_verify"] = await features.deep_verify(bench)
    phases.done("final deep verify")
    return {
        "phase_seconds": phases.seconds,
        "verify_under_load": verify,
        "storage": {"before": storage_before, "after": storage_after},
        "sweep": sweep,
        "reference": reference,
        "profile": profiled,
        "final_verify": final_verify,
        "features": feature_costs,
    }


async def run(bench_settings: BenchSettings) -> dict[str, Any]:
    output_dir = bench_settings.output_dir
    log_dir = output_dir / "logs"
    for directory in (log_dir, output_dir / "data"):  # only what a run writes; the rest is kept
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(parents=True)
    started = time.monotonic()
    facts = machine_facts()
    database_server = database.open_server(bench_settings)
    try:
        postgres = await database.server_facts(database_server)
        setup, prepared, scripts = await _prepare(bench_settings, database_server, output_dir)
        postmaster = await database.postmaster_process_id(database_server)
        server_started = time.monotonic()
        service = server.start(database_server.run_url, bench_settings.workers, log_dir / "server.log")
        setup["server start seconds"] = round(time.monotonic() - server_started, 1)
        try:
            cpu_roots = {"server": service.process_id}
            if postmaster is not None:
                cpu_roots["database"] = postmaster
            bench = scenarios.Bench(
                settings=bench_settings,
                server=service,
                workload=prepared,
                database_url=database_server.run_url,
                maintenance_url=database_server.maintenance_url,
                limit_scripts=scripts,
                cpu_roots=cpu_roots,
                log_dir=log_dir,
            )
            measured = await _measure(bench, output_dir, database_server)
        finally:
            service.stop()
            server.trim_log(log_dir / "server.log")
    finally:
        database_server.stop()
    return {
        "mode": bench_settings.mode,
        "settings": {
            field.name: _plain(getattr(bench_settings, field.name))
            for field in dataclasses.fields(bench_settings)
        },
        "machine": facts,
        "postgres": postgres,
        "service": service_settings(bench_settings),
        "setup": setup,
        **measured,
        "run_seconds": round(time.monotonic() - started, 1),
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def _plain(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple):
        return list(value)
    if isinstance(value, str) and value.startswith("postgres"):
        return "(WALLET_DATABASE_URL)"
    return value


def main() -> int:
    try:
        bench_settings = settings.load()
    except settings.SettingsError as error:
        print(f"bench: {error}", file=sys.stderr)
        return 2
    print(f"bench: {bench_settings.mode} run, results in {bench_settings.output_dir}", flush=True)
    results = asyncio.run(run(bench_settings))
    output_dir = bench_settings.output_dir
    (output_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    report.write(results, output_dir)
    print(f"bench: done in {results['run_seconds']:.0f} s; see {output_dir / 'results.md'}", flush=True)
    print((output_dir / "results.md").read_text())
    return 0
