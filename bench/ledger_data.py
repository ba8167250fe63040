"""The benchmark's data: funded wallets, posted by the service's core, and two history wallets.

- N wallets ``bench-000001`` ... with ids that pgbench can compute from their number
  (WALLET_ID_PREFIX + the number in 12 hex digits), each funded by one top-up posted through
  ``wallet.ledger.posting.post``, the service's own posting core, in groups of up to
  GROUP_SIZE_MAX (one call of ``ledger.post`` each); every top-up is the request
  ``POST /v1/wallets/{id}/topup`` would make, with its fingerprint.
- Two history wallets, ``bench-history-big`` and ``bench-history-small``, with M top-ups of 1
  each from the GOLD treasury, written with set-based SQL (``generate_series``) exactly as the
  core writes a top-up: a transaction row; entry 0 the treasury's debit, on a slot, numbered in
  that slot's sequence; entry 1 the wallet's credit, with its balance after and its number in
  the wallet's sequence; every entry's ``created_at`` that of its transaction, one millisecond
  apart; the wallet's and the slots' balances and entry counts raised to match. The history is
  written before the funding, so the funding's later entries follow it in each slot's sequence
  and in time. It has no idempotency rows: a history that long is older than the keys' retention.

``wallet ledger verify`` checks the whole ledger after the build (bench/database.py).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from wallet import keys
from wallet.idempotency import canonical_json, fingerprint
from wallet.ledger import posting
from wallet.ledger.limits import GROUP_SIZE_MAX, SLOT_COUNT
from wallet.types import Connection

ASSET = "GOLD"
WALLET_ID_PREFIX = "0190b000-0000-7000-8000-"
HISTORY_ID_PREFIX = "0190b000-0000-7000-8001-"
HISTORY_BIG_NUMBER = 1
HISTORY_SMALL_NUMBER = 2
FUND_AMOUNT = 10**12  # per wallet: far more than any run spends
FUND_REFERENCE = "bench funding"
SEED_KEY_NAME = "bench-seed"
# Tags in the history's transaction ids (UUIDv7 layout, time-ordered within a tag).
TAG_HISTORY = {HISTORY_BIG_NUMBER: 2, HISTORY_SMALL_NUMBER: 3}
BASE_MS = 0x0190B0000000  # 2024-07: the timestamp part of the history's ids
HISTORY_STARTED_AT = datetime(2024, 7, 1, tzinfo=UTC)
HISTORY_STEP = timedelta(milliseconds=1)  # between two transactions of a history wallet


def wallet_id(number: int) -> uuid.UUID:
    assert 1 <= number < 16**12
    return uuid.UUID(f"{WALLET_ID_PREFIX}{number:012x}")


def history_wallet_id(number: int) -> uuid.UUID:
    assert number in TAG_HISTORY
    return uuid.UUID(f"{HISTORY_ID_PREFIX}{number:012x}")


def history_created_at(sequence: int) -> datetime:
    """When the history's transaction number `sequence` (1, 2, ...) was posted: also its
    wallet entry's account_sequence."""
    assert sequence >= 1
    return HISTORY_STARTED_AT + sequence * HISTORY_STEP


def _transaction_id_sql(tag: int, number_sql: str) -> str:
    """SQL for a UUIDv7 made of BASE_MS + the number, the tag and the number: unique per tag."""
    assert 0 < tag < 4096
    return (
        f"(lpad(to_hex({BASE_MS} + {number_sql}), 12, '0') || '7' || lpad(to_hex({tag}), 3, '0')"
        f" || '8' || lpad(to_hex({number_sql}), 15, '0'))::uuid"
    )


@dataclass(frozen=True, slots=True)
class Built:
    seconds_by_step: dict[str, float]
    entries: int


async def build(connection: Connection, wallet_count: int, history_sizes: dict[int, int]) -> Built:
    """Fill a freshly migrated and seeded database; returns how long each step took."""
    seconds_by_step: dict[str, float] = {}
    started = time.monotonic()
    api_key, _ = await keys.create(connection, SEED_KEY_NAME, {keys.Scope.ADMIN})
    await _insert_wallets(connection, wallet_count)
    seconds_by_step["wallets"] = time.monotonic() - started
    for number, transaction_count in history_sizes.items():
        started = time.monotonic()
        await _insert_history(connection, api_key.id, number, transaction_count)
        seconds_by_step[f"history of {transaction_count:,} transactions"] = time.monotonic() - started
    started = time.monotonic()
    await _fund_wallets(connection, api_key.id, wallet_count)
    seconds_by_step["funding through posting.post"] = time.monotonic() - started
    started = time.monotonic()
    await connection.execute("VACUUM (ANALYZE)")
    seconds_by_step["vacuum"] = time.monotonic() - started
    entries = await connection.fetchval("SELECT count(*) FROM entry")
    assert isinstance(entries, int)
    return Built(seconds_by_step, entries)


