"""Transactions as the API shows them: one record type, one renderer, and the reads.

A transaction never changes once written, so its document is a pure function of its rows: the
response to the request that posted it, a replay of that request, GET /v1/transactions/{id} and
every history page render it with `TransactionRecord.to_json` and are byte for byte the same.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson

from wallet.ledger.errors import TransactionNotFound
from wallet.types import Connection


def timestamp_text(value: datetime) -> str:
    """RFC 3339 UTC with microseconds: the one timestamp format of every response."""
    assert value.tzinfo is not None
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True, slots=True)
class EntryRecord:
    account_id: uuid.UUID
    account: str  # the wallet id, or a system account such as `treasury:GOLD`
    direction: str  # debit | credit
    amount: int
    balance_after: int | None  # wallets only

    def to_document(self) -> dict[str, Any]:
        return {
            "account_id": str(self.account_id),
            "account": self.account,
            "direction": self.direction,
            "amount": self.amount,
            "balance_after": self.balance_after,
        }


@dataclass(frozen=True, slots=True)
class TransactionRecord:
    id: uuid.UUID
    type: str
    asset: str
    amount: int
    wallet_id: uuid.UUID
    reference: str | None
    metadata_json: str | None  # the stored JSON text, shown as it is
    created_at: datetime
    entries: tuple[EntryRecord, ...]
    reverses: uuid.UUID | None = None  # a reversal: the transaction it reverses
    hold_id: uuid.UUID | None = None  # a capture: the hold it took

    def __post_init__(self) -> None:
        debits = sum(entry.amount for entry in self.entries if entry.direction == "debit")
        credits = sum(entry.amount for entry in self.entries if entry.direction == "credit")
        assert debits == credits == self.amount, (self.id, debits, credits, self.amount)

    @property
    def balance_after(self) -> int:
        """The balance of the transaction's wallet after it: that of its last entry."""
        for entry in reversed(self.entries):
            if entry.account_id == self.wallet_id:
                assert entry.balance_after is not None
                return entry.balance_after
        raise AssertionError(f"transaction {self.id} has no entry of its wallet")

    def to_document(self) -> dict[str, Any]:
        metadata = None if self.metadata_json is None else orjson.Fragment(self.metadata_json)
        return {
            "id": str(self.id),
            "type": self.type,
            "asset": self.asset,
            "amount": self.amount,
            "wallet_id": str(self.wallet_id),
            "balance_after": self.balance_after,
            "reference": self.reference,
            "metadata": metadata,
            "created_at": timestamp_text(self.created_at),
            "reverses": None if self.reverses is None else str(self.reverses),
            "hold_id": None if self.hold_id is None else str(self.hold_id),
            "entries": [entry.to_document() for entry in self.entries],
        }

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_document())


def account_label(account_id: uuid.UUID, system_kind: str | None, asset: str) -> str:
    return str(account_id) if system_kind is None else f"{system_kind}:{asset}"


def record_of(row: asyncpg.Record) -> TransactionRecord:
    """A TransactionRecord from a row of TRANSACTION_BY_ID or TRANSACTIONS_BY_IDS."""
    entries = tuple(
        EntryRecord(account_id, account_label(account_id, kind, row["asset"]), direction, amount, balance)
        for account_id, kind, direction, amount, balance in zip(
            row["entry_accounts"],
            row["entry_kinds"],
            row["entry_directions"],
            row["entry_amounts"],
            row["entry_balances"],
            strict=True,
        )
    )
    return TransactionRecord(
        id=row["id"],
        type=row["type"],
        asset=row["asset"],
        amount=row["amount"],
        wallet_id=row["wallet_id"],
        reference=row["reference"],
        metadata_json=row["metadata"],
        created_at=row["created_at"],
        entries=entries,
        reverses=row["reverses"],
        hold_id=row["hold_id"],
    )


TRANSACTION_BY_ID = """
SELECT t.id, t.type, t.asset, t.amount, t.wallet_id, t.reference, t.metadata::text AS metadata,
    t.created_at, t.reverses, t.hold_id, e.*
FROM transaction t
CROSS JOIN LATERAL (
    SELECT array_agg(e.account_id ORDER BY e.entry_index) AS entry_accounts,
        array_agg(CASE WHEN a.kind = 'user' THEN NULL ELSE a.kind END ORDER BY e.entry_index)
            AS entry_kinds,
        array_agg(e.direction ORDER BY e.entry_index) AS entry_directions,
        array_agg(e.amount ORDER BY e.entry_index) AS entry_amounts,
        array_agg(e.balance_after ORDER BY e.entry_index) AS entry_balances
    FROM entry e JOIN account a ON a.id = e.account_id
    WHERE e.transaction_id = t.id
) e
WHERE t.id = $1
"""
TRANSACTIONS_BY_IDS = """
SELECT t.id, t.type, t.asset, t.amount, t.wallet_id, t.reference, t.metadata::text AS metadata,
    t.created_at, t.reverses, t.hold_id, e.*
FROM transaction t
CROSS JOIN LATERAL (
    SELECT array_agg(e.account_id ORDER BY e.entry_index) AS entry_accounts,
        array_agg(CASE WHEN a.kind = 'user' THEN NULL ELSE a.kind END ORDER BY e.entry_index)
            AS entry_kinds,
        array_agg(e.direction ORDER BY e.entry_index) AS entry_directions,
        array_agg(e.amount ORDER BY e.entry_index) AS entry_amounts,
        array_agg(e.balance_after ORDER BY e.entry_index) AS entry_balances
    FROM entry e JOIN account a ON a.id = e.account_id
    WHERE e.transaction_id = t.id
) e
WHERE t.id = ANY($1::uuid[])
"""


async def get_transaction(connection: Connection, transaction_id: uuid.UUID) -> TransactionRecord:
    row = await connection.fetchrow(TRANSACTION_BY_ID, transaction_id)
    if row is None:
        raise TransactionNotFound(f"Transaction {transaction_id} does not exist.")
    return record_of(row)


async def get_transactions(
    connection: Connection, transaction_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, TransactionRecord]:
    """The transactions of these ids that exist, by id."""
    rows = await connection.fetch(TRANSACTIONS_BY_IDS, list(transaction_ids))
    return {row["id"]: record_of(row) for row in rows}


REVERSED_AMOUNT = "SELECT coalesce(sum(amount), 0) FROM transaction WHERE reverses = $1"


async def reversed_amount(connection: Connection, transaction_id: uuid.UUID) -> int:
    """How much of the transaction its reversals have reversed so far."""
    value = await connection.fetchval(REVERSED_AMOUNT, transaction_id)
    return int(value)
