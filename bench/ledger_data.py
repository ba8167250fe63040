"""The benchmark's data, written straight into the ledger tables with set-based SQL.

- N funded wallets ``bench-000001`` ... with ids that pgbench can compute from their number
  (WALLET_ID_PREFIX + the number in 12 hex digits), each funded by one ``ledger_post`` top-up:
  the same function the service calls, run in one server-side loop.
- Two history wallets: ``bench-history-big`` and ``bench-history-small``, with M top-ups of 1
  each from the GOLD treasury, inserted as transactions and entries with ``generate_series``:
  every transaction is one debit of a treasury slot and one credit of the wallet, the wallet's
  entries carry their running balance, and the wallet and slot balances are raised to match,
  so the four ledger invariants hold (``wallet ledger verify`` checks them after the build).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

from wallet import keys
from wallet.ledger.limits import SLOT_COUNT
from wallet.types import Connection

ASSET = "GOLD"
WALLET_ID_PREFIX = "0190b000-0000-7000-8000-"
HISTORY_ID_PREFIX = "0190b000-0000-7000-8001-"
HISTORY_BIG_NUMBER = 1
HISTORY_SMALL_NUMBER = 2
FUND_AMOUNT = 10**12  # per wallet: far more than any run spends
SEED_KEY_NAME = "bench-seed"
# Tags in the transaction ids made here (UUIDv7 layout, time-ordered within a tag).
TAG_FUNDING = 1
TAG_HISTORY = {HISTORY_BIG_NUMBER: 2, HISTORY_SMALL_NUMBER: 3}
BASE_MS = 0x0190B0000000  # 2024-07: the timestamp part of the ids made here
FINGERPRINT_FUNDING = bytes(32)


def wallet_id(number: int) -> uuid.UUID:
    assert 1 <= number < 16**12
    return uuid.UUID(f"{WALLET_ID_PREFIX}{number:012x}")


def history_wallet_id(number: int) -> uuid.UUID:
    assert number in TAG_HISTORY
    return uuid.UUID(f"{HISTORY_ID_PREFIX}{number:012x}")


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
    started = time.monotonic()
    await _fund_wallets(connection, api_key.id, wallet_count)
    seconds_by_step["funding"] = time.monotonic() - started
    for number, transaction_count in history_sizes.items():
        started = time.monotonic()
        await _insert_history(connection, api_key.id, number, transaction_count)
        seconds_by_step[f"history of {transaction_count:,} transactions"] = time.monotonic() - started
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


async def _fund_wallets(connection: Connection, api_key_id: uuid.UUID, wallet_count: int) -> None:
    """One ledger_post top-up per wallet, all in one statement (a loop inside the server)."""
    funded = await connection.fetchval(
        f"""
        SELECT count(*) FILTER (WHERE posted.status = 201)
        FROM generate_series(1, $1) number
        CROSS JOIN LATERAL ledger_post(
            $2, 'bench-fund-' || number, $3, {_transaction_id_sql(TAG_FUNDING, "number")},
            'topup', NULL, ($4 || lpad(to_hex(number), 12, '0'))::uuid, $5, 'bench funding', NULL
        ) posted
        """,  # noqa: S608 -- only integers of this module are formatted in
        wallet_count,
        api_key_id,
        FINGERPRINT_FUNDING,
        WALLET_ID_PREFIX,
        FUND_AMOUNT,
    )
    assert funded == wallet_count, (funded, wallet_count)


async def _insert_history(
    connection: Connection, api_key_id: uuid.UUID, number: int, transaction_count: int
) -> None:
    """transaction_count top-ups of 1 to one history wallet, debiting the treasury's slots in turn."""
    tag = TAG_HISTORY[number]
    wallet = history_wallet_id(number)
    async with connection.transaction():
        treasury = await connection.fetchval(
            "SELECT id FROM account WHERE asset = $1 AND kind = 'treasury'", ASSET
        )
        await connection.execute(
            f"""
            INSERT INTO transaction (id, type, asset, amount, wallet_id, reference, api_key_id, created_at)
            SELECT {_transaction_id_sql(tag, "number")}, 'topup', $1, 1, $2, 'history-' || number, $3,
                   timestamptz '2024-07-01 00:00:00+00' + number * interval '1 millisecond'
            FROM generate_series(1, $4) number
            """,  # noqa: S608 -- only integers of this module are formatted in
            ASSET,
            wallet,
            api_key_id,
            transaction_count,
        )
        # Row k: k odd is the treasury debit of transaction (k + 1) / 2, k even its wallet credit.
        await connection.execute(
            f"""
            INSERT INTO entry (transaction_id, account_id, direction, amount, balance_after, slot)
            SELECT {_transaction_id_sql(tag, "((k + 1) / 2)")},
                   CASE WHEN k % 2 = 1 THEN $1::uuid ELSE $2::uuid END,
                   CASE WHEN k % 2 = 1 THEN 'debit' ELSE 'credit' END,
                   1,
                   CASE WHEN k % 2 = 0 THEN k / 2 END,
                   CASE WHEN k % 2 = 1 THEN (((k + 1) / 2) % $3)::smallint END
            FROM generate_series(1, 2 * $4::bigint) k
            """,  # noqa: S608 -- only integers of this module are formatted in
            treasury,
            wallet,
            SLOT_COUNT,
            transaction_count,
        )
        await connection.execute(
            "UPDATE account SET balance = balance + $2, updated_at = now() WHERE id = $1",
            wallet,
            transaction_count,
        )
        await connection.execute(
            """
            UPDATE account_slot s SET balance = s.balance - moved.amount
            FROM (
                SELECT number % $2 AS slot, count(*) AS amount
                FROM generate_series(1, $3) number GROUP BY 1
            ) moved
            WHERE s.account_id = $1 AND s.slot = moved.slot
            """,
            treasury,
            SLOT_COUNT,
            transaction_count,
        )
