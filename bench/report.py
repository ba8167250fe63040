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

from bench import profile

LIMIT_SCENARIO = "pgbench spend (limit)"
SCENARIO_TITLES = {
    "spend": "spends over 10,000 wallets",
    "topup": "top-ups over 10,000 wallets",
    "spend one wallet": "spends on one wallet",
    "transfer": "transfers between random pairs",
    "replay": "idempotent replays",
    "wallet read": "wallet reads (GET /v1/wallets/{id})",
}


def _title(results: dict[str, Any], scenario: str) -> str:
    if scenario.startswith("history "):
        size = scenario.removeprefix("history ")
        transactions = results["setup"]["history wallet entries"][size]
        return f"history pages, wallet of {transactions:,} transactions"
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


def _rate(point: dict[str, Any]) -> float:
    return float(point.get("requests_per_second") or point.get("transactions_per_second") or 0.0)


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else 0.0


def _cpu(point: dict[str, Any], part: str) -> float:
    return float(point["cpu_cores"].get(part, 0.0))


def _cpu_cells(point: dict[str, Any]) -> list[str]:
    return [f"{_cpu(point, part):.2f}" for part in CPU_PARTS]


def _microseconds_per_request(point: dict[str, Any], part: str) -> str:
    rate = _rate(point)
    return f"{_cpu(point, part) / rate * 1e6:,.0f}" if rate else "-"


def _cpu_cost_us(point: dict[str, Any]) -> float:
    """CPU per request of everything the request needs: server, database and load generator."""
    rate = _rate(point)
    parts = ("server", "database", "load generator")
    return sum(_cpu(point, part) for part in parts) / rate * 1e6 if rate else 0.0


def cpu_cost_ratio(api: dict[str, Any], limit: dict[str, Any]) -> float:
    """The throughput ratio the two would reach on an otherwise idle machine when both are
    CPU-bound: the limit's CPU per transaction over the API's CPU per request. Other users'
    load changes it far less than it changes throughput."""
    return _ratio(_cpu_cost_us(limit), _cpu_cost_us(api))


def _marked(text: str, point: dict[str, Any]) -> str:
    return text + (f" {NOISE_MARK}" if _cpu(point, "other") > NOISE_CORES_MAX else "")


def _latency(point: dict[str, Any], name: str) -> str:
    return f"{point['latency_ms'].get(name, 0):.1f}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


# --- targets ----------------------------------------------------------------------------------


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    reference_connections = results["settings"]["concurrency_reference"]
    spends = _sweep(results, "spend")
    limits = _sweep(results, LIMIT_SCENARIO)
    reference = _reference(results)
    spend = spends[reference_connections]
    spend_rate = _rate(spend)
    ratios = {c: _ratio(_rate(spends[c]), _rate(limits[c])) for c in spends if c >= reference_connections}
    p99_reference = spend["latency_ms"]["p99"]
    history_ratio = _ratio(
        reference["history big"]["latency_ms"]["p99"], reference["history small"]["latency_ms"]["p99"]
    )
    verify = results["verify_under_load"]
    rates = verify["spends_per_second"]
    kept = _ratio(rates["during"] or 0.0, rates["before"] or 0.0)
    not_blocked = _writes_never_stopped(verify)
    return [
        {
            "target": f"spends over 10,000 wallets, {min(ratios)}-{max(ratios)} connections: >= 50% of the "
            f"pgbench limit, p99 < 20 ms at {reference_connections}",
            "measured": ", ".join(f"{ratio:.0%} at {c}" for c, ratio in sorted(ratios.items()))
            + f"; p99 {p99_reference:.1f} ms at {reference_connections} (CPU-cost ratio "
            + ", ".join(f"{cpu_cost_ratio(spends[c], limits[c]):.0%}" for c in sorted(ratios))
            + ")",
            "met": min(ratios.values()) >= 0.5 and p99_reference < 20,
        },
        _relative(
            "top-ups over 10,000 wallets: >= 90% of the spend figure",
            _rate(reference["topup"]),
            spend_rate,
            0.9,
        ),
        _relative(
            "spends on one wallet: >= 60% of the spread-out figure",
            _rate(reference["spend one wallet"]),
            spend_rate,
            0.6,
        ),
        _replays(reference["replay"], spend_rate),
        {
            "target": "history page p99, big wallet vs small wallet: ratio <= 1.3",
            "measured": f"{reference['history big']['latency_ms']['p99']:.1f} ms vs "
            f"{reference['history small']['latency_ms']['p99']:.1f} ms: {history_ratio:.2f}",
            "met": history_ratio <= 1.3,
        },
        {
            "target": f"`wallet ledger verify` on {verify['entries']:,} entries: < 30 s, writes not blocked",
            "measured": f"{verify['seconds']:.1f} s; spends/s before {rates['before'] or 0:.0f}, during "
            f"{rates['during'] or 0:.0f} ({kept:.0%}), after {rates['after'] or 0:.0f}"
            + ("" if not_blocked else "; a second passed with no spend committed"),
            "met": verify["seconds"] < 30 and verify["verification"]["ok"] and not_blocked,
        },
    ]


