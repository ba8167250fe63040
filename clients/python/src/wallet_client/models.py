"""What the service returns, as small frozen dataclasses. Amounts are ints (the asset's smallest
unit), timestamps timezone-aware datetimes, ids strings. Each object keeps the document it was
read from as `raw` (fields a newer service adds are there)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar

from wallet_client.errors import WalletError, error_class

T = TypeVar("T")
Document = Mapping[str, Any]


def timestamp(text: Any) -> datetime:
    """An RFC 3339 timestamp of the service (always with an offset)."""
    if not isinstance(text, str):
        raise TypeError(f"expected an RFC 3339 timestamp, got {text!r}")
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        raise ValueError(f"timestamp without an offset: {text!r}")
    return moment


def _optional_timestamp(text: Any) -> datetime | None:
    return None if text is None else timestamp(text)


def _integer(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise TypeError(f"expected an integer amount, got {value!r}")
    return value


def _optional_integer(value: Any) -> int | None:
    return None if value is None else _integer(value)


def _optional_text(value: Any) -> str | None:
    return None if value is None else str(value)


def _metadata(value: Any) -> dict[str, Any] | None:
    return dict(value) if isinstance(value, Mapping) else None


@dataclass(frozen=True, slots=True)
class Asset:
    code: str
    name: str
    created_at: datetime
    raw: Document = field(repr=False, compare=False)

    @classmethod
    def from_document(cls, document: Document) -> Asset:
        return cls(document["code"], document["name"], timestamp(document["created_at"]), document)


@dataclass(frozen=True, slots=True)
class Expiry:
    """The soonest-expiring credit lot of a wallet: how much of it is left, and when it expires."""

    amount: int
    expires_at: datetime

    @classmethod
    def from_document(cls, document: Document) -> Expiry:
        return cls(_integer(document["amount"]), timestamp(document["expires_at"]))


@dataclass(frozen=True, slots=True)
class LedgerHead:
    """The head of a wallet's hash chain: the hex SHA-256 of its last entry and how many entries
    the chain has. Recorded, it lets one show later that the history up to it was not rewritten
    (`verify_ledger(deep=True)` checks every chain)."""

    hash: str
    entries: int

    @classmethod
    def from_document(cls, document: Document) -> LedgerHead:
        return cls(str(document["hash"]), _integer(document["entries"]))


@dataclass(frozen=True, slots=True)
class Wallet:
    """`available = balance - held`: what a debit may take. `ledger_head` is None from a service
    that does not send it."""

    id: str
    owner_id: str
    asset: str
    balance: int
    held: int
    available: int
    next_expiry: Expiry | None
    ledger_head: LedgerHead | None
    created_at: datetime
    updated_at: datetime
    raw: Document = field(repr=False, compare=False)

    @classmethod
    def from_document(cls, document: Document) -> Wallet:
        balance = _integer(document["balance"])
        held = _integer(document.get("held", 0))
        expiry = document.get("next_expiry")
        head = document.get("ledger_head")
        return cls(
            id=document["id"],
            owner_id=document["owner_id"],
            asset=document["asset"],
            balance=balance,
            held=held,
            available=_integer(document.get("available", balance - held)),
            next_expiry=None if expiry is None else Expiry.from_document(expiry),
            ledger_head=None if head is None else LedgerHead.from_document(head),
            created_at=timestamp(document["created_at"]),
            updated_at=timestamp(document["updated_at"]),
            raw=document,
        )


@dataclass(frozen=True, slots=True)
class Entry:
    """One side of a posting. `account` is a wallet id or a system account such as
    `treasury:GOLD`; `direction` is `debit` or `credit`; `balance_after` is None for system
    accounts."""

    account_id: str
    account: str
    direction: str
    amount: int
    balance_after: int | None

    @classmethod
    def from_document(cls, document: Document) -> Entry:
        return cls(
            document["account_id"],
            document["account"],
            document["direction"],
            _integer(document["amount"]),
            _optional_integer(document.get("balance_after")),
        )


@dataclass(frozen=True, slots=True)
class Transaction:
    """A posted transaction. `type` is one of `topup`, `bonus`, `spend`, `transfer`, `journal`,
    `reversal`, `expiry`; `reverses` names the transaction a reversal reverses; `hold_id` the
    hold a capture took.

    `replayed` is true when this is the stored answer of an earlier request with the same
    idempotency key (the header `Idempotent-Replayed: true`): the money moved then, not now.
    """

    id: str
    type: str
    asset: str
    amount: int
    wallet_id: str
    balance_after: int
    reference: str | None
    metadata: dict[str, Any] | None
    created_at: datetime
    reverses: str | None
    hold_id: str | None
    entries: tuple[Entry, ...]
    replayed: bool = False
    raw: Document = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_document(cls, document: Document, replayed: bool = False) -> Transaction:
        return cls(
            id=document["id"],
            type=document["type"],
            asset=document["asset"],
            amount=_integer(document["amount"]),
            wallet_id=document["wallet_id"],
            balance_after=_integer(document["balance_after"]),
            reference=_optional_text(document.get("reference")),
            metadata=_metadata(document.get("metadata")),
            created_at=timestamp(document["created_at"]),
            reverses=_optional_text(document.get("reverses")),
            hold_id=_optional_text(document.get("hold_id")),
            entries=tuple(Entry.from_document(entry) for entry in document.get("entries", ())),
            replayed=replayed,
            raw=document,
        )


@dataclass(frozen=True, slots=True)
class Hold:
    """A reservation of funds. `status` is `pending`, `captured`, `voided` or `expired`;
    `transaction_id` is the capture's transaction. `replayed` as for Transaction."""

    id: str
    wallet_id: str
    asset: str
    amount: int
    captured_amount: int
    status: str
    expires_at: datetime
    reference: str | None
    metadata: dict[str, Any] | None
    transaction_id: str | None
    created_at: datetime
    updated_at: datetime
    replayed: bool = False
    raw: Document = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_document(cls, document: Document, replayed: bool = False) -> Hold:
        return cls(
            id=document["id"],
            wallet_id=document["wallet_id"],
            asset=document["asset"],
            amount=_integer(document["amount"]),
            captured_amount=_integer(document["captured_amount"]),
            status=document["status"],
            expires_at=timestamp(document["expires_at"]),
            reference=_optional_text(document.get("reference")),
            metadata=_metadata(document.get("metadata")),
            transaction_id=_optional_text(document.get("transaction_id")),
            created_at=timestamp(document["created_at"]),
            updated_at=timestamp(document["updated_at"]),
            replayed=replayed,
            raw=document,
        )


