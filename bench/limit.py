"""The limit: pgbench running the service's own spend statement straight against the database.

The statement is taken from the service (``wallet.ledger.posting.post`` is called with a
recording stand-in for the connection) and its ten parameters are replaced by pgbench
expressions: the fixed API key id and fingerprint, a unique Idempotency-Key per call
(client id + a 60-bit random number), a UUIDv7 transaction id made from clock_timestamp(),
kind 'spend', a random wallet of the N (their ids are WALLET_ID_PREFIX + the number), no
target, amount 1, no reference, no metadata. pgbench runs it in prepared mode with the same
client count and duration as the API load.
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
from wallet.ledger import posting

FINGERPRINT = bytes(range(32))
SPEND_AMOUNT = 1
# The ids the stand-in is called with, recognised again among the recorded parameters.
_PROBE_API_KEY_ID = uuid.UUID("00000000-0000-7000-8000-00000000abcd")
_PROBE_WALLET_ID = ledger_data.wallet_id(1)
_PROBE_IDEMPOTENCY_KEY = "probe-key"


def _write(path: Path, text: str) -> None:
    path.write_text(text)


class StatementChanged(Exception):
    """The service no longer sends the statement this module knows how to replay."""


class _RecordingConnection:
    """Stands in for a connection to learn which statement posting.post sends; sends nothing."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...]]] = []

    async def fetchrow(self, query: str, *arguments: Any) -> dict[str, Any]:
        self.calls.append((query, arguments))
        return {"status": 201, "body": "{}", "replayed": False}


async def _service_spend_call() -> tuple[str, tuple[Any, ...]]:
    recorder = _RecordingConnection()
    movement = posting.Movement(
        kind=posting.Kind.SPEND,
        source_wallet_id=_PROBE_WALLET_ID,
        target_wallet_id=None,
        amount=SPEND_AMOUNT,
        reference=None,
        metadata_json=None,
    )
    await posting.post(recorder, movement, _PROBE_API_KEY_ID, _PROBE_IDEMPOTENCY_KEY, FINGERPRINT)  # type: ignore[arg-type]
    if len(recorder.calls) != 1:
        raise StatementChanged(f"posting.post sent {len(recorder.calls)} statements, not 1")
    return recorder.calls[0]


def _pgbench_expression(value: Any, api_key_id: uuid.UUID) -> str:
    """The pgbench SQL expression that stands for one recorded parameter."""
    if value == _PROBE_API_KEY_ID:
        return f"'{api_key_id}'::uuid"
    if value == _PROBE_IDEMPOTENCY_KEY:
        return "'pgbench-' || :client_id::bigint || '-' || :tail::bigint"
    if value == FINGERPRINT:
        return f"'\\x{FINGERPRINT.hex()}'::bytea"
    if value == _PROBE_WALLET_ID:
        return f"('{ledger_data.WALLET_ID_PREFIX}' || lpad(to_hex(:wallet::bigint), 12, '0'))::uuid"
    if isinstance(value, uuid.UUID) and value.version == 7:  # the transaction id, made per call
        return (
            "(lpad(to_hex(floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint), 12, '0')"
            " || '7' || lpad(to_hex(:head::bigint), 3, '0') || '8'"
            " || lpad(to_hex(:tail::bigint), 15, '0'))::uuid"
        )
    if value is None:
        return "NULL"
    if value == posting.Kind.SPEND.value:
        return "'spend'"
    if value == SPEND_AMOUNT and isinstance(value, int):
        return str(SPEND_AMOUNT)
    raise StatementChanged(f"posting.post sent a parameter this benchmark does not know: {value!r}")


async def pgbench_script(api_key_id: uuid.UUID, wallet_count: int) -> tuple[str, str]:
    """(the pgbench script, the service's statement it replays)."""
    query, arguments = await _service_spend_call()
    placeholders = [int(number) for number in re.findall(r"\$(\d+)", query)]
    if sorted(set(placeholders)) != list(range(1, len(arguments) + 1)):
        raise StatementChanged(f"unexpected placeholders in {query!r}")
    expressions = [_pgbench_expression(value, api_key_id) for value in arguments]
    statement = re.sub(r"\$(\d+)", lambda match: expressions[int(match.group(1)) - 1], query)
    statement = " ".join(statement.split())
    script = (
        f"\\set wallet random(1, {wallet_count})\n"
        "\\set tail random(0, 1152921504606846975)\n"
        "\\set head random(0, 4095)\n"
        f"{statement};\n"
    )
    return script, " ".join(query.split())


@dataclass(frozen=True, slots=True)
class LimitResult:
    transactions: int
    failed: int
    transactions_per_second: float
    latency_ms: dict[str, float]  # mean, p50, p90, p99, p99.9, max (from the per-transaction log)

    def to_document(self) -> dict[str, Any]:
        return {
            "transactions": self.transactions,
            "failed": self.failed,
            "transactions_per_second": round(self.transactions_per_second, 1),
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
    database_url: str, script_path: Path, clients: int, threads: int, seconds: int, log_dir: Path
) -> LimitResult:
    _empty_directory(log_dir)
    arguments = [str(pgbench_binary()), "--no-vacuum", "--protocol=prepared", f"--client={clients}"]
    arguments += [f"--jobs={min(threads, clients)}", f"--time={seconds}", f"--file={script_path}"]
    arguments += ["--log", f"--log-prefix={log_dir / 'pgbench_log'}", database_url]
    process = await asyncio.create_subprocess_exec(
        *arguments, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    output_bytes, _ = await process.communicate()
    output = output_bytes.decode(errors="replace")
    _write(log_dir / "pgbench.out", output)
    if process.returncode != 0:
        raise RuntimeError(f"pgbench exited with {process.returncode}:\n{output}")
    return LimitResult(
        transactions=int(_number(r"number of transactions actually processed: (\d+)", output)),
        failed=int(_number(r"number of failed transactions: (\d+)", output)),
        transactions_per_second=_number(r"tps = ([\d.]+) \(without initial connection time\)", output),
        latency_ms=_latencies_ms(log_dir),
    )
