"""Holds: reserve part of a wallet's funds now, capture (a spend) or void it later.

Placing and voiding are ledger.place_hold and ledger.void_hold (ledger/sql/holds.sql); a
capture is a spend posted by the posting core with the hold it takes (posting.capture). A
pending hold past its `expires_at` is expired at once: it reads so, counts in no `held`, and
cannot be captured, whether or not a posting or the sweeper has marked it yet.
"""

from __future__ import annotations

import base64
import binascii
import enum
import uuid
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

import asyncpg
import orjson

from wallet.ledger.errors import HoldNotFound, WalletNotFound
from wallet.ledger.limits import HOLD_EXPIRY_SECONDS_MAX, PAGE_SIZE_MAX
from wallet.ledger.posting import Decline
from wallet.ledger.transactions import timestamp_text
from wallet.types import Connection

CURSOR_PREFIX = "h1:"
CURSOR_LENGTH_MAX = 96


class HoldStatus(enum.StrEnum):
    PENDING = "pending"
    CAPTURED = "captured"
    VOIDED = "voided"
    EXPIRED = "expired"


@dataclass(frozen=True, slots=True)
class HoldRecord:
    id: uuid.UUID
    wallet_id: uuid.UUID
    asset: str
    amount: int
    captured_amount: int
    status: str  # as stored: a pending hold may be past its expiry (see status_at)
    expires_at: datetime
    reference: str | None
    metadata_json: str | None
    transaction_id: uuid.UUID | None
    created_at: datetime
    updated_at: datetime

    def status_at(self, at: datetime) -> HoldStatus:
        if self.status == HoldStatus.PENDING and self.expires_at <= at:
            return HoldStatus.EXPIRED
        return HoldStatus(self.status)

    def as_placed(self) -> HoldRecord:
        """The hold as the request that placed it was answered (what its replay shows)."""
        return replace(
            self,
            status=HoldStatus.PENDING,
            captured_amount=0,
            transaction_id=None,
            updated_at=self.created_at,
        )

    def to_document(self, at: datetime) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "wallet_id": str(self.wallet_id),
            "asset": self.asset,
            "amount": self.amount,
            "captured_amount": self.captured_amount,
            "status": self.status_at(at).value,
            "expires_at": timestamp_text(self.expires_at),
            "reference": self.reference,
            "metadata": None if self.metadata_json is None else orjson.Fragment(self.metadata_json),
            "transaction_id": None if self.transaction_id is None else str(self.transaction_id),
            "created_at": timestamp_text(self.created_at),
            "updated_at": timestamp_text(self.updated_at),
        }

    def to_json(self, at: datetime) -> bytes:
        return orjson.dumps(self.to_document(at))


