"""What the ledger's features cost, each as a ratio measured within one run (the machine is shared
and its speed drifts, so no figure is compared with another run's):

- issue 19, hash chains: spends with the chains vs spends with ledger.entry_hash neutralised,
  and what the hashes cost a backend alone, per entry and per spend (hash_cost); and `wallet
  ledger verify --deep` on the run's whole ledger beside the plain verify;
- issue 13, the outbox: spends as they are vs spends with a ledger.post that writes no event; and
  how fast `wallet events relay` publishes the feed to NATS JetStream;
- issue 12, expiring credits: spends on wallets holding 10 lots each vs spends on plain wallets.

The spend figures come from rounds of pgbench of the service's own spend SQL (bench/limit.py:
the statement posting.post sends, one spend per call) at the reference concurrency, in a
database of their own: the template copied again as `<run database>_features` and migrated, so
that the variants, which write entries whose hashes are no chain and transactions without an
event, never reach the ledger the rest of the run verifies. The variants, ROUND_SECONDS each, in
turn, BENCH_FEATURE_CYCLES cycles, the order reversed every other cycle (A B C D, D C B A, ...)
so that a drift of the machine's speed weighs on all alike:

- `as is`: the ledger functions as installed, on the plain wallets (funded once, no lots);
- `no chain`: ledger.entry_hash (same signature, from ledger/sql/chains.sql) returns `previous`
  unchanged (inlined, the call is just that value). ledger.post still writes every entry's
  32-byte `hash` (the chain's head, repeated) and still updates the heads of the wallets and
  slots: what it no longer does is build the entry's content text and its SHA-256;
- `no outbox`: ledger.post made at run time from ledger/sql/post.sql without its statement
  `INSERT INTO event ... 'transaction.posted'` (the run fails if that text is not found);
- `10 lots`: the statement as is on the lot wallets (bench/ledger_data.py): each spend takes
  from the soonest of its wallet's 10 lots.

A variant's function is installed (CREATE OR REPLACE, under the same name) right before its round
and the file's own definition right after it. Each round starts after a CHECKPOINT; a round of
`as is` and one of `10 lots` go first, uncounted, to bring the copy's pages of both sets of
wallets into shared buffers. The event sequencer runs beside the rounds as each serving process
runs it (every events_sequence_interval_ms; it places nothing in a `no outbox` round), so the
outbox's cost includes giving its events their positions.

The relay, in the same database before the rounds: the events it holds are given positions and
purged (ledger.purge_events, as retention does), RELAY_SPENDS spends are posted through
posting.post (so RELAY_SPENDS `transaction.posted` events) and given positions, then `wallet events
relay` publishes them to a nats-server of the benchmark's own (127.0.0.1, a free port, a
temporary store). Its rate is timed from its first recorded position past the start to the last
event's (the events of its first batch, and its start, are left out); the stream must then hold
exactly those events.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nats

from bench import database, ledger_data, limit, measure, scenarios
from bench.database import DatabaseServer
from wallet import idempotency, keys
from wallet.config import Settings
from wallet.ledger import code, events, posting

AS_IS = "as is"
NO_CHAIN = "no chain"
NO_OUTBOX = "no outbox"
LOTS = "10 lots"
VARIANTS = (AS_IS, NO_CHAIN, NO_OUTBOX, LOTS)
WARM_UP = (AS_IS, LOTS)  # one round of each before the cycles, not counted
ROUND_SECONDS = {"quick": 3, "full": 5}
DATABASE_SUFFIX = "_features"
DEEP_VERIFY_TIMEOUT_SECONDS = 1800

CHAINS_SQL = code.SQL_DIRECTORY / "chains.sql"
POST_SQL = code.SQL_DIRECTORY / "post.sql"
ENTRY_HASH_DEFINITION = re.compile(r"CREATE FUNCTION ledger\.entry_hash\(.*?\n\$\$;\n", re.DOTALL)
FUNCTION_BODY = re.compile(r"AS \$\$\n.*?\n\$\$;\n", re.DOTALL)
POSTED_EVENT_INSERT = re.compile(
    r"INSERT INTO event \(id, type, subject_id, created_at, xid\)\s+"
    r"SELECT item_transaction_ids\[n\], 'transaction\.posted',[^;]*;",
)

RELAY_SPENDS = 20_000
RELAY_STREAM = "BENCH"
RELAY_POLL_SECONDS = 0.02
RELAY_TIMEOUT_SECONDS = 600.0
PURGE_BATCH_SIZE = 50_000
NATS_SERVER = shutil.which("nats-server") or "/usr/sbin/nats-server"
NATS_READY_TIMEOUT_SECONDS = 15.0

# Targets: issue 19, issue 13, issue 12.
CHAIN_RATIO_MIN = 0.95
OUTBOX_RATIO_MIN = 0.85
LOTS_RATIO_MIN = 0.80


class VariantSourceChanged(Exception):
    """The SQL a variant is made from no longer has the text this module takes out or replaces."""


# --- the variants ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Variant:
    name: str
    script: limit.Script
    install: str | None = None  # run before its round
    restore: str | None = None  # run after it


def _or_replace(definition: str) -> str:
    assert definition.count("CREATE FUNCTION ") == 1, definition[:80]
    return definition.replace("CREATE FUNCTION ", "CREATE OR REPLACE FUNCTION ", 1)


def no_chain_sql() -> tuple[str, str]:
    """(ledger.entry_hash returning `previous` unchanged, the definition chains.sql gives)."""
    matches = ENTRY_HASH_DEFINITION.findall(CHAINS_SQL.read_text())
    if len(matches) != 1:
        raise VariantSourceChanged(f"{CHAINS_SQL} defines ledger.entry_hash {len(matches)} times, not once")
    original = matches[0]
    neutral, replaced = FUNCTION_BODY.subn("AS $$\n    SELECT previous\n$$;\n", original)
    if replaced != 1:
        raise VariantSourceChanged(f"ledger.entry_hash in {CHAINS_SQL} has no body this module can replace")
    return _or_replace(neutral), _or_replace(original)


def no_outbox_sql() -> tuple[str, str]:
    """(ledger.post without its INSERT of `transaction.posted` events, post.sql's definition)."""
    original = POST_SQL.read_text()
    if original.count("CREATE FUNCTION ") != 1:
        raise VariantSourceChanged(f"{POST_SQL} no longer defines one function")
    without, removed = POSTED_EVENT_INSERT.subn("NULL;  -- (bench: no outbox)", original)
    if removed != 1:
        raise VariantSourceChanged(
            f"{POST_SQL} has {removed} INSERTs of 'transaction.posted' events this module knows, not one"
        )
    assert "'transaction.posted'" not in without
    return _or_replace(without.strip() + "\n"), _or_replace(original.strip() + "\n")


async def _variants(
    connection: Any, wallet_count: int, directory: Path
) -> tuple[dict[str, Variant], uuid.UUID]:
    """The four variants, and the API key whose idempotency rows count the spends they post."""
    api_key, _ = await keys.create(connection, f"bench-features-{uuid.uuid4().hex[:8]}", {keys.Scope.ADMIN})
    scripts = {}
    for name, first_wallet in ((AS_IS, 1), (LOTS, ledger_data.lot_wallet_numbers(wallet_count).start)):
        text, _ = await limit.service_script(connection, api_key.id, wallet_count, 1, first_wallet)
        script_name = f"features-{name.replace(' ', '-')}"
        path = directory / f"{script_name}.pgbench.sql"
        path.write_text(text)
        scripts[name] = limit.Script(script_name, path, 1)
    no_chain, chain = no_chain_sql()
    no_outbox, outbox = no_outbox_sql()
    variants = {
        AS_IS: Variant(AS_IS, scripts[AS_IS]),
        NO_CHAIN: Variant(NO_CHAIN, scripts[AS_IS], no_chain, chain),
        NO_OUTBOX: Variant(NO_OUTBOX, scripts[AS_IS], no_outbox, outbox),
        LOTS: Variant(LOTS, scripts[LOTS]),
    }
    return variants, api_key.id


def round_order(cycles: int) -> list[tuple[int, str]]:
    """(cycle, variant) of every round: A B C D, then D C B A, and so on."""
    order = []
    for cycle in range(1, cycles + 1):
        names = VARIANTS if cycle % 2 else tuple(reversed(VARIANTS))
        order += [(cycle, name) for name in names]
    return order


# --- the rounds --------------------------------------------------------------------------------


async def _sequencer(url: str, stop: asyncio.Event, interval_seconds: float) -> None:
    """Gives committed events their positions as a serving process does, until stopped."""
    async with database.connect(url) as connection:
        while not stop.is_set():
            while await events.sequence(connection) == events.SEQUENCE_BATCH_SIZE:
                pass
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval_seconds)


