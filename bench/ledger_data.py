"""The benchmark's data: funded wallets, posted by the service's core, and two history wallets.

- N wallets ``bench-000001`` ... with ids that pgbench can compute from their number
  (WALLET_ID_PREFIX + the number in 12 hex digits), each funded by one top-up posted through
  ``wallet.ledger.posting.post``, the service's own posting core, in groups of up to
  GROUP_SIZE_MAX (one call of ``ledger.post`` each); every top-up is the request
  ``POST /v1/wallets/{id}/topup`` would make, with its fingerprint.
- N lot wallets ``bench-lots-000001`` ... (numbers N+1 to 2N, ids as above), each given LOT_COUNT
  lots: top-ups of LOT_AMOUNT with an ``expires_at`` LOT_EXPIRY_AHEAD plus 1 to LOT_COUNT days
  after the build, posted through ``posting.post`` like the funding (so each is a lot the core
  made), and nothing else: a spend on one takes from its soonest lot (bench/features.py).
- Two history wallets, ``bench-history-big`` and ``bench-history-small``, with M top-ups of 1
  each from the GOLD treasury, written with set-based SQL (``generate_series``) exactly as the
  core writes a top-up: a transaction row; entry 0 the treasury's debit, on a slot, numbered in
  that slot's sequence; entry 1 the wallet's credit, with its balance after and its number in
  the wallet's sequence; every entry's ``created_at`` that of its transaction, one millisecond
  apart; every entry's ``hash`` the next link of its chain (the wallet's, the slot's: SHA-256 of
  the hash before it and its content, ledger/sql/chains.sql), folded by a window aggregate from
  the chain's head as migration 0006 does; the wallet's and the slots' balances, entry counts
  and heads set to match. The history is
  written before the funding, so the funding's later entries follow it in each slot's sequence
  and in time. It has no idempotency rows: a history that long is older than the keys' retention.

``wallet ledger verify --deep`` checks the whole ledger after the build, chains included
(bench/database.py).
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
LOT_COUNT = 10  # lots per lot wallet
LOT_AMOUNT = 10**9  # per lot: far more than any run spends from it
LOT_EXPIRY_AHEAD = timedelta(days=5 * 365)  # lots expire this long after the build (at most 10 years)
LOT_REFERENCE = "bench lot"
SORT_MEMORY = "256MB"  # for the history's two sorts (its chains' order, then the table's)
# A chain folded over ordered entries, from a head: each step is ledger.entry_hash's
# sha256(previous || content) (ledger/sql/chains.sql), the first from the chain's head.
CHAIN_AGGREGATE = """
CREATE OR REPLACE FUNCTION pg_temp.chain_step(previous bytea, head bytea, content bytea) RETURNS bytea
LANGUAGE sql IMMUTABLE AS $$ SELECT sha256(coalesce(previous, head) || content) $$;
CREATE OR REPLACE AGGREGATE pg_temp.chain(bytea, bytea) (SFUNC = pg_temp.chain_step, STYPE = bytea);
"""


def wallet_id(number: int) -> uuid.UUID:
    assert 1 <= number < 16**12
    return uuid.UUID(f"{WALLET_ID_PREFIX}{number:012x}")


def lot_wallet_numbers(wallet_count: int) -> range:
    """The numbers of the lot wallets (their ids are wallet_id(number)): after the plain ones."""
    return range(wallet_count + 1, 2 * wallet_count + 1)


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
    await _insert_lot_wallets(connection, api_key.id, wallet_count)
    seconds_by_step[f"lot wallets ({LOT_COUNT} lots each) through posting.post"] = time.monotonic() - started
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


async def _insert_lot_wallets(connection: Connection, api_key_id: uuid.UUID, wallet_count: int) -> None:
    numbers = lot_wallet_numbers(wallet_count)
    await connection.execute(
        """
        INSERT INTO account (id, asset, kind, owner_id)
        SELECT ($1 || lpad(to_hex(number), 12, '0'))::uuid, $2, 'user',
               'bench-lots-' || lpad((number - $3)::text, 6, '0')
        FROM generate_series($4::bigint, $5::bigint) number
        """,
        WALLET_ID_PREFIX,
        ASSET,
        wallet_count,
        numbers.start,
        numbers.stop - 1,
    )
    first_expiry = datetime.now(UTC).replace(microsecond=0) + LOT_EXPIRY_AHEAD
    # Lot by lot, so each group of the core holds distinct wallets.
    requests = [
        lot_request(api_key_id, number, lot, first_expiry + timedelta(days=lot - 1))
        for lot in range(1, LOT_COUNT + 1)
        for number in numbers
    ]
    await post_all(connection, requests)


def lot_request(api_key_id: uuid.UUID, number: int, lot: int, expires_at: datetime) -> posting.Request:
    """Lot `lot` of wallet `number`, as POST /v1/wallets/{id}/topup with expires_at would make it."""
    wallet = wallet_id(number)
    body = canonical_json(
        {"amount": LOT_AMOUNT, "reference": LOT_REFERENCE, "expires_at": expires_at.isoformat()}
    )
    return posting.Request(
        api_key_id,
        f"bench-lot-{number}-{lot}",
        fingerprint("POST", f"/v1/wallets/{wallet}/topup", body),
        posting.topup(wallet, LOT_AMOUNT, LOT_REFERENCE, None, expires_at),
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
        # Each entry's hash is the next link of its chain (the wallet's, the slot's), folded by a
        # window aggregate from the chain's head before the history, as migration 0006 does.
        await connection.execute(CHAIN_AGGREGATE)
        await connection.execute(f"SET LOCAL work_mem = '{SORT_MEMORY}'")
        await connection.execute(
            f"""
            INSERT INTO entry (transaction_id, entry_index, account_id, direction, amount, balance_after,
                slot, account_sequence, created_at, hash)
            SELECT e.transaction_id, e.entry_index, e.account_id, e.direction, e.amount, e.balance_after,
                e.slot, e.account_sequence, e.created_at,
                pg_temp.chain(e.head, ledger.entry_content(e.transaction_id, e.account_id, e.direction,
                    e.amount, e.balance_after, $7, e.slot, e.account_sequence, e.created_at))
                    OVER (PARTITION BY e.account_id, e.slot ORDER BY e.account_sequence)
            FROM (
                SELECT n, {transaction_id} AS transaction_id, side.entry_index,
                    CASE side.entry_index WHEN 0 THEN $1::uuid ELSE $2::uuid END AS account_id,
                    CASE side.entry_index WHEN 0 THEN 'debit' ELSE 'credit' END AS direction,
                    1::bigint AS amount,
                    CASE side.entry_index WHEN 1 THEN n END AS balance_after,
                    CASE side.entry_index WHEN 0 THEN s.slot END AS slot,
                    CASE side.entry_index WHEN 0 THEN s.entry_count + (n + $3 - 1) / $3 ELSE n END
                        AS account_sequence,
                    $5::timestamptz + n * $6::interval AS created_at,
                    CASE side.entry_index WHEN 0 THEN s.head ELSE w.ledger_head END::bytea AS head
                FROM generate_series(1, $4::bigint) n
                JOIN account_slot s ON s.account_id = $1 AND s.slot = n % $3
                JOIN account w ON w.id = $2
                CROSS JOIN (VALUES (0), (1)) side(entry_index)
            ) e
            ORDER BY e.n, e.entry_index
            """,  # noqa: S608 -- only integers of this module are formatted in
            treasury,
            wallet,
            SLOT_COUNT,
            transaction_count,
            HISTORY_STARTED_AT,
            HISTORY_STEP,
            ASSET,
        )
        # The heads: the hash of each chain's last entry (found by the entry's primary key: the
        # wallet's last is transaction_count's credit, a slot's its highest n's debit).
        last_transaction_id = _transaction_id_sql(tag, "$2::bigint")
        await connection.execute(
            f"""
            UPDATE account a SET ledger_head = e.hash
            FROM entry e WHERE a.id = $1 AND e.transaction_id = {last_transaction_id} AND e.entry_index = 1
            """,  # noqa: S608 -- only integers of this module are formatted in
            wallet,
            transaction_count,
        )
        last_of_slot = _transaction_id_sql(tag, "last.n")
        await connection.execute(
            f"""
            UPDATE account_slot s SET head = e.hash
            FROM (SELECT max(n) AS n FROM generate_series(1, $3::bigint) n GROUP BY n % $2) last
            JOIN entry e ON e.transaction_id = {last_of_slot} AND e.entry_index = 0
            WHERE s.account_id = $1 AND s.account_id = e.account_id AND s.slot = e.slot
            """,  # noqa: S608 -- only integers of this module are formatted in
            treasury,
            SLOT_COUNT,
            transaction_count,
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