def _relative(target: str, value: float, base: float, minimum: float) -> dict[str, Any]:
    ratio = _ratio(value, base)
    return {
        "target": target,
        "measured": f"{value:,.0f} vs {base:,.0f} req/s: {ratio:.2f}x",
        "met": ratio >= minimum,
    }


def _replays(replay: dict[str, Any], spend_rate: float) -> dict[str, Any]:
    """Replays against the spend figure; a replay counts only when answered as one."""
    target = _relative("replays: >= 2x the spend figure", _rate(replay), spend_rate, 2.0)
    all_replayed = replay["replayed"] == replay["requests"] and replay["failed"] == 0
    target["measured"] += f"; {replay['replayed']:,} of {replay['requests']:,} answers replayed"
    target["met"] = target["met"] and all_replayed
    return target


def _writes_never_stopped(verify: dict[str, Any]) -> bool:
    """No whole second inside the verify window without a new entry."""
    start, end = verify["verify_window"]
    inside = [(at, newest) for at, newest in verify["timeline"] if start <= at <= end]
    for index, (at, newest) in enumerate(inside):
        later = [other for other_at, other in inside[index:] if other_at >= at + 1.0]
        if later and later[0] == newest:
            return False
    return True


# --- markdown ---------------------------------------------------------------------------------


def _sweep_rows(results: dict[str, Any]) -> list[list[str]]:
    rows = []
    limits = _sweep(results, LIMIT_SCENARIO)
    for connections, point in sorted(_sweep(results, "spend").items()):
        limit = limits[connections]
        rows.append(
            [
                _marked(str(connections), point),
                f"{_rate(point):,.0f}",
                _latency(point, "p50"),
                _latency(point, "p99"),
                _latency(point, "p99.9"),
                str(point["failed"]),
                _marked(f"{_rate(limit):,.0f}", limit),
                _latency(limit, "p50"),
                _latency(limit, "p99"),
                f"{_ratio(_rate(point), _rate(limit)):.0%}",
                *_cpu_cells(point),
                _microseconds_per_request(point, "server"),
                _microseconds_per_request(point, "database"),
                f"{_cpu_cost_us(point):,.0f}",
                _microseconds_per_request(limit, "database"),
                f"{_cpu_cost_us(limit):,.0f}",
                f"{cpu_cost_ratio(point, limit):.0%}",
                f"{point['server_rss_mib']:.0f}",
            ]
        )
    return rows


SWEEP_HEADER = [
    "connections", "API spends/s", "p50 ms", "p99 ms", "p99.9 ms", "failed",
    "pgbench tps", "pgbench p50 ms", "pgbench p99 ms", "API / limit",
    "CPU server", "CPU database", "CPU wrk", "CPU other",
    "server µs/req", "database µs/req", "all µs/req", "pgbench: database µs/tx", "pgbench: all µs/tx",
    "CPU-cost ratio", "server RSS MiB",
]  # fmt: skip