COUNTS = """
SELECT (SELECT count(*) FROM idempotency_key WHERE api_key_id = $1) AS spends,
    (SELECT count(*) FROM event) AS events
"""


async def _counts(connection: Any, api_key_id: uuid.UUID) -> tuple[int, int]:
    """(idempotency rows of the key: one per spend posted, a deferred one keeps none; events)."""
    row = await connection.fetchrow(COUNTS, api_key_id)
    return int(row["spends"]), int(row["events"])


async def _round(
    bench: scenarios.Bench, url: str, variant: Variant, cycle: int, api_key_id: uuid.UUID, seconds: int
) -> dict[str, Any]:
    waited = await scenarios.settle(bench)
    settings = bench.settings
    log_dir = bench.log_dir / f"features_{variant.script.name}_{variant.name.replace(' ', '-')}_{cycle}"
    async with database.connect(url) as connection:
        if variant.install is not None:
            await connection.execute(variant.install)
        try:
            spends_before, events_before = await _counts(connection, api_key_id)
            start = measure.snapshot(bench.cpu_roots)
            result = await limit.run(
                url, variant.script, settings.concurrency_reference, settings.wrk_threads, seconds, log_dir
            )
            end = measure.snapshot(bench.cpu_roots)
        finally:
            if variant.restore is not None:
                await connection.execute(variant.restore)
        spends_after, events_after = await _counts(connection, api_key_id)
    spends = spends_after - spends_before
    result = dataclasses.replace(result, spends_posted=spends)
    cpu = measure.cpu_use(start, end)
    wall_seconds = end.at - start.at
    database_us = cpu.cores_by_part.get("database", 0.0) * wall_seconds / spends * 1e6 if spends else 0.0
    print(
        f"bench: features cycle {cycle} {variant.name:<10} {result.spends_per_second:8.0f} sp/s  "
        f"database {database_us:5.0f} µs/spend  events +{events_after - events_before}",
        flush=True,
    )
    return {
        "cycle": cycle,
        "variant": variant.name,
        **result.to_document(),
        "events_added": events_after - events_before,
        "database_us_per_spend": round(database_us, 1),
        "cpu_cores": {name: round(value, 2) for name, value in cpu.to_document().items()},
        "waited_for_quiet_seconds": round(waited, 1),
    }


