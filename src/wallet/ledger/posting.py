"""Money movements: one call of the ledger_post SQL function each, one database round trip."""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass

import asyncpg

from wallet._ids import uuid7
from wallet.ledger.errors import BalanceLimitExceeded
from wallet.ledger.limits import AMOUNT_MAX, AMOUNT_MIN
from wallet.types import Connection

SQLSTATE_SYSTEM_ACCOUNT_FULL = "WL001"


class Kind(enum.StrEnum):
    TOPUP = "topup"
    BONUS = "bonus"
    SPEND = "spend"
    TRANSFER = "transfer"


@dataclass(frozen=True, slots=True)
class Movement:
    kind: Kind
    source_wallet_id: uuid.UUID | None  # the debited user wallet
    target_wallet_id: uuid.UUID | None  # the credited user wallet
    amount: int
    reference: str | None
    metadata_json: str | None  # a JSON object, already serialised

    def __post_init__(self) -> None:
        assert AMOUNT_MIN <= self.amount <= AMOUNT_MAX, self.amount
        assert (self.source_wallet_id is None) == (self.kind in (Kind.TOPUP, Kind.BONUS))
        assert (self.target_wallet_id is None) == (self.kind is Kind.SPEND)


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the ledger answered: a status, the JSON body (a Transaction or a problem document)
    and whether it is the stored answer to an earlier request with the same key."""

    status: int
    body: str
    replayed: bool


async def post(
    connection: Connection,
    movement: Movement,
    api_key_id: uuid.UUID,
    idempotency_key: str,
    fingerprint: bytes,
) -> Outcome:
    try:
        row = await connection.fetchrow(
            "SELECT status, body, replayed FROM ledger_post($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
            api_key_id,
            idempotency_key,
            fingerprint,
            uuid7(),
            movement.kind.value,
            movement.source_wallet_id,
            movement.target_wallet_id,
            movement.amount,
            movement.reference,
            movement.metadata_json,
        )
    except asyncpg.PostgresError as error:
        if error.sqlstate == SQLSTATE_SYSTEM_ACCOUNT_FULL:
            raise BalanceLimitExceeded("A system account of this asset is at its balance limit.") from error
        raise
    assert row is not None
    assert row["status"] in (201, 404, 409, 422), row["status"]
    return Outcome(status=row["status"], body=row["body"], replayed=row["replayed"])
