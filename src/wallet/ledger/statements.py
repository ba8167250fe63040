"""A wallet's balance at a time, and its statement of a window of time.

Both read the wallet's entries through `entry_wallet_index (account_id, created_at,
account_sequence) WHERE balance_after IS NOT NULL` (migration 0002), which holds every wallet
entry and no other: a lookup or a range scan of one wallet's part of it, whatever the depth of
its history.

A wallet's entries never go back in time (the posting core stamps each posting with a time
later than the wallet's previous one; the entries of one posting share its time), so their
order by (created_at, account_sequence) is their order by account_sequence, in which each
entry's balance_after is the one before it plus a credit or minus a debit (verify checks both,
and that every wallet entry is in the index). Hence:

- the balance at an instant is the balance_after of the wallet's last entry at or before it,
  0 when there is none;
- a statement of [start, end) opens with the balance just before `start` and closes with the
  balance_after of its last entry (the opening balance when it has none), and
  `opening + credits - debits = closing`, always (asserted for every statement made).

The time of an entry is its `created_at`: the moment the posting took the wallet's lock, a
little before it committed. An instant within the last moments may not yet count a posting
still committing then; the answer for an instant is final once the postings in flight at that
instant have committed.
"""

from __future__ import annotations

import csv
import io
import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from wallet.ledger.errors import LedgerError, WalletNotFound
from wallet.ledger.limits import POSTINGS_MAX
from wallet.ledger.transactions import TransactionRecord, get_transactions, timestamp_text
from wallet.types import Connection

STATEMENT_TRANSACTIONS_MAX = 10_000  # transactions one statement lists; more: StatementTooLarge
# Entries read from the index at a time. A wallet has at most two entries per posting of a
# transaction, so a statement reads at most this many chunks.
ENTRIES_CHUNK = STATEMENT_TRANSACTIONS_MAX + 1
CHUNKS_MAX = (STATEMENT_TRANSACTIONS_MAX * 2 * POSTINGS_MAX) // ENTRIES_CHUNK + 2
CSV_COLUMNS = ("created_at", "transaction_id", "type", "direction", "amount", "balance_after", "reference")


class TimeInFuture(LedgerError):
    """A balance asked for at an instant later than the database's clock."""

    code = "validation_error"


class WindowInvalid(LedgerError):
    """A statement whose end is not later than its start."""

    code = "validation_error"


class StatementTooLarge(LedgerError):
    code = "statement_too_large"


@dataclass(frozen=True, slots=True)
class BalanceAt:
    wallet_id: uuid.UUID
    at: datetime
    balance: int

    def to_document(self) -> dict[str, Any]:
        return {"wallet_id": str(self.wallet_id), "at": timestamp_text(self.at), "balance": self.balance}


@dataclass(frozen=True, slots=True)
class StatementEntry:
    """One entry of the wallet in a statement's window: a CSV row."""

    transaction_id: uuid.UUID
    direction: str  # debit | credit
    amount: int
    balance_after: int
    created_at: datetime
    account_sequence: int


@dataclass(frozen=True, slots=True)
class Statement:
    wallet_id: uuid.UUID
    asset: str
    start: datetime  # the request's `from`: entries at or after it
    end: datetime  # the request's `to` (or the time it was made): entries before it
    opening_balance: int
    entries: tuple[StatementEntry, ...]  # oldest first
    transactions: tuple[TransactionRecord, ...]  # each once, in the order of its first entry

    def __post_init__(self) -> None:
        assert self.start < self.end, (self.start, self.end)
        assert len(self.transactions) <= STATEMENT_TRANSACTIONS_MAX
        assert [record.id for record in self.transactions] == _first_seen(self.entries)
        balance = self.opening_balance
        for entry in self.entries:
            balance += entry.amount if entry.direction == "credit" else -entry.amount
            assert balance == entry.balance_after, (self.wallet_id, entry)
            assert self.start <= entry.created_at < self.end, (self.wallet_id, entry)
        assert self.opening_balance + self.total_credits - self.total_debits == self.closing_balance

    @property
    def total_credits(self) -> int:
        return sum(entry.amount for entry in self.entries if entry.direction == "credit")

    @property
    def total_debits(self) -> int:
        return sum(entry.amount for entry in self.entries if entry.direction == "debit")

    @property
    def closing_balance(self) -> int:
        return self.entries[-1].balance_after if self.entries else self.opening_balance

    def to_json(self) -> bytes:
        """The JSON document; each transaction rendered as everywhere else (TransactionRecord)."""
        # The standard library's encoder for the totals: the credits of 10,000 journals can pass
        # the 64-bit integers orjson encodes.
        head = json.dumps(
            {
                "wallet_id": str(self.wallet_id),
                "asset": self.asset,
                "from": timestamp_text(self.start),
                "to": timestamp_text(self.end),
                "opening_balance": self.opening_balance,
                "closing_balance": self.closing_balance,
                "total_credits": self.total_credits,
                "total_debits": self.total_debits,
            },
            separators=(",", ":"),
        )
        listed = b",".join(record.to_json() for record in self.transactions)
        return head[:-1].encode() + b',"transactions":[' + listed + b"]}"

    def to_csv(self) -> str:
        """One row per entry of the wallet, oldest first, under a header row; RFC 4180 (CRLF,
        fields quoted when they hold a comma, a quote or a line break). Values are exact: a
        reference is written as stored, even one a spreadsheet would read as a formula."""
        by_id = {record.id: record for record in self.transactions}
        output = io.StringIO()
        writer = csv.writer(output, lineterminator="\r\n")
        writer.writerow(CSV_COLUMNS)
        for entry in self.entries:
            record = by_id[entry.transaction_id]
            writer.writerow(
                (
                    timestamp_text(entry.created_at),
                    str(entry.transaction_id),
                    record.type,
                    entry.direction,
                    entry.amount,
                    entry.balance_after,
                    record.reference or "",
                )
            )
        return output.getvalue()