async def _rounds(
    bench: scenarios.Bench, url: str, variants: dict[str, Variant], api_key_id: uuid.UUID
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(the warm-up rounds, the measured rounds)."""
    seconds = ROUND_SECONDS[bench.settings.mode]
    interval_ms = Settings().events_sequence_interval_ms
    stop = asyncio.Event()
    sequencer = None
    if interval_ms > 0:
        sequencer = asyncio.create_task(_sequencer(url, stop, interval_ms / 1000))
    try:
        # Cycle 0, not counted: the copy's pages of both sets of wallets into shared buffers, so
        # the first measured round of each set does not pay for it.
        warm_up = [await _round(bench, url, variants[name], 0, api_key_id, seconds) for name in WARM_UP]
        measured = [
            await _round(bench, url, variants[name], cycle, api_key_id, seconds)
            for cycle, name in round_order(bench.settings.feature_cycles)
        ]
        return warm_up, measured
    finally:
        stop.set()
        if sequencer is not None:
            await sequencer


def summarise(rounds: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per variant: its spends/s (mean of its rounds, and their range), its ratio to `as is`
    (the means', and the ratios within each cycle), database CPU per spend and events per spend."""
    rate = {(r["cycle"], r["variant"]): float(r["spends_per_second"]) for r in rounds}
    cycles = sorted({r["cycle"] for r in rounds})
    base = statistics.fmean(rate[cycle, AS_IS] for cycle in cycles)
    summary = {}
    for name in VARIANTS:
        mine = [r for r in rounds if r["variant"] == name]
        rates = [float(r["spends_per_second"]) for r in mine]
        spends = sum(r["spends_posted"] for r in mine)
        mean = statistics.fmean(rates)
        cycle_ratios = [rate[cycle, name] / rate[cycle, AS_IS] for cycle in cycles if rate[cycle, AS_IS]]
        summary[name] = {
            "rounds": len(mine),
            "spends_per_second": round(mean, 1),
            "spends_per_second_range": [round(min(rates), 1), round(max(rates), 1)],
            "ratio_to_as_is": round(mean / base, 4) if base else 0.0,
            "cycle_ratio_range": [round(min(cycle_ratios), 4), round(max(cycle_ratios), 4)],
            "cycle_ratios": [round(ratio, 4) for ratio in cycle_ratios],
            "database_us_per_spend": round(
                sum(r["database_us_per_spend"] * r["spends_posted"] for r in mine) / spends, 1
            )
            if spends
            else 0.0,
            "events_per_spend": round(sum(r["events_added"] for r in mine) / spends, 3) if spends else 0.0,
            "failed": sum(r["failed"] for r in mine),
            "cpu_other_max": max(r["cpu_cores"].get("other", 0.0) for r in mine),
        }
    return summary


# --- the hashes alone ---------------------------------------------------------------------------

HASH_SAMPLE_ENTRIES = 100_000
HASH_TRANSACTIONS = 3_000
HASH_TRIALS = 3
# Every entry's hash as ledger.post computes it (ledger.entry_hash), over existing entries in one
# statement: the cost per entry once the call is set up (what `verify --deep` pays per entry).
HASH_ENTRIES = """
SELECT sum(length(ledger.entry_hash(e.hash, e.transaction_id, e.account_id, e.direction, e.amount,
    e.balance_after, $2, e.slot, e.account_sequence, e.created_at)))
FROM (SELECT * FROM entry LIMIT $1) e
"""
# A spend's two hashes (its wallet's entry, its system slot's), computed in PL/pgSQL as
# ledger.post computes them, one call per transaction: what a lone spend pays for its hashes,
# the setting up of the call in each transaction included.
SPEND_HASHES_FUNCTION = """
CREATE OR REPLACE FUNCTION pg_temp.spend_hashes(head bytea, asset text) RETURNS bytea
LANGUAGE plpgsql AS $$
DECLARE
    at timestamptz := clock_timestamp();
    id uuid := gen_random_uuid();
    wallet bytea;
    slot bytea;
BEGIN
    wallet := ledger.entry_hash(head, id, id, 'debit', 1::bigint, 999::bigint, asset, NULL::smallint,
        2::bigint, at);
    slot := ledger.entry_hash(head, id, id, 'credit', 1::bigint, NULL::bigint, asset, 3::smallint,
        2::bigint, at);
    RETURN wallet || slot;
END
$$
"""
SPEND_HASHES = "SELECT pg_temp.spend_hashes(ledger.chain_genesis(), $1)"


def _postgres_process(process_id: int) -> bool:
    """Whether `process_id` is a PostgreSQL process of this machine (a remote server's backend
    PID may name any local process)."""
    try:
        return b"postgres" in Path(f"/proc/{process_id}/cmdline").read_bytes()
    except OSError:
        return False


async def _entries_at_once(connection: Any) -> None:
    await connection.fetchval(HASH_ENTRIES, HASH_SAMPLE_ENTRIES, ledger_data.ASSET)


async def _spends_one_by_one(connection: Any) -> None:
    for _ in range(HASH_TRANSACTIONS):
        await connection.fetchval(SPEND_HASHES, ledger_data.ASSET)


async def _seconds(connection: Any, process_id: int | None, work: Any) -> float:
    """The backend's CPU seconds for `work` (its wall time when the backend is not visible)."""
    cpu_before = None if process_id is None else measure.process_cpu_seconds(process_id)
    started = time.monotonic()
    await work(connection)
    wall = time.monotonic() - started
    cpu_after = None if process_id is None else measure.process_cpu_seconds(process_id)
    return wall if cpu_before is None or cpu_after is None else cpu_after - cpu_before


async def hash_cost(url: str) -> dict[str, Any]:
    """ledger.entry_hash, as is and neutralised, in one backend, the least of HASH_TRIALS
    alternating runs of each: per entry over HASH_SAMPLE_ENTRIES entries in one statement, and
    per spend over HASH_TRANSACTIONS transactions of a spend's two hashes each."""
    no_chain, chain = no_chain_sql()
    works = {
        "entries": (_entries_at_once, HASH_SAMPLE_ENTRIES),
        "spends": (_spends_one_by_one, HASH_TRANSACTIONS),
    }
    async with database.connect(url) as connection:
        backend = int(await connection.fetchval("SELECT pg_backend_pid()"))
        process_id = backend if _postgres_process(backend) else None
        await connection.execute(SPEND_HASHES_FUNCTION)
        await _entries_at_once(connection)  # the pages into shared buffers
        seconds: dict[tuple[str, str], list[float]] = {}
        for _ in range(HASH_TRIALS):
            for variant in (AS_IS, NO_CHAIN):
                if variant == NO_CHAIN:
                    await connection.execute(no_chain)
                try:
                    for unit, (work, _count) in works.items():
                        measured = await _seconds(connection, process_id, work)
                        seconds.setdefault((unit, variant), []).append(measured)
                finally:
                    if variant == NO_CHAIN:
                        await connection.execute(chain)
    us = {key: min(values) / works[key[0]][1] * 1e6 for key, values in seconds.items()}
    return {
        "entries": HASH_SAMPLE_ENTRIES,
        "transactions": HASH_TRANSACTIONS,
        "clock": "backend CPU" if process_id is not None else "wall",
        "us_per_entry": {variant: round(us["entries", variant], 2) for variant in (AS_IS, NO_CHAIN)},
        "hash_us_per_entry": round(us["entries", AS_IS] - us["entries", NO_CHAIN], 2),
        "us_per_spend": {variant: round(us["spends", variant], 2) for variant in (AS_IS, NO_CHAIN)},
        "hash_us_per_spend": round(us["spends", AS_IS] - us["spends", NO_CHAIN], 2),
    }


# --- the relay ---------------------------------------------------------------------------------


def _relay_spends(api_key_id: uuid.UUID, wallet_count: int) -> list[posting.Request]:
    """RELAY_SPENDS spends of 1 over the plain wallets in turn (distinct within a group)."""
    body = idempotency.canonical_json({"amount": 1})
    requests = []
    for number in range(RELAY_SPENDS):
        wallet = ledger_data.wallet_id(number % wallet_count + 1)
        requests.append(
            posting.Request(
                api_key_id,
                f"relay-{number}",
                idempotency.fingerprint("POST", f"/v1/wallets/{wallet}/spend", body),
                posting.spend(wallet, 1, None, None),
            )
        )
    return requests


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _start_nats(store: Path, log_path: Path) -> tuple[subprocess.Popen[bytes], str]:
    """A nats-server with JetStream of this run's own: 127.0.0.1, a free port, `store`."""
    port = _free_port()
    with log_path.open("ab") as log:
        process = subprocess.Popen(
            [NATS_SERVER, "-js", "-a", "127.0.0.1", "-p", str(port), "-sd", str(store)],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + NATS_READY_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"nats-server exited:\n{log_path.read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return process, f"nats://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.05)
    process.kill()
    process.wait()
    raise RuntimeError(f"nats-server did not start in {NATS_READY_TIMEOUT_SECONDS} s")


def _stop_process(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


async def _stop_relay(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(process.wait(), 10)
        except TimeoutError:
            process.kill()
            await process.wait()


def _tail(path: Path) -> str:
    return path.read_text(errors="replace")[-3000:]


async def _follow_relay(url: str, nats_url: str, last: int, log_path: Path) -> list[tuple[float, int]]:
    """Starts `wallet events relay` and samples its recorded position (seconds since its start,
    position) until it reaches `last`; then stops it."""
    environment = {**os.environ, "WALLET_DATABASE_URL": url}
    arguments = ["events", "relay", "--nats-url", nats_url, "--stream", RELAY_STREAM]
    with log_path.open("wb") as log:
        process = await asyncio.create_subprocess_exec(
            database.WALLET_COMMAND, *arguments, env=environment, stdout=log, stderr=asyncio.subprocess.STDOUT
        )
    started = time.monotonic()
    samples: list[tuple[float, int]] = []
    try:
        async with database.connect(url) as connection:
            while not samples or samples[-1][1] < last:
                if process.returncode is not None:
                    raise RuntimeError(f"wallet events relay exited:\n{_tail(log_path)}")
                if time.monotonic() - started > RELAY_TIMEOUT_SECONDS:
                    raise RuntimeError(
                        f"the relay did not reach position {last} in {RELAY_TIMEOUT_SECONDS} s"
                    )
                await asyncio.sleep(RELAY_POLL_SECONDS)
                position = await connection.fetchval(
                    "SELECT position FROM event_relay WHERE stream = $1", RELAY_STREAM
                )
                if position is not None:
                    samples.append((time.monotonic() - started, int(position)))
    finally:
        await _stop_relay(process)
    return samples


async def _stream_state(nats_url: str) -> dict[str, int]:
    """What the relay's stream holds: its messages, and the feed position of its last one."""
    client = await nats.connect(nats_url, connect_timeout=5, max_reconnect_attempts=1)
    try:
        jetstream = client.jetstream(timeout=10)
        info = await jetstream.stream_info(RELAY_STREAM)
        message = await jetstream.get_msg(RELAY_STREAM, seq=info.state.last_seq)
        headers = message.headers or {}
        return {
            "messages": int(info.state.messages),
            "last_position": int(headers.get("Wallet-Position", -1)),
        }
    finally:
        await client.close()


def relay_rates(samples: list[tuple[float, int]], first: int, last: int) -> dict[str, float]:
    """Events/s from its first recorded position at or past `first` (its first batch published)
    to `last`; and over all the events from the relay's start (its start included)."""
    published = [(at, position) for at, position in samples if position >= first]
    assert published and published[-1][1] >= last, (first, last, samples[-3:])
    first_at, first_position = published[0]
    end_at = published[-1][0]
    steady = (last - first_position) / (end_at - first_at) if end_at > first_at else 0.0
    return {
        "events_per_second": round(steady, 1),
        "events_per_second_from_start": round((last - first + 1) / end_at, 1),
        "seconds_from_start": round(end_at, 2),
        "seconds_timed": round(end_at - first_at, 2),
        "events_timed": last - first_position,
    }


async def _relay(url: str, api_key_id: uuid.UUID, wallet_count: int, log_dir: Path) -> dict[str, Any]:
    if shutil.which(NATS_SERVER) is None:
        return {"not_measured": f"no nats-server at {NATS_SERVER} (Debian's package nats-server)"}
    async with database.connect(url) as connection:
        await events.sequence_all(connection)
        purged = 0
        while deleted := await connection.fetchval("SELECT ledger.purge_events(now(), $1)", PURGE_BATCH_SIZE):
            purged += int(deleted)
        started = time.monotonic()
        await ledger_data.post_all(connection, _relay_spends(api_key_id, wallet_count))
        post_seconds = time.monotonic() - started
        await events.sequence_all(connection)
        row = await connection.fetchrow(
            "SELECT count(*) AS events, min(position) AS first, max(position) AS last FROM event_position"
        )
    assert row is not None
    count, first, last = int(row["events"]), int(row["first"]), int(row["last"])
    assert count == RELAY_SPENDS == last - first + 1, dict(row)
    with tempfile.TemporaryDirectory(prefix="bench-nats-") as store:
        nats_server, nats_url = _start_nats(Path(store), log_dir / "nats-server.log")
        try:
            samples = await _follow_relay(url, nats_url, last, log_dir / "relay.log")
            stream = await _stream_state(nats_url)
        finally:
            _stop_process(nats_server)
    rates = relay_rates(samples, first, last)
    stream_ok = stream == {"messages": count, "last_position": last}
    print(
        f"bench: relay published {count} events: {rates['events_per_second']:.0f} events/s "
        f"({rates['events_per_second_from_start']:.0f} from its start), stream {stream}",
        flush=True,
    )
    return {
        "events": count,
        "events_purged_before": purged,
        "spends_posted_seconds": round(post_seconds, 2),
        **rates,
        "stream": stream,
        "stream_ok": stream_ok,
        "timeline": [(round(at, 3), position - first + 1) for at, position in samples],
    }


# --- the whole phase ---------------------------------------------------------------------------


async def run(bench: scenarios.Bench, server: DatabaseServer, output_dir: Path) -> dict[str, Any]:
    """The relay, then the rounds, in a copy of the template dropped afterwards."""
    settings = bench.settings
    name = server.run_database + DATABASE_SUFFIX
    started = time.monotonic()
    copy_seconds = await database.create_run_database(server, settings, name)
    url = database.with_database(server.maintenance_url, name)
    try:
        async with database.connect(url) as connection:
            variants, api_key_id = await _variants(connection, settings.wallet_count, output_dir / "data")
        relay = await _relay(url, api_key_id, settings.wallet_count, bench.log_dir)
        warm_up, rounds = await _rounds(bench, url, variants, api_key_id)
        hashing = await hash_cost(url)
    finally:
        await database.drop_database(server, name)
    return {
        "database": "<run database>" + DATABASE_SUFFIX,
        "copy_seconds": round(copy_seconds, 1),
        "seconds": round(time.monotonic() - started, 1),
        "connections": settings.concurrency_reference,
        "round_seconds": ROUND_SECONDS[settings.mode],
        "cycles": settings.feature_cycles,
        "lot_wallets": len(ledger_data.lot_wallet_numbers(settings.wallet_count)),
        "lots_per_wallet": ledger_data.LOT_COUNT,
        "warm_up_rounds": warm_up,
        "rounds": rounds,
        "variants": summarise(rounds),
        "relay": relay,
        "hash_cost": hashing,
    }


async def deep_verify(bench: scenarios.Bench) -> dict[str, Any]:
    """`wallet ledger verify --deep` on the run database, timed (after the plain one)."""
    async with database.connect(bench.database_url) as connection:
        entries = await connection.fetchval("SELECT count(*) FROM entry")
    seconds, verification = await scenarios.verify_command(
        bench.database_url, "--deep", timeout_seconds=DEEP_VERIFY_TIMEOUT_SECONDS
    )
    print(
        f"bench: wallet ledger verify --deep on {entries} entries: {seconds:.1f} s, ok={verification['ok']}",
        flush=True,
    )
    return {
        "entries": entries,
        "seconds": round(seconds, 2),
        "verification": {
            key: verification[key] for key in ("ok", "accounts_checked", "transactions_checked")
        },
        "problems": verification["problems"][:5],
    }


# --- the report ----------------------------------------------------------------------------------


def _target(figure: str, target: str, measured: str, met: bool) -> dict[str, Any]:
    return {"figure": figure, "target": target, "measured": measured, "met": met}


def _summaries(costs: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The variants' summaries, from the rounds (so results.json of any run renders alike)."""
    return summarise(costs["rounds"])


def _cycles_text(ratios: list[float]) -> str:
    """The per-cycle ratios: their median and range."""
    if not ratios:
        return "no cycle"
    return f"per cycle median {statistics.median(ratios):.0%}, {min(ratios):.0%}-{max(ratios):.0%}"


def _cost_target(costs: dict[str, Any], variant: str, figure: str, minimum: float) -> dict[str, Any]:
    """Spends as is against spends without a feature: as-is / variant >= minimum."""
    as_is, without = _summaries(costs)[AS_IS], _summaries(costs)[variant]
    ratio = as_is["spends_per_second"] / without["spends_per_second"] if without["spends_per_second"] else 0.0
    inverse = [1 / value for value in without["cycle_ratios"] if value]
    measured = (
        f"{as_is['spends_per_second']:,.0f} vs {without['spends_per_second']:,.0f} spends/s ({variant}): "
        f"{ratio:.2%} ({_cycles_text(inverse)}); database CPU {as_is['database_us_per_spend']:,.0f} "
        f"vs {without['database_us_per_spend']:,.0f} µs/spend"
    )
    return _target(figure, f">= {minimum:.0%} of the figure without it", measured, ratio >= minimum)


def _lots_target(costs: dict[str, Any]) -> dict[str, Any]:
    as_is, lots = _summaries(costs)[AS_IS], _summaries(costs)[LOTS]
    measured = (
        f"{lots['spends_per_second']:,.0f} vs {as_is['spends_per_second']:,.0f} spends/s: "
        f"{lots['ratio_to_as_is']:.2%} ({_cycles_text(lots['cycle_ratios'])}); database CPU "
        f"{lots['database_us_per_spend']:,.0f} vs {as_is['database_us_per_spend']:,.0f} µs/spend"
    )
    return _target(
        f"spends on wallets of {costs['lots_per_wallet']} lots each (issue 12)",
        f">= {LOTS_RATIO_MIN:.0%} of plain spends",
        measured,
        lots["ratio_to_as_is"] >= LOTS_RATIO_MIN,
    )


def _relay_target(costs: dict[str, Any]) -> dict[str, Any]:
    relay = costs["relay"]
    figure, target = "`wallet events relay` to NATS JetStream (issue 13)", ">= the spend rate"
    if "not_measured" in relay:
        return _target(figure, target, f"not measured: {relay['not_measured']}", False)
    spends = _summaries(costs)[AS_IS]["spends_per_second"]
    stream = relay["stream"]
    measured = (
        f"{relay['events_per_second']:,.0f} events/s vs {spends:,.0f} spends/s (pgbench, as is) "
        f"over {relay['events']:,} events ({relay['events_per_second_from_start']:,.0f}/s counting its "
        f"start); the stream holds {stream['messages']:,} messages, the last at position "
        f"{stream['last_position']:,}" + ("" if relay["stream_ok"] else " (**not** the feed's)")
    )
    return _target(figure, target, measured, relay["events_per_second"] >= spends and relay["stream_ok"])


def _deep_verify_target(results: dict[str, Any]) -> dict[str, Any]:
    deep, plain = results["features"]["deep_verify"], results["final_verify"]
    problems = deep["problems"]
    measured = (
        f"{deep['seconds']:.1f} s on {deep['entries']:,} entries, ok={deep['verification']['ok']}; the "
        f"plain verify {plain['seconds']:.1f} s on {plain['entries']:,}"
        + (f"; first problems: {problems[:2]}" if problems else "")
    )
    return _target(
        "`wallet ledger verify --deep` after the run (issue 19)",
        "every chain intact (the time is reported)",
        measured,
        bool(deep["verification"]["ok"]),
    )


def targets(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The targets of issues 19, 13 and 12 (none for results from before this module)."""
    costs = results.get("features")
    if costs is None:
        return []
    found = [
        _cost_target(costs, NO_CHAIN, "spends with hash chains (issue 19)", CHAIN_RATIO_MIN),
        _cost_target(costs, NO_OUTBOX, "spends with the event outbox (issue 13)", OUTBOX_RATIO_MIN),
        _relay_target(costs),
        _lots_target(costs),
    ]
    if "deep_verify" in costs:
        found.append(_deep_verify_target(results))
    return found


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


VARIANT_HEADER = [
    "variant", "rounds", "spends/s (mean)", "range", "vs as is", "per cycle vs as is: median, range",
    "database µs/spend", "events/spend", "failed", "CPU other (max)",
]  # fmt: skip


def _variant_rows(costs: dict[str, Any]) -> list[list[str]]:
    rows = []
    for name, summary in _summaries(costs).items():
        low, high = summary["spends_per_second_range"]
        rows.append(
            [
                name,
                str(summary["rounds"]),
                f"{summary['spends_per_second']:,.0f}",
                f"{low:,.0f}-{high:,.0f}",
                f"{summary['ratio_to_as_is']:.1%}",
                _cycles_text(summary["cycle_ratios"]).removeprefix("per cycle median "),
                f"{summary['database_us_per_spend']:,.0f}",
                f"{summary['events_per_spend']:.2f}",
                str(summary["failed"]),
                f"{summary['cpu_other_max']:.2f}",
            ]
        )
    return rows


def _cycle_rows(costs: dict[str, Any]) -> list[list[str]]:
    by_cycle: dict[int, dict[str, dict[str, Any]]] = {}
    for point in costs["rounds"]:
        by_cycle.setdefault(point["cycle"], {})[point["variant"]] = point
    return [
        [str(cycle)] + [f"{points[name]['spends_per_second']:,.0f}" for name in VARIANTS]
        for cycle, points in sorted(by_cycle.items())
    ]


def _hash_line(hashing: dict[str, Any], spend_us: float) -> str:
    line = (
        f"The hashes alone, in one backend ({hashing['clock']} time, the least of {HASH_TRIALS} runs "
        f"each, as is and neutralised): over {hashing['entries']:,} entries in one statement "
        f"{hashing['us_per_entry'][AS_IS]} µs vs {hashing['us_per_entry'][NO_CHAIN]} µs per entry, so "
        f"{hashing['hash_us_per_entry']} µs per entry's hash"
    )
    if "us_per_spend" not in hashing:  # results from before the per-spend measure
        return line + "."
    per_spend = hashing["hash_us_per_spend"]
    return line + (
        f"; a spend's two hashes in PL/pgSQL, one transaction each ({hashing['transactions']:,}): "
        f"{hashing['us_per_spend'][AS_IS]} µs vs {hashing['us_per_spend'][NO_CHAIN]} µs per "
        f"transaction, so {per_spend} µs per spend ({per_spend / spend_us:.1%} of the {spend_us:,.0f} µs "
        "of database CPU per spend as is in the rounds)."
    )


def report_lines(results: dict[str, Any]) -> list[str]:
    """The section of results.md (nothing for results from before this module)."""
    costs = results.get("features")
    if costs is None:
        return []
    lines = [
        "",
        "## Feature costs (issues 19, 13, 12)",
        "",
        f"pgbench of the service's spend SQL (one spend per call) at {costs['connections']} clients in "
        f"a copy of the template of its own, {costs['cycles']} cycles of four {costs['round_seconds']}-s "
        "rounds, one per variant, the order reversed every other cycle (after an uncounted round of "
        f"`{AS_IS}` and one of `{LOTS}`): `as is`; `no chain`: "
        "ledger.entry_hash returns the previous hash unchanged, so ledger.post still writes every "
        "entry's 32-byte hash and the heads, but builds no content text and computes no SHA-256; "
        "`no outbox`: ledger.post without its INSERT of `transaction.posted` events; "
        f"`{LOTS}`: the statement as is on {costs['lot_wallets']:,} other wallets each holding "
        f"{costs['lots_per_wallet']} lots (and nothing else). The event sequencer ran beside the "
        "rounds as the service runs it. database µs/spend: the PostgreSQL server's CPU per spend posted.",
        "",
        *_table(VARIANT_HEADER, _variant_rows(costs)),
        "",
        "Spends/s of each round:",
        "",
        *_table(["cycle", *VARIANTS], _cycle_rows(costs)),
    ]
    hashing = costs.get("hash_cost")
    if hashing is not None:
        lines += ["", _hash_line(hashing, _summaries(costs)[AS_IS]["database_us_per_spend"])]
    relay = costs["relay"]
    if "not_measured" in relay:
        lines += ["", f"The relay: not measured ({relay['not_measured']})."]
    else:
        lines += [
            "",
            f"The relay: {relay['events']:,} `transaction.posted` events (of spends posted through "
            f"posting.post in {relay['spends_posted_seconds']} s, after the "
            f"{relay['events_purged_before']:,} events before them were purged), published by "
            "`wallet events relay` to a nats-server of "
            f"the run's own in {relay['seconds_from_start']} s from its start: "
            f"{relay['events_per_second']:,.0f} events/s over the {relay['events_timed']:,} after its first "
            f"batch ({relay['seconds_timed']} s), {relay['events_per_second_from_start']:,.0f}/s counting "
            f"its start. The stream then held {relay['stream']['messages']:,} messages, the last at "
            f"feed position {relay['stream']['last_position']:,} (as the feed: {relay['stream_ok']}).",
        ]
    deep = costs.get("deep_verify")
    if deep is not None:
        plain = results["final_verify"]
        lines += [
            "",
            f"`wallet ledger verify --deep` after the run: {deep['seconds']} s on {deep['entries']:,} "
            f"entries, ok={deep['verification']['ok']}; the plain verify just before it: "
            f"{plain['seconds']} s on {plain['entries']:,} entries.",
        ]
    return lines
