"""What the load generator sends: API keys, the files of paths wrk picks from, primed replay keys."""

from __future__ import annotations

import random
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import ledger_data
from bench.load import Load
from bench.settings import BenchSettings
from wallet import idempotency, keys
from wallet.ledger import history
from wallet.ledger.limits import PAGE_SIZE_DEFAULT

SPEND_BODY = '{"amount":1}'
HISTORY_PAGES = 1000  # the first page and 999 pages at random depths
RANDOM_SEED = 20_261_126


@dataclass(frozen=True, slots=True)
class Workload:
    api_key: str  # the secret wrk sends
    pgbench_api_key_id: uuid.UUID
    loads: dict[str, Load]
    history_entries: dict[str, int]  # entries on each history wallet's account


def _write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("\n".join(lines) + "\n")
    return path


async def _history_paths(connection: Any, number: int, rng: random.Random) -> tuple[list[str], int]:
    wallet = ledger_data.history_wallet_id(number)
    row = await connection.fetchrow(
        "SELECT min(id) AS first, max(id) AS last, count(*) AS entries FROM entry WHERE account_id = $1",
        wallet,
    )
    base = f"/v1/wallets/{wallet}/transactions?limit={PAGE_SIZE_DEFAULT}"
    paths = [base]
    for _ in range(HISTORY_PAGES - 1):
        cursor = history.encode_cursor(rng.randint(row["first"] + 1, row["last"] + 1))
        paths.append(f"{base}&cursor={cursor}")
    return paths, int(row["entries"])


async def _prime_replays(connection: Any, api_key_id: uuid.UUID, count: int) -> list[str]:
    """`count` spends of 1, one per wallet, made once with keys replay-N through ledger_post with
    the fingerprint the service computes for POST /v1/wallets/{id}/spend {"amount":1}; wrk then
    sends exactly those requests again."""
    numbers = list(range(1, count + 1))
    paths = [f"/v1/wallets/{ledger_data.wallet_id(number)}/spend" for number in numbers]
    keys_sent = [f"replay-{number}" for number in numbers]
    body = idempotency.canonical_json({"amount": 1})
    fingerprints = [idempotency.fingerprint("POST", path, body) for path in paths]
    created = await connection.fetchval(
        """
        SELECT count(*) FILTER (WHERE posted.status = 201)
        FROM unnest($2::text[], $3::bytea[], $4::uuid[])
            WITH ORDINALITY AS item(key, fingerprint, wallet, number)
        CROSS JOIN LATERAL ledger_post(
            $1, item.key, item.fingerprint,
            (lpad(to_hex((extract(epoch FROM clock_timestamp()) * 1000)::bigint), 12, '0') || '7fff8'
             || lpad(to_hex(item.number), 15, '0'))::uuid,
            'spend', item.wallet, NULL, 1, NULL, NULL
        ) posted
        """,
        api_key_id,
        keys_sent,
        fingerprints,
        [ledger_data.wallet_id(number) for number in numbers],
    )
    assert created == count, (created, count)
    return [f"{key} {path}" for key, path in zip(keys_sent, paths, strict=True)]


async def prepare(connection: Any, settings: BenchSettings, directory: Path) -> Workload:
    rng = random.Random(RANDOM_SEED)
    api_key, secret = await keys.create(connection, f"bench-{uuid.uuid4().hex[:8]}", {keys.Scope.ADMIN})
    pgbench_key, _ = await keys.create(
        connection, f"bench-pgbench-{uuid.uuid4().hex[:8]}", {keys.Scope.ADMIN}
    )
    wallets = [str(ledger_data.wallet_id(number)) for number in range(1, settings.wallet_count + 1)]
    big, entries_big = await _history_paths(connection, ledger_data.HISTORY_BIG_NUMBER, rng)
    small, entries_small = await _history_paths(connection, ledger_data.HISTORY_SMALL_NUMBER, rng)
    replays = await _prime_replays(connection, api_key.id, settings.replay_key_count)
    spend_paths = [f"/v1/wallets/{wallet}/spend" for wallet in wallets]
    loads = {
        "spend": Load("post", _write_lines(directory / "spend.txt", spend_paths), SPEND_BODY),
        "topup": Load(
            "post",
            _write_lines(directory / "topup.txt", [f"/v1/wallets/{wallet}/topup" for wallet in wallets]),
            SPEND_BODY,
        ),
        "spend one wallet": Load(
            "post", _write_lines(directory / "spend_one.txt", spend_paths[:1]), SPEND_BODY
        ),
        "transfer": Load("transfer", _write_lines(directory / "wallets.txt", wallets)),
        "replay": Load("replay", _write_lines(directory / "replay.txt", replays), SPEND_BODY),
        "wallet read": Load(
            "get", _write_lines(directory / "read.txt", [f"/v1/wallets/{w}" for w in wallets])
        ),
        "history small": Load("get", _write_lines(directory / "history_small.txt", small)),
        "history big": Load("get", _write_lines(directory / "history_big.txt", big)),
    }
    return Workload(secret, pgbench_key.id, loads, {"small": entries_small, "big": entries_big})