def _first_seen(entries: tuple[StatementEntry, ...] | list[StatementEntry]) -> list[uuid.UUID]:
    """The transactions of the entries, each once, in the order of its first entry."""
    return list(dict.fromkeys(entry.transaction_id for entry in entries))


# `at` and the clock first: an instant in the future is refused whether the wallet exists or not.
BALANCE_AT = """
SELECT clock_timestamp() AS now,
    (SELECT a.asset FROM account a WHERE a.id = $1 AND a.kind = 'user') AS asset,
    (SELECT e.balance_after FROM entry e
     WHERE e.account_id = $1 AND e.balance_after IS NOT NULL AND e.created_at <= $2
     ORDER BY e.created_at DESC, e.account_sequence DESC
     LIMIT 1) AS balance
"""


async def balance_at(connection: Connection, wallet_id: uuid.UUID, at: datetime) -> BalanceAt:
    """The wallet's balance after every transaction at or before `at`: one index lookup.
    TimeInFuture when `at` is later than the database's clock; WalletNotFound."""
    assert at.tzinfo is not None
    row = await connection.fetchrow(BALANCE_AT, wallet_id, at)
    assert row is not None
    if at > row["now"]:
        raise TimeInFuture(f"The time {timestamp_text(at)} is in the future.")
    if row["asset"] is None:
        raise WalletNotFound(f"Wallet {wallet_id} does not exist.")
    balance = 0 if row["balance"] is None else int(row["balance"])
    assert balance >= 0
    return BalanceAt(wallet_id, at, balance)


STATEMENT_OPENING = """
SELECT clock_timestamp() AS now,
    (SELECT a.asset FROM account a WHERE a.id = $1 AND a.kind = 'user') AS asset,
    (SELECT e.balance_after FROM entry e
     WHERE e.account_id = $1 AND e.balance_after IS NOT NULL AND e.created_at < $2
     ORDER BY e.created_at DESC, e.account_sequence DESC
     LIMIT 1) AS opening
"""
# The window's entries after a position (created_at, account_sequence), oldest first.
STATEMENT_ENTRIES = """
SELECT e.transaction_id, e.direction, e.amount, e.balance_after, e.created_at, e.account_sequence
FROM entry e
WHERE e.account_id = $1 AND e.balance_after IS NOT NULL
  AND (e.created_at, e.account_sequence) > ($2, $3) AND e.created_at < $4
ORDER BY e.created_at, e.account_sequence
LIMIT $5
"""


async def statement(
    connection: Connection, wallet_id: uuid.UUID, start: datetime, end: datetime | None
) -> Statement:
    """The wallet's statement of [start, end) (`end` None: until now), on one snapshot.
    WindowInvalid when `end` is not later than `start`; WalletNotFound; StatementTooLarge when
    the window holds more than STATEMENT_TRANSACTIONS_MAX transactions."""
    assert start.tzinfo is not None and (end is None or end.tzinfo is not None)
    async with connection.transaction(isolation="repeatable_read", readonly=True):
        row = await connection.fetchrow(STATEMENT_OPENING, wallet_id, start)
        assert row is not None
        end = row["now"] if end is None else end
        assert end is not None
        if end <= start:
            window = f"{timestamp_text(start)} to {timestamp_text(end)}"
            raise WindowInvalid(f"The window {window} does not end after it starts.")
        if row["asset"] is None:
            raise WalletNotFound(f"Wallet {wallet_id} does not exist.")
        opening = 0 if row["opening"] is None else int(row["opening"])
        entries = await _window_entries(connection, wallet_id, start, end)
        found = await get_transactions(connection, _first_seen(entries))
    return Statement(
        wallet_id=wallet_id,
        asset=row["asset"],
        start=start,
        end=end,
        opening_balance=opening,
        entries=tuple(entries),
        transactions=tuple(found[transaction_id] for transaction_id in _first_seen(entries)),
    )


async def _window_entries(
    connection: Connection, wallet_id: uuid.UUID, start: datetime, end: datetime
) -> list[StatementEntry]:
    """The wallet's entries in [start, end), oldest first, a chunk at a time; StatementTooLarge
    as soon as they name more than STATEMENT_TRANSACTIONS_MAX transactions."""
    entries: list[StatementEntry] = []
    after_at, after_sequence = start, 0  # every entry at `start` comes after (start, 0)
    for _ in range(CHUNKS_MAX):
        rows = await connection.fetch(
            STATEMENT_ENTRIES, wallet_id, after_at, after_sequence, end, ENTRIES_CHUNK
        )
        entries += [StatementEntry(**dict(row)) for row in rows]
        if len(_first_seen(entries)) > STATEMENT_TRANSACTIONS_MAX:
            raise StatementTooLarge(
                f"The window holds more than {STATEMENT_TRANSACTIONS_MAX:,} transactions; "
                "ask for a shorter one."
            )
        if len(rows) < ENTRIES_CHUNK:
            return entries
        after_at, after_sequence = entries[-1].created_at, entries[-1].account_sequence
    raise AssertionError(f"wallet {wallet_id}: {CHUNKS_MAX} chunks and still entries to read")
