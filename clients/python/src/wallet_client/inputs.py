"""What callers hand the client beyond plain arguments: a journal's postings and a batch's items.

Each batch item is exactly the single request it names (the same rules, the same key space):
an item without `idempotency_key` gets one made when the batch call starts, kept for every retry
of that call.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar

SYSTEM_ACCOUNTS = ("treasury", "bonus", "revenue")


def check_amount(amount: object, name: str = "amount") -> int:
    """Money is an int of the asset's smallest unit: a float, a string or a bool is refused here,
    before anything is sent (the service checks the range)."""
    if not isinstance(amount, int) or isinstance(amount, bool):
        raise TypeError(f"{name} must be an int (money is in the asset's smallest unit), not {amount!r}")
    return amount


def rfc3339(moment: datetime, name: str) -> str:
    """A timezone-aware datetime as RFC 3339 UTC with microseconds; a naive one is refused (it
    names no instant)."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware (e.g. datetime.now(timezone.utc))")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def movement_fields(
    amount: int | None,
    reference: str | None,
    metadata: Mapping[str, Any] | None,
    expires_at: datetime | None = None,
) -> dict[str, Any]:
    """The body fields of a movement; those not given are left out (the service's defaults)."""
    fields: dict[str, Any] = {}
    if amount is not None:
        fields["amount"] = check_amount(amount)
    if reference is not None:
        fields["reference"] = reference
    if metadata is not None:
        fields["metadata"] = dict(metadata)
    if expires_at is not None:
        fields["expires_at"] = rfc3339(expires_at, "expires_at")
    return fields


@dataclass(frozen=True, slots=True)
class Posting:
    """One posting of a journal: `amount` from `source` to `target`, each a wallet id or one of
    the asset's system accounts `treasury`, `bonus`, `revenue` (the API's `from` and `to`)."""

    source: str
    target: str
    amount: int

    def document(self) -> dict[str, Any]:
        return {"from": self.source, "to": self.target, "amount": check_amount(self.amount)}


def journal_fields(
    asset: str, postings: Sequence[Posting], reference: str | None, metadata: Mapping[str, Any] | None
) -> dict[str, Any]:
    return {
        "asset": asset,
        "postings": [posting.document() for posting in postings],
        **movement_fields(None, reference, metadata),
    }


@dataclass(frozen=True, slots=True)
class TopUpItem:
    """A top-up in a batch (`POST /v1/wallets/{id}/topup`)."""

    wallet_id: str
    amount: int
    reference: str | None = None
    metadata: Mapping[str, Any] | None = None
    expires_at: datetime | None = None
    idempotency_key: str | None = None
    op: ClassVar[str] = "topup"

    def document(self, idempotency_key: str) -> dict[str, Any]:
        fields = movement_fields(check_amount(self.amount), self.reference, self.metadata, self.expires_at)
        return {"op": self.op, "wallet_id": self.wallet_id, **fields, "idempotency_key": idempotency_key}


@dataclass(frozen=True, slots=True)
class BonusItem:
    """A bonus in a batch (`POST /v1/wallets/{id}/bonus`)."""

    wallet_id: str
    amount: int
    reference: str | None = None
    metadata: Mapping[str, Any] | None = None
    expires_at: datetime | None = None
    idempotency_key: str | None = None
    op: ClassVar[str] = "bonus"

    def document(self, idempotency_key: str) -> dict[str, Any]:
        fields = movement_fields(check_amount(self.amount), self.reference, self.metadata, self.expires_at)
        return {"op": self.op, "wallet_id": self.wallet_id, **fields, "idempotency_key": idempotency_key}


@dataclass(frozen=True, slots=True)
class SpendItem:
    """A spend in a batch (`POST /v1/wallets/{id}/spend`)."""

    wallet_id: str
    amount: int
    reference: str | None = None
    metadata: Mapping[str, Any] | None = None
    idempotency_key: str | None = None
    op: ClassVar[str] = "spend"

    def document(self, idempotency_key: str) -> dict[str, Any]:
        fields = movement_fields(check_amount(self.amount), self.reference, self.metadata)
        return {"op": self.op, "wallet_id": self.wallet_id, **fields, "idempotency_key": idempotency_key}


@dataclass(frozen=True, slots=True)
class TransferItem:
    """A transfer in a batch (`POST /v1/transfers`)."""

    from_wallet_id: str
    to_wallet_id: str
    amount: int
    reference: str | None = None
    metadata: Mapping[str, Any] | None = None
    idempotency_key: str | None = None
    op: ClassVar[str] = "transfer"

    def document(self, idempotency_key: str) -> dict[str, Any]:
        fields = movement_fields(check_amount(self.amount), self.reference, self.metadata)
        return {
            "op": self.op,
            "from_wallet_id": self.from_wallet_id,
            "to_wallet_id": self.to_wallet_id,
            **fields,
            "idempotency_key": idempotency_key,
        }


@dataclass(frozen=True, slots=True)
class JournalItem:
    """A journal in a batch (`POST /v1/journal`)."""

    asset: str
    postings: Sequence[Posting]
    reference: str | None = None
    metadata: Mapping[str, Any] | None = None
    idempotency_key: str | None = None
    op: ClassVar[str] = "journal"

    def document(self, idempotency_key: str) -> dict[str, Any]:
        fields = journal_fields(self.asset, self.postings, self.reference, self.metadata)
        return {"op": self.op, **fields, "idempotency_key": idempotency_key}


BatchItem = TopUpItem | BonusItem | SpendItem | TransferItem | JournalItem
