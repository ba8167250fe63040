"""A wallet's history: its transactions newest first, a page at a time (keyset pagination).

The page walks the wallet's entries through `entry_wallet_index` (account_id, created_at,
account_sequence), newest first. A transaction with several entries of the wallet (a journal
that debits and credits it) shows once: at its oldest entry of the wallet, which is where the
next page starts after. The cursor is that entry's position (time and sequence), encoded.
"""

from __future__ import annotations

import base64
import binascii
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from wallet.ledger.errors import WalletNotFound
from wallet.ledger.limits import PAGE_SIZE_MAX
from wallet.ledger.transactions import TransactionRecord, record_of
from wallet.types import Connection

CURSOR_PREFIX = "e2:"
CURSOR_LENGTH_MAX = 64
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_MICROSECONDS_MAX = 2**62  # far past any real time, and well inside a bigint


class CursorInvalid(ValueError):
    pass


@dataclass(frozen=True, slots=True, order=True)
class Position:
    """Where an entry stands in its wallet's history."""

    created_at: datetime
    account_sequence: int


# Before every entry there is: the start of a page with no cursor.
POSITION_END = Position(datetime(9999, 12, 31, tzinfo=UTC), 2**63 - 1)


def encode_cursor(position: Position) -> str:
    microseconds = (position.created_at - _EPOCH) // _MICROSECOND
    assert 0 <= microseconds < _MICROSECONDS_MAX and position.account_sequence > 0
    text = f"{CURSOR_PREFIX}{microseconds}:{position.account_sequence}"
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> Position:
    """The position a cursor stands for; CursorInvalid when it is not one this service made."""
    invalid = CursorInvalid("cursor is not one this service returned")
    if not 1 <= len(cursor) <= CURSOR_LENGTH_MAX or not cursor.isascii():
        raise invalid
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise invalid from None
    body = text.removeprefix(CURSOR_PREFIX)
    microseconds, _, sequence = body.partition(":")
    if body == text or not (microseconds.isdigit() and sequence.isdigit()):
        raise invalid
    if len(microseconds) > 19 or len(sequence) > 19:
        raise invalid
    if not (int(microseconds) < _MICROSECONDS_MAX and 0 < int(sequence) < 2**63):
        raise invalid
    try:
        created_at = _EPOCH + int(microseconds) * _MICROSECOND
    except OverflowError:
        raise invalid from None
    return Position(created_at, int(sequence))


@dataclass(frozen=True, slots=True)
class Page:
    transactions: list[TransactionRecord]
    next_cursor: str | None


WALLET_PAGE = """
WITH page AS (
    SELECT e.transaction_id, e.created_at, e.account_sequence
    FROM (
        SELECT e.transaction_id, e.created_at, e.account_sequence,
            lead(e.transaction_id) OVER (ORDER BY e.created_at DESC, e.account_sequence DESC) AS older
        FROM entry e
        WHERE e.account_id = $1 AND e.balance_after IS NOT NULL
          AND (e.created_at, e.account_sequence) < ($2, $3)
        ORDER BY e.created_at DESC, e.account_sequence DESC
    ) e
    WHERE e.older IS DISTINCT FROM e.transaction_id
    LIMIT $4
)
SELECT page.created_at AS position_at, page.account_sequence AS position_sequence,
    t.id, t.type, t.asset, t.amount, t.wallet_id, t.reference, t.metadata::text AS metadata,
    t.created_at, t.reverses, t.hold_id, x.*
FROM page
JOIN transaction t ON t.id = page.transaction_id
CROSS JOIN LATERAL (
    SELECT array_agg(x.account_id ORDER BY x.entry_index) AS entry_accounts,
        array_agg(CASE WHEN a.kind = 'user' THEN NULL ELSE a.kind END ORDER BY x.entry_index)
            AS entry_kinds,
        array_agg(x.direction ORDER BY x.entry_index) AS entry_directions,
        array_agg(x.amount ORDER BY x.entry_index) AS entry_amounts,
        array_agg(x.balance_after ORDER BY x.entry_index) AS entry_balances
    FROM entry x JOIN account a ON a.id = x.account_id
    WHERE x.transaction_id = t.id
) x
ORDER BY page.created_at DESC, page.account_sequence DESC
"""

WALLET_EXISTS = "SELECT true FROM account WHERE id = $1 AND kind = 'user'"


async def wallet_history(
    connection: Connection, wallet_id: uuid.UUID, limit: int, cursor: str | None
) -> Page:
    """A page of the wallet's transactions, newest first."""
    assert 1 <= limit <= PAGE_SIZE_MAX, limit
    before = decode_cursor(cursor) if cursor is not None else POSITION_END
    rows = await connection.fetch(
        WALLET_PAGE, wallet_id, before.created_at, before.account_sequence, limit + 1
    )
    if not rows and not await connection.fetchval(WALLET_EXISTS, wallet_id):
        raise WalletNotFound(f"Wallet {wallet_id} does not exist.")
    shown = rows[:limit]
    next_cursor = None
    if len(rows) > limit:
        last = shown[-1]
        next_cursor = encode_cursor(Position(last["position_at"], last["position_sequence"]))
    return Page(transactions=[record_of(row) for row in shown], next_cursor=next_cursor)
