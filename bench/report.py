"""results.md (tables and the targets) and the plots, from results.json of one run."""

from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from bench import features, profile
from bench.scenarios import LIMIT_OWN, LIMIT_OWN_GROUPED, LIMIT_REFERENCE

SPEND = "spend"  # the load of the sweep (bench/workload.py)
SCENARIO_TITLES = {
    "spend": "spends over 10,000 wallets",
    "topup": "top-ups over 10,000 wallets",
    "spend one wallet": "spends all on one wallet",
    "transfer": "transfers between random pairs",
    "journal": "journals of 5 postings over random wallets",
    "batch": "POST /v1/batches of 100 spends",
    "replay": "idempotent replays",
    "wallet read": "wallet reads (GET /v1/wallets/{id})",
    LIMIT_REFERENCE: "pgbench: reference spend",
    LIMIT_OWN: "pgbench: service's SQL, 1 spend per call",
    LIMIT_OWN_GROUPED: "pgbench: service's SQL, 8 spends per call",
}
# Reads of the two history wallets, by scenario prefix: what each request reads.
HISTORY_READS = {
    "history": "history pages",
    "balance at": "balances at a time",
    "statement": "1-month statements (100 transactions)",
}
READ_SCENARIOS = (
    "wallet read",
    *(f"{read} {size}" for read in HISTORY_READS for size in ("small", "big")),
)


def _title(results: dict[str, Any], scenario: str) -> str:
    read, _, size = scenario.rpartition(" ")
    if read in HISTORY_READS and size in ("small", "big"):
        transactions = results["setup"]["history wallet entries"][size]
        return f"{HISTORY_READS[read]}, wallet of {transactions:,} transactions"
    return SCENARIO_TITLES.get(scenario, scenario)


CPU_PARTS = ("server", "database", "load generator", "other")
NOISE_CORES_MAX = 0.25  # "other" CPU above this marks a point as disturbed by other users
NOISE_MARK = "†"
NOISE_NOTE = (
    f"{NOISE_MARK} other processes on this shared machine used more than {NOISE_CORES_MAX} cores "
    "during the point (column CPU other)."
)


# --- lookups ----------------------------------------------------------------------------------


def _sweep(results: dict[str, Any], scenario: str) -> dict[int, dict[str, Any]]:
    return {point["connections"]: point for point in results["sweep"] if point["scenario"] == scenario}


