"""The event feed: every posted transaction and every change of a hold's status, in commit order.

Writers add a row to `event` in their own database transaction (ledger/sql/*.sql); the sequencer
(ledger.sequence_events, ledger/sql/events.sql) gives committed events their positions; the feed
reads by position. An event shows the Transaction or the Hold it is about, rendered from those
rows when read: a transaction never changes, and a hold's captured, voided and expired states are
final (`hold.created` shows the hold as it was placed).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import enum
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from wallet.ledger import holds, transactions
from wallet.ledger.transactions import timestamp_text
from wallet.types import Connection

CURSOR_PREFIX = "v1:"
CURSOR_LENGTH_MAX = 64
PAGE_SIZE_MAX = 1000
SEQUENCE_BATCH_SIZE = 10_000  # events one sequencer run places at most


class EventType(enum.StrEnum):
    TRANSACTION_POSTED = "transaction.posted"
    HOLD_CREATED = "hold.created"
    HOLD_CAPTURED = "hold.captured"
    HOLD_VOIDED = "hold.voided"
    HOLD_EXPIRED = "hold.expired"


@dataclass(frozen=True, slots=True)
class Event:
    position: int
    id: uuid.UUID
    type: EventType
    created_at: datetime
    data: dict[str, Any]

    def to_document(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "type": self.type.value,
            "created_at": timestamp_text(self.created_at),
            "data": self.data,
        }

    def to_json(self) -> bytes:
        return orjson.dumps(self.to_document())


class CursorInvalid(ValueError):
    pass


def encode_cursor(position: int) -> str:
    return base64.urlsafe_b64encode(f"{CURSOR_PREFIX}{position}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    """The position a cursor this service returned stands for."""
    invalid = CursorInvalid("cursor is not one this service returned")
    if not 1 <= len(cursor) <= CURSOR_LENGTH_MAX or not cursor.isascii():
        raise invalid
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
    except (binascii.Error, UnicodeDecodeError):
        raise invalid from None
    number = text.removeprefix(CURSOR_PREFIX)
    if not text.startswith(CURSOR_PREFIX) or not number.isdigit() or len(number) > 19:
        raise invalid
    position = int(number)
    if position >= 2**63:
        raise invalid
    return position


EVENTS_AFTER = """
SELECT p.position, e.id, e.type, e.subject_id, e.created_at
FROM event_position p JOIN event e ON e.id = p.event_id
WHERE p.position > $1
ORDER BY p.position
LIMIT $2
"""


async def events_after(connection: Connection, position: int, limit: int) -> list[Event]:
    """Up to `limit` events after `position`, in order, with what they show."""
    assert 1 <= limit <= PAGE_SIZE_MAX and position >= 0
    rows = await connection.fetch(EVENTS_AFTER, position, limit)
    transaction_ids = [row["subject_id"] for row in rows if row["type"] == EventType.TRANSACTION_POSTED]
    hold_ids = [row["subject_id"] for row in rows if row["type"] != EventType.TRANSACTION_POSTED]
    posted = await transactions.get_transactions(connection, transaction_ids) if transaction_ids else {}
    held = await holds.get_holds(connection, hold_ids) if hold_ids else {}
    events = []
    for row in rows:
        kind = EventType(row["type"])
        if kind is EventType.TRANSACTION_POSTED:
            data = posted[row["subject_id"]].to_document()
        else:
            hold = held[row["subject_id"]]
            if kind is EventType.HOLD_CREATED:
                data = hold.as_placed().to_document(hold.created_at)
            else:
                data = hold.to_document(row["created_at"])
        events.append(Event(row["position"], row["id"], kind, row["created_at"], data))
    return events


async def sequence(connection: Connection, batch_size: int = SEQUENCE_BATCH_SIZE) -> int | None:
    """One run of the sequencer: how many events it placed, or None when another run holds it."""
    placed = await connection.fetchval("SELECT ledger.sequence_events($1)", batch_size)
    assert isinstance(placed, int)
    return None if placed < 0 else placed


async def sequence_all(connection: Connection) -> int:
    """Runs until every committed event has its position (waiting out other runs)."""
    total = 0
    while True:
        placed = await sequence(connection)
        if placed is None:
            await asyncio.sleep(0.01)
            continue
        total += placed
        if placed < SEQUENCE_BATCH_SIZE:
            return total


async def purge_batch(connection: Connection, ttl_days: int, batch_size: int) -> int:
    """Delete up to batch_size events older than ttl_days that every relay has published."""
    deleted = await connection.fetchval(
        "SELECT ledger.purge_events(now() - make_interval(days => $1), $2)", ttl_days, batch_size
    )
    assert isinstance(deleted, int)
    return deleted


RELAY_LAG = """
SELECT r.stream, s.last_position - r.position AS events,
    coalesce(extract(epoch FROM now() - (
        SELECT e.created_at FROM event_position p JOIN event e ON e.id = p.event_id
        WHERE p.position = r.position + 1)), 0)::float8 AS seconds
FROM event_relay r CROSS JOIN event_sequencer s
"""


async def relay_lag(connection: Connection) -> list[tuple[str, int, float]]:
    """Per relay (JetStream stream): events it has not published, and the oldest one's age."""
    rows = await connection.fetch(RELAY_LAG)
    return [(row["stream"], max(0, row["events"]), max(0.0, row["seconds"])) for row in rows]