def _record(row: asyncpg.Record) -> HoldRecord:
    return HoldRecord(
        id=row["id"],
        wallet_id=row["wallet_id"],
        asset=row["asset"],
        amount=row["amount"],
        captured_amount=row["captured_amount"],
        status=row["status"],
        expires_at=row["expires_at"],
        reference=row["reference"],
        metadata_json=row["metadata"],
        transaction_id=row["transaction_id"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


HOLD_BY_ID = """
SELECT h.id, h.wallet_id, h.asset, h.amount, h.captured_amount, h.status, h.expires_at, h.reference,
    h.metadata::text AS metadata, h.transaction_id, h.created_at, h.updated_at, now() AS at
FROM hold h WHERE h.id = $1
"""


async def get_hold(connection: Connection, hold_id: uuid.UUID) -> tuple[HoldRecord, datetime]:
    """The hold, and the database's time to show it at."""
    row = await connection.fetchrow(HOLD_BY_ID, hold_id)
    if row is None:
        raise HoldNotFound(f"Hold {hold_id} does not exist.")
    return _record(row), row["at"]


HOLDS_BY_IDS = """
SELECT h.id, h.wallet_id, h.asset, h.amount, h.captured_amount, h.status, h.expires_at, h.reference,
    h.metadata::text AS metadata, h.transaction_id, h.created_at, h.updated_at
FROM hold h WHERE h.id = ANY($1::uuid[])
"""


async def get_holds(connection: Connection, hold_ids: list[uuid.UUID]) -> dict[uuid.UUID, HoldRecord]:
    """The holds of these ids that exist, by id."""
    return {row["id"]: _record(row) for row in await connection.fetch(HOLDS_BY_IDS, hold_ids)}


async def find_hold(connection: Connection, hold_id: uuid.UUID) -> HoldRecord | None:
    row = await connection.fetchrow(HOLD_BY_ID, hold_id)
    return None if row is None else _record(row)


class Result(enum.StrEnum):
    DONE = "done"  # placed, or voided
    DECLINED = "declined"
    REUSED = "reused"


@dataclass(frozen=True, slots=True)
class HoldOutcome:
    result: Result
    replayed: bool
    status: int | None = None  # DONE: 201 placed, 200 voided
    hold: HoldRecord | None = None  # DONE: the hold to show
    at: datetime | None = None  # DONE: the time to show it at
    decline: Decline | None = None

    def __post_init__(self) -> None:
        assert (self.hold is not None) == (self.result is Result.DONE) == (self.status in (200, 201))
        assert (self.decline is not None) == (self.result is Result.DECLINED)


PLACE = """
SELECT state, code, detail, stored_status, stored_hold_id, stored_body
FROM ledger.place_hold($1, $2, $3, $4, $5, $6, $7, $8, $9)
"""
VOID = """
SELECT state, code, detail, stored_status, stored_hold_id, stored_body
FROM ledger.void_hold($1, $2, $3, $4, $5)
"""


async def _outcome(
    connection: Connection, row: asyncpg.Record, hold_id: uuid.UUID, status: int
) -> HoldOutcome:
    state = row["state"]
    if state == "reused":
        return HoldOutcome(Result.REUSED, False)
    replayed = state == "replayed"
    if row["code"] is not None:
        return HoldOutcome(Result.DECLINED, replayed, decline=Decline(row["code"], row["detail"]))
    if replayed:
        assert row["stored_hold_id"] is not None, dict(row)
        hold_id, status = row["stored_hold_id"], row["stored_status"]
    hold, at = await get_hold(connection, hold_id)
    if status == 201:
        hold = hold.as_placed()
    return HoldOutcome(Result.DONE, replayed, status=status, hold=hold, at=at)


async def place(
    connection: Connection,
    api_key_id: uuid.UUID,
    idempotency_key: str,
    fingerprint: bytes,
    wallet_id: uuid.UUID,
    amount: int,
    expires_in_seconds: int,
    reference: str | None,
    metadata_json: str | None,
    hold_id: uuid.UUID,
) -> HoldOutcome:
    assert 1 <= expires_in_seconds <= HOLD_EXPIRY_SECONDS_MAX
    row = await connection.fetchrow(
        PLACE, api_key_id, idempotency_key, fingerprint, hold_id, wallet_id, amount, expires_in_seconds,
        reference, metadata_json,
    )  # fmt: skip
    assert row is not None
    return await _outcome(connection, row, hold_id, 201)


async def void(
    connection: Connection,
    api_key_id: uuid.UUID,
    idempotency_key: str,
    fingerprint: bytes,
    hold_id: uuid.UUID,
) -> HoldOutcome:
    found = await find_hold(connection, hold_id)
    wallet_id = None if found is None else found.wallet_id
    row = await connection.fetchrow(VOID, api_key_id, idempotency_key, fingerprint, hold_id, wallet_id)
    assert row is not None
    return await _outcome(connection, row, hold_id, 200)


# --- a wallet's holds, newest first -------------------------------------------------------


class CursorInvalid(ValueError):
    pass


def encode_cursor(created_at: datetime, hold_id: uuid.UUID) -> str:
    text = f"{CURSOR_PREFIX}{created_at.astimezone(UTC).isoformat()}|{hold_id}"
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    invalid = CursorInvalid("cursor is not one this service returned")
    if not 1 <= len(cursor) <= CURSOR_LENGTH_MAX or not cursor.isascii():
        raise invalid
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
        at, _, hold_id = text.removeprefix(CURSOR_PREFIX).partition("|")
        if not text.startswith(CURSOR_PREFIX):
            raise ValueError(text)
        created_at = datetime.fromisoformat(at)
        if created_at.tzinfo is None:
            raise ValueError(at)
        return created_at, uuid.UUID(hold_id)
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise invalid from None


@dataclass(frozen=True, slots=True)
class HoldPage:
    holds: list[HoldRecord]
    at: datetime
    next_cursor: str | None


WALLET_HOLDS = """
SELECT h.id, h.wallet_id, h.asset, h.amount, h.captured_amount, h.status, h.expires_at, h.reference,
    h.metadata::text AS metadata, h.transaction_id, h.created_at, h.updated_at, now() AS at
FROM hold h
WHERE h.wallet_id = $1 AND (h.created_at, h.id) < ($2, $3)
  AND CASE $4::text
      WHEN 'pending' THEN h.status = 'pending' AND h.expires_at > now()
      WHEN 'expired' THEN h.status = 'expired' OR (h.status = 'pending' AND h.expires_at <= now())
      WHEN 'captured' THEN h.status = 'captured'
      WHEN 'voided' THEN h.status = 'voided'
      ELSE true END
ORDER BY h.created_at DESC, h.id DESC
LIMIT $5
"""
WALLET_NOW = "SELECT now() AS at, EXISTS (SELECT FROM account WHERE id = $1 AND kind = 'user') AS found"
CURSOR_START = (datetime(9999, 12, 31, tzinfo=UTC), uuid.UUID(int=2**128 - 1))


async def wallet_holds(
    connection: Connection, wallet_id: uuid.UUID, status: HoldStatus | None, limit: int, cursor: str | None
) -> HoldPage:
    assert 1 <= limit <= PAGE_SIZE_MAX
    before = decode_cursor(cursor) if cursor is not None else CURSOR_START
    status_text = None if status is None else status.value
    rows = await connection.fetch(WALLET_HOLDS, wallet_id, before[0], before[1], status_text, limit + 1)
    if not rows:
        row = await connection.fetchrow(WALLET_NOW, wallet_id)
        assert row is not None
        if not row["found"]:
            raise WalletNotFound(f"Wallet {wallet_id} does not exist.")
        return HoldPage([], row["at"], None)
    shown = rows[:limit]
    next_cursor = encode_cursor(shown[-1]["created_at"], shown[-1]["id"]) if len(rows) > limit else None
    return HoldPage([_record(row) for row in shown], rows[0]["at"], next_cursor)