@dataclass(frozen=True, slots=True)
class Lot:
    """An expiring credit: `remaining` is what is left of it that is neither spent nor held."""

    transaction_id: str
    amount: int
    remaining: int
    expires_at: datetime
    created_at: datetime

    @classmethod
    def from_document(cls, document: Document) -> Lot:
        return cls(
            document["transaction_id"],
            _integer(document["amount"]),
            _integer(document["remaining"]),
            timestamp(document["expires_at"]),
            timestamp(document["created_at"]),
        )


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a list, newest first; `next_cursor` asks for the next page (None: the last)."""

    data: tuple[T, ...]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class Event:
    """An event of the feed: `type` is `transaction.posted`, `hold.created`, `hold.captured`,
    `hold.voided` or `hold.expired`; `data` is the Transaction or the Hold as a document
    (`transaction` and `hold` read it)."""

    id: str
    type: str
    created_at: datetime
    data: dict[str, Any]

    @classmethod
    def from_document(cls, document: Document) -> Event:
        return cls(
            document["id"], document["type"], timestamp(document["created_at"]), dict(document["data"])
        )

    @property
    def transaction(self) -> Transaction | None:
        """The Transaction of a `transaction.posted` event, else None."""
        return Transaction.from_document(self.data) if self.type == "transaction.posted" else None

    @property
    def hold(self) -> Hold | None:
        """The Hold of a `hold.*` event, else None."""
        return Hold.from_document(self.data) if self.type.startswith("hold.") else None


@dataclass(frozen=True, slots=True)
class EventPage:
    """A page of the feed. `next_cursor` is never None: ask again with it to see what follows."""

    data: tuple[Event, ...]
    next_cursor: str


@dataclass(frozen=True, slots=True)
class BalanceAt:
    """A wallet's ledger balance after every transaction committed at or before `at`."""

    wallet_id: str
    at: datetime
    balance: int

    @classmethod
    def from_document(cls, document: Document) -> BalanceAt:
        return cls(document["wallet_id"], timestamp(document["at"]), _integer(document["balance"]))


@dataclass(frozen=True, slots=True)
class Statement:
    """A wallet's transactions at or after `start` and before `end`, oldest first (the API's
    `from` and `to`); `opening_balance + total_credits - total_debits = closing_balance`."""

    wallet_id: str
    asset: str
    start: datetime
    end: datetime
    opening_balance: int
    closing_balance: int
    total_credits: int
    total_debits: int
    transactions: tuple[Transaction, ...]
    raw: Document = field(repr=False, compare=False)

    @classmethod
    def from_document(cls, document: Document) -> Statement:
        return cls(
            wallet_id=document["wallet_id"],
            asset=document["asset"],
            start=timestamp(document["from"]),
            end=timestamp(document["to"]),
            opening_balance=_integer(document["opening_balance"]),
            closing_balance=_integer(document["closing_balance"]),
            total_credits=_integer(document["total_credits"]),
            total_debits=_integer(document["total_debits"]),
            transactions=tuple(Transaction.from_document(item) for item in document["transactions"]),
            raw=document,
        )


@dataclass(frozen=True, slots=True)
class Verification:
    """The ledger's invariants, checked on one snapshot."""

    ok: bool
    accounts_checked: int
    transactions_checked: int
    problems: tuple[dict[str, Any], ...]

    @classmethod
    def from_document(cls, document: Document) -> Verification:
        return cls(
            bool(document["ok"]),
            _integer(document["accounts_checked"]),
            _integer(document["transactions_checked"]),
            tuple(dict(problem) for problem in document["problems"]),
        )


@dataclass(frozen=True, slots=True)
class BatchResult:
    """The answer to one item of a batch, in item order: its `transaction` when it was posted
    (status 201), else its `error` (a decline, as the single request would raise it).
    `idempotency_key` is the item's key, given or made."""

    status: int
    replayed: bool
    idempotency_key: str
    transaction: Transaction | None
    error: WalletError | None

    @property
    def ok(self) -> bool:
        return self.transaction is not None

    @classmethod
    def from_document(cls, document: Document, idempotency_key: str) -> BatchResult:
        status = _integer(document["status"])
        replayed = bool(document["replayed"])
        body = document["body"]
        if status < 400:
            return cls(status, replayed, idempotency_key, Transaction.from_document(body, replayed), None)
        code = body.get("code")
        error_type = error_class(status, code if isinstance(code, str) else None)
        error = error_type(body, status=status, idempotency_key=idempotency_key, replayed=replayed)
        return cls(status, replayed, idempotency_key, None, error)