def _reference(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {point["scenario"]: point for point in results["reference"]}


def _at_reference(results: dict[str, Any], scenario: str) -> dict[str, Any]:
    """A sweep point (API spends or a pgbench limit) at the reference concurrency."""
    return _sweep(results, scenario)[results["settings"]["concurrency_reference"]]


def _rate(point: dict[str, Any]) -> float:
    """Requests per second of an API point; spends posted per second of a pgbench point."""
    for name in ("requests_per_second", "spends_per_second", "transactions_per_second"):
        if point.get(name):
            return float(point[name])
    return 0.0


def _movements_per_second(point: dict[str, Any]) -> float:
    """Money movements (transactions) per second: a batch item answered 201 is one."""
    if point["scenario"] == "batch":
        return float(point["items_created"]) / float(point["seconds"]) if point["seconds"] else 0.0
    return _rate(point)


def _group_size(point: dict[str, Any]) -> str:
    """Movements per group the group commit posted during an API point (GET /metrics)."""
    groups = point.get("group_commit", {})
    return f"{groups['movements'] / groups['groups']:.1f}" if groups.get("groups") else "-"


def _posts_per_request(point: dict[str, Any]) -> str:
    """Times the group commit handed each request to ledger.post: above 1 when requests were
    deferred (their wallet held by another transaction) and posted again by the waiting lane."""
    groups = point.get("group_commit", {})
    return f"{groups['movements'] / point['requests']:.2f}" if groups.get("groups") else "-"


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else 0.0


def _cpu(point: dict[str, Any], part: str) -> float:
    return float(point["cpu_cores"].get(part, 0.0))


def _cpu_cells(point: dict[str, Any]) -> list[str]:
    return [f"{_cpu(point, part):.2f}" for part in CPU_PARTS]


def _microseconds(point: dict[str, Any], part: str, per: float | None = None) -> float:
    """CPU time of `part` per request (or per `per` a second), in µs."""
    rate = _rate(point) if per is None else per
    return _cpu(point, part) / rate * 1e6 if rate else 0.0


def _cpu_cost_us(point: dict[str, Any]) -> float:
    """CPU per request (per spend, for pgbench) of everything it needs: server, database and
    load generator."""
    return sum(_microseconds(point, part) for part in ("server", "database", "load generator"))


def cpu_cost_ratio(api: dict[str, Any], limit: dict[str, Any]) -> float:
    """The throughput ratio the two would reach on an otherwise idle machine when both are
    CPU-bound: the limit's CPU per spend over the API's CPU per request. Other users' load
    changes it far less than it changes throughput."""
    return _ratio(_cpu_cost_us(limit), _cpu_cost_us(api))


def _noisy(point: dict[str, Any]) -> bool:
    return _cpu(point, "other") > NOISE_CORES_MAX


def _noise_note(points: list[dict[str, Any]]) -> list[str]:
    return ["", NOISE_NOTE] if any(_noisy(point) for point in points) else []


def _marked(text: str, point: dict[str, Any]) -> str:
    return text + (f" {NOISE_MARK}" if _noisy(point) else "")


def _latency(point: dict[str, Any], name: str) -> str:
    return f"{point['latency_ms'].get(name, 0):.1f}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


# --- targets ----------------------------------------------------------------------------------


def _target(figure: str, target: str, measured: str, met: bool) -> dict[str, Any]:
    return {"figure": figure, "target": target, "measured": measured, "met": met}


def _spread_target(results: dict[str, Any]) -> dict[str, Any]:
    spend = _at_reference(results, SPEND)
    reference = _rate(_at_reference(results, LIMIT_REFERENCE))
    own = _rate(_at_reference(results, LIMIT_OWN))
    ratio = _ratio(_rate(spend), reference)
    p99 = spend["latency_ms"]["p99"]
    return _target(
        f"API spends over 10,000 wallets, {spend['connections']} connections",
        ">= 30% of the reference, p99 < 25 ms",
        f"{_rate(spend):,.0f}/s = {ratio:.0%} of the reference ({reference:,.0f}/s), "
        f"{_ratio(_rate(spend), own):.0%} of the service's own SQL ({own:,.0f}/s); p99 {p99:.1f} ms",
        ratio >= 0.30 and p99 < 25,
    )


def _own_sql_target(results: dict[str, Any]) -> dict[str, Any]:
    reference = _rate(_at_reference(results, LIMIT_REFERENCE))
    own = _rate(_at_reference(results, LIMIT_OWN))
    grouped = _rate(_at_reference(results, LIMIT_OWN_GROUPED))
    return _target(
        "pgbench of the service's own spend SQL",
        ">= 60% of the reference (judged on one spend per call)",
        f"one spend per call {own:,.0f}/s = {_ratio(own, reference):.0%}; 8 per call "
        f"{grouped:,.0f} spends/s = {_ratio(grouped, reference):.0%}",
        _ratio(own, reference) >= 0.60,
    )


def _batch_target(results: dict[str, Any]) -> dict[str, Any]:
    batch = _reference(results)["batch"]
    reference = _rate(_at_reference(results, LIMIT_REFERENCE))
    movements = _movements_per_second(batch)
    all_created = batch["items_created"] == batch["items_sent"] and batch["failed"] == 0
    return _target(
        "`POST /v1/batches` of 100 spends",
        ">= 10,000 movements/s and >= 70% of the reference",
        f"{movements:,.0f} movements/s ({_rate(batch):,.0f} batches/s) = "
        f"{_ratio(movements, reference):.0%} of the reference; {batch['items_created']:,} of "
        f"{batch['items_sent']:,} items 201",
        movements >= 10_000 and _ratio(movements, reference) >= 0.70 and all_created,
    )


def _relative_target(figure: str, target: str, value: float, base: float, minimum: float) -> dict[str, Any]:
    ratio = _ratio(value, base)
    return _target(figure, target, f"{value:,.0f} vs {base:,.0f} req/s: {ratio:.2f}x", ratio >= minimum)


def _cpu_target(results: dict[str, Any]) -> dict[str, Any]:
    spend = _at_reference(results, SPEND)
    server, database = _microseconds(spend, "server"), _microseconds(spend, "database")
    return _target(
        f"CPU per API spend ({spend['connections']} connections)",
        "server <= 400 µs, PostgreSQL <= 300 µs",
        f"server {server:,.0f} µs, PostgreSQL {database:,.0f} µs",
        server <= 400 and database <= 300,
    )


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The targets of issue 10, then the earlier ones the benchmark keeps, then the features'."""
    reference = _reference(results)
    spend_rate = _rate(_at_reference(results, SPEND))
    return [
        _spread_target(results),
        _own_sql_target(results),
        _batch_target(results),
        _relative_target(
            "spends all on one wallet",
            ">= 1.0x of spread",
            _rate(reference["spend one wallet"]),
            spend_rate,
            1.0,
        ),
        _relative_target(
            "journals of 5 postings over random wallets",
            ">= 50% of the single-spend req/s",
            _rate(reference["journal"]),
            spend_rate,
            0.5,
        ),
        _cpu_target(results),
        _relative_target(
            "top-ups over 10,000 wallets (earlier target)",
            ">= 90% of the spend figure",
            _rate(reference["topup"]),
            spend_rate,
            0.9,
        ),
        _replays(reference["replay"], spend_rate),
        _history_target(reference),
        _depth_target(reference, "balance at", "balance at a time"),
        _depth_target(reference, "statement", "1-month statement"),
        _verify_target(results["verify_under_load"]),
        *features.targets(results),
    ]


def _replays(replay: dict[str, Any], spend_rate: float) -> dict[str, Any]:
    """Replays against the spend figure; a replay counts only when answered as one."""
    target = _relative_target(
        "idempotent replays (earlier target)", ">= 2x the spend figure", _rate(replay), spend_rate, 2.0
    )
    all_replayed = replay["replayed"] == replay["requests"] and replay["failed"] == 0
    target["measured"] += f"; {replay['replayed']:,} of {replay['requests']:,} answers replayed"
    target["met"] = target["met"] and all_replayed
    return target


def _history_target(reference: dict[str, dict[str, Any]]) -> dict[str, Any]:
    big = reference["history big"]["latency_ms"]["p99"]
    small = reference["history small"]["latency_ms"]["p99"]
    ratio = _ratio(big, small)
    return _target(
        "history page p99, big wallet vs small wallet (earlier target)",
        "ratio <= 1.3",
        f"{big:.1f} ms vs {small:.1f} ms: {ratio:.2f}",
        ratio <= 1.3,
    )


def _depth_target(reference: dict[str, dict[str, Any]], read: str, figure: str) -> dict[str, Any]:
    """A read of the wallet of the deep history against the same read of the small one."""
    if f"{read} big" not in reference:  # results of a run made before the scenario existed
        return _target(f"{figure} p99, big wallet vs small wallet", "ratio <= 1.3", "not measured", False)
    big = reference[f"{read} big"]["latency_ms"]["p99"]
    small = reference[f"{read} small"]["latency_ms"]["p99"]
    ratio = _ratio(big, small)
    failed = reference[f"{read} big"]["failed"] + reference[f"{read} small"]["failed"]
    return _target(
        f"{figure} p99, big wallet vs small wallet",
        "ratio <= 1.3",
        f"{big:.1f} ms vs {small:.1f} ms: {ratio:.2f}" + (f"; {failed:,} requests failed" if failed else ""),
        ratio <= 1.3 and failed == 0,
    )


def _verify_target(verify: dict[str, Any]) -> dict[str, Any]:
    rates = verify["spends_per_second"]
    kept = _ratio(rates["during"] or 0.0, rates["before"] or 0.0)
    not_blocked = _writes_never_stopped(verify)
    return _target(
        f"`wallet ledger verify` on {verify['entries']:,} entries under spends (earlier target)",
        "< 30 s, writes not blocked",
        f"{verify['seconds']:.1f} s; spends/s before {rates['before'] or 0:.0f}, during "
        f"{rates['during'] or 0:.0f} ({kept:.0%}), after {rates['after'] or 0:.0f}"
        + ("" if not_blocked else "; a second passed with no spend committed"),
        verify["seconds"] < 30 and verify["verification"]["ok"] and not_blocked,
    )


def _writes_never_stopped(verify: dict[str, Any]) -> bool:
    """No whole second inside the verify window without a new transaction."""
    start, end = verify["verify_window"]
    inside = [(at, count) for at, count in verify["timeline"] if start <= at <= end]
    for index, (at, count) in enumerate(inside):
        later = [other for other_at, other in inside[index:] if other_at >= at + 1.0]
        if later and later[0] == count:
            return False
    return True


# --- markdown ---------------------------------------------------------------------------------


def _sweep_rows(results: dict[str, Any]) -> list[list[str]]:
    rows = []
    owns, references = _sweep(results, LIMIT_OWN), _sweep(results, LIMIT_REFERENCE)
    for connections, point in sorted(_sweep(results, SPEND).items()):
        own, reference = owns[connections], references[connections]
        rows.append(
            [
                _marked(str(connections), point),
                f"{_rate(point):,.0f}",
                _latency(point, "p50"),
                _latency(point, "p99"),
                _latency(point, "p99.9"),
                str(point["failed"]),
                _group_size(point),
                _marked(f"{_rate(own):,.0f}", own),
                _latency(own, "p99"),
                _marked(f"{_rate(reference):,.0f}", reference),
                _latency(reference, "p99"),
                f"**{_ratio(_rate(point), _rate(reference)):.0%}**",
                f"{_ratio(_rate(point), _rate(own)):.0%}",
                f"{_ratio(_rate(own), _rate(reference)):.0%}",
            ]
        )
    return rows


SWEEP_HEADER = [
    "connections", "API spends/s", "p50 ms", "p99 ms", "p99.9 ms", "failed", "group commit: spends/group",
    "own SQL spends/s", "own SQL p99 ms", "reference spends/s", "reference p99 ms",
    "API / reference", "API / own SQL", "own SQL / reference",
]  # fmt: skip


def _sweep_cpu_rows(results: dict[str, Any]) -> list[list[str]]:
    rows = []
    owns, references = _sweep(results, LIMIT_OWN), _sweep(results, LIMIT_REFERENCE)
    for connections, point in sorted(_sweep(results, SPEND).items()):
        own, reference = owns[connections], references[connections]
        rows.append(
            [
                _marked(str(connections), point),
                *_cpu_cells(point),
                f"{_microseconds(point, 'server'):,.0f}",
                f"{_microseconds(point, 'database'):,.0f}",
                f"{_microseconds(own, 'database'):,.0f}",
                f"{_microseconds(reference, 'database'):,.0f}",
                f"{cpu_cost_ratio(point, reference):.0%}",
                f"{cpu_cost_ratio(point, own):.0%}",
                f"{point['server_rss_mib']:.0f}",
            ]
        )
    return rows


SWEEP_CPU_HEADER = [
    "connections", "CPU server", "CPU database", "CPU wrk", "CPU other",
    "API: server µs/spend", "API: database µs/spend", "own SQL: database µs/spend",
    "reference: database µs/spend", "CPU-cost ratio vs reference", "CPU-cost ratio vs own SQL",
    "server RSS MiB",
]  # fmt: skip


def _limit_rows(results: dict[str, Any]) -> list[list[str]]:
    reference_rate = _rate(_at_reference(results, LIMIT_REFERENCE))
    rows = []
    for scenario, title in (
        (LIMIT_REFERENCE, "reference spend (bench/reference), 1 per call"),
        (LIMIT_OWN, "service's own SQL, 1 spend per call"),
        (LIMIT_OWN_GROUPED, "service's own SQL, 8 spends per call"),
    ):
        point = _at_reference(results, scenario)
        attempted = point["transactions"] * point["spends_per_call"]
        posted = point["spends_posted"]
        rows.append(
            [
                _marked(title, point),
                f"{point['transactions_per_second']:,.0f}",
                f"{_rate(point):,.0f}",
                "all" if posted is None else f"{posted:,} of {attempted:,}",
                _latency(point, "p50"),
                _latency(point, "p99"),
                f"{_ratio(_rate(point), reference_rate):.0%}",
                *_cpu_cells(point),
                f"{_microseconds(point, 'database'):,.0f}",
                str(point["failed"]),
            ]
        )
    return rows


LIMIT_HEADER = [
    "pgbench of", "calls/s", "spends/s", "spends posted", "p50 ms per call", "p99 ms per call",
    "vs reference", "CPU server", "CPU database", "CPU pgbench", "CPU other", "database µs/spend", "failed",
]  # fmt: skip


def _reference_rows(results: dict[str, Any]) -> list[list[str]]:
    spend = _at_reference(results, SPEND)
    own = _rate(_at_reference(results, LIMIT_OWN))
    reference = _rate(_at_reference(results, LIMIT_REFERENCE))
    rows = []
    for point in [spend, *results["reference"]]:
        movements = None if point["scenario"] in READ_SCENARIOS else _movements_per_second(point)
        rows.append(
            [
                _marked(_title(results, point["scenario"]), point),
                f"{_rate(point):,.0f}",
                "-" if movements is None else f"{movements:,.0f}",
                f"{_ratio(_rate(point), _rate(spend)):.2f}",
                f"{_ratio(movements or _rate(point), reference):.0%}",
                f"{_ratio(movements or _rate(point), own):.0%}",
                _latency(point, "p50"),
                _latency(point, "p99"),
                _latency(point, "p99.9"),
                str(point["failed"]),
                _group_size(point),
                _posts_per_request(point),
                *_cpu_cells(point),
                f"{_microseconds(point, 'server'):,.0f}",
                f"{_microseconds(point, 'database'):,.0f}",
                f"{point['server_rss_mib']:.0f}",
            ]
        )
    return rows


REFERENCE_HEADER = [
    "scenario", "req/s", "movements/s", "req/s vs spends", "vs reference", "vs own SQL",
    "p50 ms", "p99 ms", "p99.9 ms", "failed", "movements/group", "ledger.post items/request",
    "CPU server", "CPU database", "CPU wrk", "CPU other",
    "server µs/req", "database µs/req", "server RSS MiB",
]  # fmt: skip


def storage_per_movement(results: dict[str, Any]) -> dict[str, Any]:
    """What the ledger's tables grew by during the spends of the sweep, per movement."""
    before, after = results["storage"]["before"], results["storage"]["after"]
    movements = after["transaction"]["rows"] - before["transaction"]["rows"]
    tables = {}
    for table in before:
        grown = {name: after[table][name] - before[table][name] for name in before[table]}
        tables[table] = {
            "rows": grown["rows"],
            "table_bytes": _ratio(grown["table_bytes"], movements),
            "index_bytes": _ratio(grown["index_bytes"], movements),
        }
    return {"movements": movements, "tables": tables}


STORAGE_HEADER = [
    "table",
    "rows added",
    "rows per spend",
    "table B/spend",
    "indexes B/spend",
    "total B/spend",
]


def _storage_lines(results: dict[str, Any]) -> list[str]:
    stored = storage_per_movement(results)
    movements = stored["movements"]
    rows = []
    total_table = total_index = 0.0
    for table, grown in stored["tables"].items():
        total_table += grown["table_bytes"]
        total_index += grown["index_bytes"]
        rows.append(
            [
                table,
                f"{grown['rows']:,}",
                f"{_ratio(grown['rows'], movements):.2f}",
                f"{grown['table_bytes']:,.0f}",
                f"{grown['index_bytes']:,.0f}",
                f"{grown['table_bytes'] + grown['index_bytes']:,.0f}",
            ]
        )
    rows.append(["all three", "", "", f"{total_table:,.0f}", f"{total_index:,.0f}",
                 f"**{total_table + total_index:,.0f}**"])  # fmt: skip
    connections = ", ".join(str(c) for c in results["settings"]["concurrency_levels"])
    return [
        f"What `transaction`, `entry` and `idempotency_key` grew by (pg_total_relation_size: the "
        f"table with its TOAST and maps, and its indexes) while the sweep posted {movements:,} "
        f"spends (API spends and pgbench of the service's SQL at {connections} connections), per "
        "spend:",
        "",
        *_table(STORAGE_HEADER, rows),
    ]


WAITS_SHOWN = 6


def _waits_lines(results: dict[str, Any]) -> list[str]:
    rows = []
    for point in [*results["sweep"], *results["reference"]]:
        waits = point.get("database_waits")
        if not waits:
            continue
        shown = "; ".join(f"{wait} {share:.0%}" for wait, share in list(waits.items())[:WAITS_SHOWN])
        rows.append([_title(results, point["scenario"]), str(point["connections"]), shown])
    if not rows:
        return []
    return [
        "",
        "## What PostgreSQL's backends were doing",
        "",
        "pg_stat_activity of the active client backends, sampled every 0.2 s during each point: the "
        "share of samples on CPU or waiting for each wait event (a lock wait names its relation).",
        "",
        *_table(["point", "connections", "most frequent"], rows),
    ]


def _profile_lines(results: dict[str, Any]) -> list[str]:
    profiled = results["profile"]
    profiled_rate = profiled["load_during_profile"]["requests_per_second"]
    server_us = profiled["server_cores"] / profiled_rate * 1e6 if profiled_rate else 0.0
    lines = [
        f"py-spy record --gil on worker {profiled['worker_process_id']} for {profiled['seconds']} s "
        f"during spends at {profiled['connections']} connections ({profiled['samples']} samples; "
        f"{profiled_rate:,.0f} req/s while profiled; the worker used {profiled['worker_cores']:.2f} "
        f"cores, the whole server {profiled['server_cores']:.2f}, so {server_us:,.0f} µs of server "
        "CPU per spend). Shares of the samples, and that CPU split by them:",
        "",
    ]
    rows = [
        [step, f"{share:.1%}", f"{share * server_us:,.0f}"]
        for step, share in profiled["share_by_step"].items()
    ]
    lines += _table(["step of the request path", "share of samples", "≈ µs of server CPU per spend"], rows)
    lines += ["", "Top functions by own samples:", ""]
    lines += _table(
        ["function", "share"], [[name, f"{share:.1%}"] for name, share in profiled["top_self"][:15]]
    )
    return lines


def _setup_lines(results: dict[str, Any]) -> list[str]:
    settings = results["settings"]
    machine = results["machine"]
    postgres = results["postgres"]
    setup = results["setup"]
    template = setup["template"]
    changed = machine["git changes"].replace("\n", ", ")
    service = ", ".join(f"{name}={value}" for name, value in results["service"].items() if name != "workers")
    steps = ", ".join(f"{step} {seconds} s" for step, seconds in template["seconds_by_step"].items())
    history = setup["history wallet entries"]
    other = _other_cores(results)
    return [
        f"Machine: {machine['nproc']} CPUs ({machine['cpu model']}), kernel {machine['kernel']}; load "
        f"average at start {machine['load average at start']}. PostgreSQL {postgres['server_version']} "
        f"({postgres['where']}; shared_buffers {postgres['shared_buffers']}, fsync {postgres['fsync']}, "
        f"synchronous_commit {postgres['synchronous_commit']}). Service: `wallet serve --workers "
        f"{results['service']['workers']}`{' with ' + service if service else ''}; {machine['wrk']}; "
        f"{machine['pgbench']}. {settings['duration_seconds']} s per point, wrk "
        f"{settings['wrk_threads']} threads; git {machine['git commit']}"
        f"{' (uncommitted changes in ' + changed + ')' if changed else ''}.",
        "",
        f"Other processes on the machine (column CPU other) used {min(other):.2f}-{max(other):.2f} "
        f"cores during the measured points; {sum(o > NOISE_CORES_MAX for o in other)} of {len(other)} "
        f"points are marked {NOISE_MARK} (more than {NOISE_CORES_MAX}).",
        "",
        f"Template database: {'reused' if template['reused'] else 'built'} ({template['entries']:,} "
        f"entries; built in {template['seconds_total']} s: {steps}). Run database copied in "
        f"{setup['run database copy seconds']} s. History wallets: {history['small']:,} and "
        f"{history['big']:,} entries of their own.",
        "",
        "The reference is bench/reference/spend.sql (a minimal durable, idempotent spend written "
        "without the service's SQL); the service's own SQL is the statement `posting.post` sends, "
        "with one spend per call or 8. CPU columns are cores used on average during the point: "
        "the service's processes, the PostgreSQL server's, wrk (or pgbench), and everything else "
        "on the machine (other users). µs/spend and µs/req are CPU time per spend or request. The "
        "CPU-cost ratio is the limit's CPU per spend (database and pgbench) over the API's per "
        "spend (server, database and wrk): the throughput ratio both would reach alone on the "
        "machine while CPU-bound, and far less sensitive to other users' load.",
    ]


def _other_cores(results: dict[str, Any]) -> list[float]:
    points = [*results["sweep"], *results["reference"]]
    return [_cpu(point, "other") for point in points] or [0.0]


def _duration_line(results: dict[str, Any]) -> str:
    setup = results["setup"]
    template = setup["template"]
    parts = [
        f"setup {setup['setup seconds']:.0f} s (template {'reused' if template['reused'] else 'built'})",
        f"server start {setup['server start seconds']:.0f} s",
        *(f"{phase} {seconds:.0f} s" for phase, seconds in results["phase_seconds"].items()),
    ]
    return f"Run took {results['run_seconds']:.0f} s: {', '.join(parts)}."


def markdown(results: dict[str, Any]) -> str:
    settings = results["settings"]
    reference_connections = settings["concurrency_reference"]
    lines = [f"# Benchmark results ({results['mode']} run, {results['finished_at']})", ""]
    lines += _setup_lines(results)
    lines += ["", "## Targets", ""]
    lines += _table(
        ["figure", "target", "measured", "met"],
        [
            [item["figure"], item["target"], item["measured"], "yes" if item["met"] else "**no**"]
            for item in targets(results)
        ],
    )
    lines += ["", "## Spends over 10,000 wallets: the API and the two pgbench limits", ""]
    lines += _table(SWEEP_HEADER, _sweep_rows(results))
    lines += _noise_note(results["sweep"])
    lines += ["", "CPU of the same points:", ""]
    lines += _table(SWEEP_CPU_HEADER, _sweep_cpu_rows(results))
    lines += ["", f"## The pgbench limits at {reference_connections} clients", ""]
    lines += _table(LIMIT_HEADER, _limit_rows(results))
    lines += ["", f"## Scenarios at {reference_connections} connections", ""]
    lines += _table(REFERENCE_HEADER, _reference_rows(results))
    lines += _noise_note(results["reference"])
    lines += _waits_lines(results)
    lines += features.report_lines(results)
    lines += ["", "## Bytes stored per movement", ""]
    lines += _storage_lines(results)
    verify = results["verify_under_load"]
    final = results["final_verify"]
    lines += [
        "",
        "## Ledger verify",
        "",
        f"Under spends at {verify['connections']} connections: {verify['seconds']} s on "
        f"{verify['entries']:,} entries, ok={verify['verification']['ok']}; spends/s "
        f"{verify['spends_per_second']}. After the run: {final['seconds']} s on {final['entries']:,} "
        f"entries, ok={final['verification']['ok']}.",
        "",
        "## Profile of a worker during spends",
        "",
        *_profile_lines(results),
        "",
        _duration_line(results),
        "",
    ]
    return "\n".join(lines)


# --- plots ------------------------------------------------------------------------------------


def plot_concurrency(results: dict[str, Any], path: Path) -> None:
    series = (
        (SPEND, "o-", "API spends"),
        (LIMIT_OWN, "s--", "pgbench, service's own SQL"),
        (LIMIT_REFERENCE, "^:", "pgbench, reference spend"),
    )
    figure, (throughput, latency) = plt.subplots(1, 2, figsize=(11, 4.2))
    levels = sorted(_sweep(results, SPEND))
    for axis in (throughput, latency):
        axis.set_xscale("log", base=2)
        axis.set_xticks(levels, [str(c) for c in levels])
        axis.set_xlabel("connections (wrk) / clients (pgbench)")
        axis.grid(alpha=0.3)
    for scenario, style, label in series:
        points = sorted(_sweep(results, scenario).items())
        connections = [c for c, _ in points]
        throughput.plot(connections, [_rate(p) for _, p in points], style, label=label)
        latency.plot(connections, [p["latency_ms"]["p99"] for _, p in points], style, label=label)
    throughput.set_ylabel("spends per second")
    throughput.set_ylim(bottom=0)
    throughput.legend()
    throughput.set_title("Throughput")
    latency.set_ylabel("p99 ms (pgbench: per call)")
    latency.set_ylim(bottom=0)
    latency.legend()
    latency.set_title("p99 latency")
    cores = results["machine"]["nproc"]
    figure.suptitle(f"Spends over 10,000 wallets; {cores} cores shared by all ({results['mode']} run)")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def plot_verify(results: dict[str, Any], path: Path) -> None:
    verify = results["verify_under_load"]
    timeline = verify["timeline"]
    times, rates = [], []
    for (start, first), (end, last) in itertools.pairwise(timeline):
        times.append((start + end) / 2)
        rates.append((last - first) / (end - start) if end > start else 0.0)
    figure, axis = plt.subplots(figsize=(8, 3.6))
    axis.plot(times, rates, "-", linewidth=1.2, label="spends committed per second")
    window = verify["verify_window"]
    axis.axvspan(window[0], window[1], alpha=0.2, color="tab:orange", label="wallet ledger verify running")
    axis.set_xlabel("seconds")
    axis.set_ylabel("spends/s")
    axis.set_ylim(bottom=0)
    axis.grid(alpha=0.3)
    axis.legend(loc="lower left")
    axis.set_title(
        f"Spends at {verify['connections']} connections while verify reads {verify['entries']:,} entries"
    )
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def write(results: dict[str, Any], output_dir: Path) -> None:
    (output_dir / "results.md").write_text(markdown(results))
    plot_concurrency(results, output_dir / "benchmark-concurrency.png")
    plot_verify(results, output_dir / "benchmark-verify.png")


def main() -> None:
    """`python -m bench.report DIR`: render DIR/results.json again (after a change to this module
    or to the profile's classification, which is re-applied to DIR/py-spy-spend.raw)."""
    output_dir = Path(sys.argv[1])
    results = json.loads((output_dir / "results.json").read_text())
    raw_path = output_dir / "py-spy-spend.raw"
    if raw_path.exists():
        results["profile"].update(profile.analyse(raw_path.read_text()).to_document())
        (output_dir / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    write(results, output_dir)
    print((output_dir / "results.md").read_text())


if __name__ == "__main__":
    main()