async def _insert_wallets(connection: Connection, wallet_count: int) -> None:
    await connection.execute(
        """
        INSERT INTO account (id, asset, kind, owner_id)
        SELECT ($1 || lpad(to_hex(number), 12, '0'))::uuid, $2, 'user',
               'bench-' || lpad(number::text, 6, '0')
        FROM generate_series(1, $3) number
        """,
        WALLET_ID_PREFIX,
        ASSET,
        wallet_count,
    )
    for number in TAG_HISTORY:
        await connection.execute(
            "INSERT INTO account (id, asset, kind, owner_id) VALUES ($1, $2, 'user', $3)",
            history_wallet_id(number),
            ASSET,
            f"bench-history-{'big' if number == HISTORY_BIG_NUMBER else 'small'}",
        )


def funding_request(api_key_id: uuid.UUID, number: int) -> posting.Request:
    """The top-up of wallet `number` as POST /v1/wallets/{id}/topup would make it."""
    wallet = wallet_id(number)
    body = canonical_json({"amount": FUND_AMOUNT, "reference": FUND_REFERENCE})
    return posting.Request(
        api_key_id,
        f"bench-fund-{number}",
        fingerprint("POST", f"/v1/wallets/{wallet}/topup", body),
        posting.topup(wallet, FUND_AMOUNT, FUND_REFERENCE, None),
    )


async def post_all(connection: Connection, requests: list[posting.Request]) -> None:
    """Post requests through the service's core in groups of up to GROUP_SIZE_MAX, each one
    call of ledger.post, waiting for wallet locks (nothing is deferred); each must be posted
    now (not declined, not a replay)."""
    for first in range(0, len(requests), GROUP_SIZE_MAX):
        group = requests[first : first + GROUP_SIZE_MAX]
        outcomes = await posting.post(connection, group, wait_for_locks=True)
        results = {(outcome.result, outcome.replayed) for outcome in outcomes}
        assert results == {(posting.Result.POSTED, False)}, results


async def _fund_wallets(connection: Connection, api_key_id: uuid.UUID, wallet_count: int) -> None:
    await post_all(connection, [funding_request(api_key_id, number) for number in range(1, wallet_count + 1)])


async def _insert_history(
    connection: Connection, api_key_id: uuid.UUID, number: int, transaction_count: int
) -> None:
    """transaction_count top-ups of 1 to one history wallet, debiting the treasury's slots in turn
    (transaction n takes slot n % SLOT_COUNT)."""
    tag = TAG_HISTORY[number]
    wallet = history_wallet_id(number)
    transaction_id = _transaction_id_sql(tag, "n")
    async with connection.transaction():
        treasury = await connection.fetchval(
            "SELECT id FROM account WHERE asset = $1 AND kind = 'treasury'", ASSET
        )
        wallet_entries = await connection.fetchval("SELECT entry_count FROM account WHERE id = $1", wallet)
        assert wallet_entries == 0, "a history wallet is written once, when it is new"
        await connection.execute(
            f"""
            INSERT INTO transaction (id, type, asset, amount, wallet_id, reference, api_key_id, created_at)
            SELECT {transaction_id}, 'topup', $1, 1, $2, 'history-' || n, $3,
                $5::timestamptz + n * $6::interval
            FROM generate_series(1, $4) n
            """,  # noqa: S608 -- only integers of this module are formatted in
            ASSET,
            wallet,
            api_key_id,
            transaction_count,
            HISTORY_STARTED_AT,
            HISTORY_STEP,
        )
        # The k-th transaction that takes slot s (n % SLOT_COUNT = s) is n = s + SLOT_COUNT * (k - 1)
        # for s > 0 and n = SLOT_COUNT * k for s = 0: in both cases k = (n + SLOT_COUNT - 1) / SLOT_COUNT.
        await connection.execute(
            f"""
            INSERT INTO entry (transaction_id, entry_index, account_id, direction, amount, balance_after,
                slot, account_sequence, created_at)
            SELECT {transaction_id}, side.entry_index,
                CASE side.entry_index WHEN 0 THEN $1::uuid ELSE $2::uuid END,
                CASE side.entry_index WHEN 0 THEN 'debit' ELSE 'credit' END,
                1,
                CASE side.entry_index WHEN 1 THEN n END,
                CASE side.entry_index WHEN 0 THEN s.slot END,
                CASE side.entry_index WHEN 0 THEN s.entry_count + (n + $3 - 1) / $3 ELSE n END,
                $5::timestamptz + n * $6::interval
            FROM generate_series(1, $4::bigint) n
            JOIN account_slot s ON s.account_id = $1 AND s.slot = n % $3
            CROSS JOIN (VALUES (0), (1)) side(entry_index)
            ORDER BY n, side.entry_index
            """,  # noqa: S608 -- only integers of this module are formatted in
            treasury,
            wallet,
            SLOT_COUNT,
            transaction_count,
            HISTORY_STARTED_AT,
            HISTORY_STEP,
        )
        await connection.execute(
            """
            UPDATE account SET balance = $2::bigint, entry_count = $2::bigint, updated_at = $3
            WHERE id = $1
            """,
            wallet,
            transaction_count,
            history_created_at(transaction_count),
        )
        await connection.execute(
            """
            UPDATE account_slot s
            SET balance = s.balance - moved.entries, entry_count = s.entry_count + moved.entries
            FROM (
                SELECT n % $2 AS slot, count(*) AS entries FROM generate_series(1, $3) n GROUP BY 1
            ) moved
            WHERE s.account_id = $1 AND s.slot = moved.slot
            """,
            treasury,
            SLOT_COUNT,
            transaction_count,
        )