def _reference_rows(results: dict[str, Any]) -> list[list[str]]:
    reference_connections = results["settings"]["concurrency_reference"]
    spend = _sweep(results, "spend")[reference_connections]
    limit = _sweep(results, LIMIT_SCENARIO)[reference_connections]
    rows = []
    for point in [spend, *results["reference"]]:
        rows.append(
            [
                _marked(_title(results, point["scenario"]), point),
                f"{_rate(point):,.0f}",
                f"{_ratio(_rate(point), _rate(spend)):.2f}",
                f"{_ratio(_rate(point), _rate(limit)):.0%}",
                _latency(point, "p50"),
                _latency(point, "p99"),
                _latency(point, "p99.9"),
                str(point["failed"]),
                *_cpu_cells(point),
                _microseconds_per_request(point, "server"),
                _microseconds_per_request(point, "database"),
                f"{point['server_rss_mib']:.0f}",
            ]
        )
    return rows


REFERENCE_HEADER = [
    "scenario", "req/s", "vs spends", "vs pgbench limit", "p50 ms", "p99 ms", "p99.9 ms", "failed",
    "CPU server", "CPU database", "CPU wrk", "CPU other", "server µs/req", "database µs/req",
    "server RSS MiB",
]  # fmt: skip


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
        f"Template database: {'reused' if template['reused'] else 'built'} ({template['entries']:,} "
        f"entries; built in {template['seconds_total']} s: {steps}). Run database copied in "
        f"{setup['run database copy seconds']} s. History wallets: {history['small']:,} and "
        f"{history['big']:,} entries of their own.",
        "",
        "CPU columns are cores used on average during the point: the service's processes, the "
        "PostgreSQL server's, wrk (or pgbench), and everything else on the machine (other users). "
        "µs/req is CPU time per request; `all` adds server, database and load generator. The "
        "CPU-cost ratio is pgbench's `all µs/tx` over the API's `all µs/req`: the throughput ratio "
        "both would reach alone on the machine while CPU-bound, and far less sensitive to other users' "
        "load than the throughput ratio.",
    ]


def markdown(results: dict[str, Any]) -> str:
    settings = results["settings"]
    lines = [f"# Benchmark results ({results['mode']} run, {results['finished_at']})", ""]
    lines += _setup_lines(results)
    lines += ["", "## Targets", ""]
    lines += _table(
        ["target", "measured", "met"],
        [[item["target"], item["measured"], "yes" if item["met"] else "**no**"] for item in targets(results)],
    )
    lines += ["", "## Spends over 10,000 wallets vs the pgbench limit", ""]
    lines += _table(SWEEP_HEADER, _sweep_rows(results))
    lines += ["", NOISE_NOTE]
    lines += ["", f"## Scenarios at {settings['concurrency_reference']} connections", ""]
    lines += _table(REFERENCE_HEADER, _reference_rows(results))
    lines += ["", NOISE_NOTE]
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
        f"Run took {results['run_seconds']:.0f} s.",
        "",
    ]
    return "\n".join(lines)


# --- plots ------------------------------------------------------------------------------------


def plot_concurrency(results: dict[str, Any], path: Path) -> None:
    spends = sorted(_sweep(results, "spend").items())
    limits = sorted(_sweep(results, LIMIT_SCENARIO).items())
    figure, (throughput, latency) = plt.subplots(1, 2, figsize=(11, 4.2))
    for axis in (throughput, latency):
        axis.set_xscale("log", base=2)
        axis.set_xticks([c for c, _ in spends], [str(c) for c, _ in spends])
        axis.set_xlabel("connections (wrk) / clients (pgbench)")
        axis.grid(alpha=0.3)
    throughput.plot([c for c, _ in spends], [_rate(p) for _, p in spends], "o-", label="API spends/s")
    throughput.plot([c for c, _ in limits], [_rate(p) for _, p in limits], "s--", label="pgbench limit, tps")
    throughput.set_ylabel("per second")
    throughput.set_ylim(bottom=0)
    throughput.legend()
    throughput.set_title("Throughput")
    latency.plot([c for c, _ in spends], [p["latency_ms"]["p99"] for _, p in spends], "o-", label="API p99")
    latency.plot(
        [c for c, _ in limits], [p["latency_ms"]["p99"] for _, p in limits], "s--", label="pgbench p99"
    )
    latency.set_ylabel("ms")
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
        rates.append((last - first) / 2 / (end - start) if end > start else 0.0)
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
