"""Request and response models. Requests are validated with them; responses are documented with
them (the ledger renders Transaction documents itself, so replays are byte-identical)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainValidator,
    WithJsonSchema,
    model_validator,
)

from wallet import _json, _time
from wallet.idempotency import canonical_json
from wallet.ledger.limits import (
    AMOUNT_MAX,
    AMOUNT_MIN,
    BATCH_SIZE_MAX,
    HOLD_EXPIRY_SECONDS_DEFAULT,
    HOLD_EXPIRY_SECONDS_MAX,
    LOT_EXPIRY_YEARS_MAX,
    POSTINGS_MAX,
)

METADATA_SIZE_MAX = 4096
METADATA_DEPTH_MAX = 8
# Printable text: no C0/C1 control characters, no DEL.
TEXT_PATTERN = r"^[^\x00-\x1f\x7f-\x9f]+$"

Amount = Annotated[
    int,
    Field(strict=True, ge=AMOUNT_MIN, le=AMOUNT_MAX, description="Integer, smallest unit of the asset."),
]
OwnerId = Annotated[str, Field(min_length=1, max_length=128, pattern=TEXT_PATTERN)]
AssetCode = Annotated[str, Field(pattern=r"^[A-Z][A-Z0-9_]{1,15}$")]
Reference = Annotated[str, Field(min_length=1, max_length=128, pattern=TEXT_PATTERN)]


def check_metadata(value: dict[str, Any] | None) -> dict[str, Any] | None:
    """The limits of every metadata object, whichever request carries it: nesting first, measured
    without recursion (so any depth the body allows is refused, not a crash), then the size of
    its compact JSON, then NUL characters in its decoded keys and values (PostgreSQL's jsonb
    cannot store them)."""
    if value is None:
        return None
    if _json.depth(value) > METADATA_DEPTH_MAX:
        raise ValueError(f"metadata must nest at most {METADATA_DEPTH_MAX} levels")
    if len(canonical_json(value)) > METADATA_SIZE_MAX:
        raise ValueError(f"metadata must be at most {METADATA_SIZE_MAX} bytes of JSON")
    if any("\x00" in text for text in _json.strings(value)):
        raise ValueError("metadata must not contain NUL characters")
    return value


Metadata = Annotated[
    dict[str, Any] | None,
    AfterValidator(check_metadata),
    Field(description=f"A JSON object of at most {METADATA_SIZE_MAX} bytes and {METADATA_DEPTH_MAX} levels."),
]


def check_expires_at(value: object) -> datetime:
    """An RFC 3339 date-time with an offset, later than now and at most LOT_EXPIRY_YEARS_MAX
    years ahead."""
    moment = _time.parse_timestamp(value)
    now = datetime.now(UTC)
    if moment <= now:
        raise ValueError("must be later than now")
    if moment > _time.years_later(now, LOT_EXPIRY_YEARS_MAX):
        raise ValueError(f"must be at most {LOT_EXPIRY_YEARS_MAX} years ahead")
    return moment


ExpiresAt = Annotated[
    datetime,
    PlainValidator(check_expires_at),
    WithJsonSchema(
        {
            "type": "string",
            "format": "date-time",
            "description": "RFC 3339 with an offset; later than now, at most "
            f"{LOT_EXPIRY_YEARS_MAX} years ahead. The credit becomes a lot that expires then.",
        }
    ),
]


Instant = Annotated[
    datetime,
    PlainValidator(_time.parse_timestamp),
    WithJsonSchema(
        {
            "type": "string",
            "format": "date-time",
            "description": "RFC 3339 with an offset, such as 2030-01-31T23:59:59Z.",
        }
    ),
]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AssetCreate(_Request):
    code: AssetCode
    name: Annotated[str, Field(min_length=1, max_length=128, pattern=TEXT_PATTERN)]


class WalletCreate(_Request):
    owner_id: OwnerId
    asset: AssetCode


class MovementRequest(_Request):
    amount: Amount
    reference: Reference | None = None
    metadata: Metadata = None


class CreditRequest(MovementRequest):
    """A top-up or bonus: it may expire."""

    expires_at: ExpiresAt | None = None


class TransferRequest(MovementRequest):
    from_wallet_id: uuid.UUID
    to_wallet_id: uuid.UUID


SystemAccountName = Literal["treasury", "bonus", "revenue"]


class JournalPosting(_Request):
    from_: uuid.UUID | SystemAccountName = Field(
        alias="from", description="A wallet id, or the asset's system account treasury, bonus or revenue."
    )
    to: uuid.UUID | SystemAccountName = Field(description="As `from`; not the same account.")
    amount: Amount

    @model_validator(mode="after")
    def _two_accounts(self) -> JournalPosting:
        if self.from_ == self.to:
            raise ValueError("a posting needs two different accounts")
        return self


class JournalRequest(_Request):
    asset: AssetCode
    postings: list[JournalPosting] = Field(min_length=1, max_length=POSTINGS_MAX)
    reference: Reference | None = None
    metadata: Metadata = None

    @model_validator(mode="after")
    def _touches_a_wallet(self) -> JournalRequest:
        if not any(isinstance(side, uuid.UUID) for p in self.postings for side in (p.from_, p.to)):
            raise ValueError("at least one posting must debit or credit a wallet")
        return self


class HoldCreate(_Request):
    amount: Amount
    expires_in_seconds: Annotated[
        int, Field(strict=True, ge=1, le=HOLD_EXPIRY_SECONDS_MAX, description="Default 900.")
    ] = HOLD_EXPIRY_SECONDS_DEFAULT
    reference: Reference | None = None
    metadata: Metadata = None


class HoldCapture(_Request):
    amount: Amount | None = Field(default=None, description="At most the hold's amount; default all of it.")
    reference: Reference | None = None
    metadata: Metadata = None


class HoldVoid(_Request):
    pass


class Reverse(_Request):
    amount: Amount | None = Field(default=None, description="Default: what is left to reverse.")
    reference: Reference | None = None
    metadata: Metadata = None


class Hold(BaseModel):
    id: uuid.UUID
    wallet_id: uuid.UUID
    asset: str
    amount: int
    captured_amount: int
    status: Literal["pending", "captured", "voided", "expired"]
    expires_at: str
    reference: str | None
    metadata: dict[str, Any] | None
    transaction_id: uuid.UUID | None
    created_at: str
    updated_at: str


class HoldPage(BaseModel):
    data: list[Hold]
    next_cursor: str | None


IdempotencyKeyText = Annotated[
    str,
    Field(
        min_length=1,
        max_length=255,
        pattern=r"^[\x20-\x7e]+$",
        description="As the Idempotency-Key header of the single request: 1-255 printable ASCII characters.",
    ),
]


class BatchCreditItem(CreditRequest):
    op: Literal["topup", "bonus"]
    wallet_id: uuid.UUID
    idempotency_key: IdempotencyKeyText


class BatchSpendItem(MovementRequest):
    op: Literal["spend"]
    wallet_id: uuid.UUID
    idempotency_key: IdempotencyKeyText


class BatchTransferItem(TransferRequest):
    op: Literal["transfer"]
    idempotency_key: IdempotencyKeyText


class BatchJournalItem(JournalRequest):
    op: Literal["journal"]
    idempotency_key: IdempotencyKeyText


BATCH_ITEM_MODELS: dict[str, type[_Request]] = {
    "topup": BatchCreditItem,
    "bonus": BatchCreditItem,
    "spend": BatchSpendItem,
    "transfer": BatchTransferItem,
    "journal": BatchJournalItem,
}


class BatchRequest(_Request):
    """Documents the batch body; each item is validated by its `op` (BATCH_ITEM_MODELS)."""

    items: list[
        Annotated[
            BatchCreditItem | BatchSpendItem | BatchTransferItem | BatchJournalItem, Field(discriminator="op")
        ]
    ] = Field(min_length=1, max_length=BATCH_SIZE_MAX)


class BatchResult(BaseModel):
    status: int
    replayed: bool
    body: dict[str, Any] = Field(description="The Transaction, or the problem document.")


class BatchResponse(BaseModel):
    results: list[BatchResult]


class Asset(BaseModel):
    code: str
    name: str
    created_at: str


class AssetList(BaseModel):
    data: list[Asset]


class Expiry(BaseModel):
    amount: int
    expires_at: str


class LedgerHead(BaseModel):
    hash: str = Field(
        description="SHA-256 (hex) of the wallet's last entry, chained over every entry before it."
    )
    entries: int = Field(description="How many entries the chain has.")


class Wallet(BaseModel):
    id: uuid.UUID
    owner_id: str
    asset: str
    balance: int
    held: int = Field(description="The sum of the wallet's pending holds not past their expiry.")
    available: int = Field(description="balance - held: what a debit may take.")
    next_expiry: Expiry | None = Field(description="The soonest-expiring credit lot, or null.")
    ledger_head: LedgerHead = Field(
        description="The head of the wallet's hash chain: record it to prove later that the history "
        "up to it was not rewritten (GET /v1/ledger/verify?deep=true checks every chain)."
    )
    created_at: str
    updated_at: str


class WalletList(BaseModel):
    data: list[Wallet]


class Lot(BaseModel):
    transaction_id: uuid.UUID = Field(description="The credit that made the lot.")
    amount: int
    remaining: int = Field(description="What is left of it that is neither spent nor held.")
    expires_at: str
    created_at: str


class LotList(BaseModel):
    data: list[Lot]


class Entry(BaseModel):
    account_id: uuid.UUID
    account: str = Field(description="A wallet id, or a system account such as `treasury:GOLD`.")
    direction: Literal["debit", "credit"]
    amount: int
    balance_after: int | None = Field(description="For user wallets; null for system accounts.")


class Transaction(BaseModel):
    id: uuid.UUID
    type: Literal["topup", "bonus", "spend", "transfer", "journal", "reversal", "expiry"]
    asset: str
    amount: int
    wallet_id: uuid.UUID
    balance_after: int
    reference: str | None
    metadata: dict[str, Any] | None
    created_at: str
    reverses: uuid.UUID | None = Field(description="A reversal: the transaction it reverses.")
    hold_id: uuid.UUID | None = Field(description="A capture: the hold it took.")
    entries: list[Entry]


class TransactionPage(BaseModel):
    data: list[Transaction]
    next_cursor: str | None


class BalanceAt(BaseModel):
    wallet_id: uuid.UUID
    at: str = Field(description="The instant asked for, in UTC.")
    balance: int = Field(description="After every transaction at or before `at`; 0 before the first.")


class Statement(BaseModel):
    wallet_id: uuid.UUID
    asset: str
    from_: str = Field(alias="from", description="Transactions at or after this instant, in UTC.")
    to: str = Field(description="And before this one (the time of the request when not given).")
    opening_balance: int = Field(description="The balance just before `from`.")
    closing_balance: int = Field(description="opening_balance + total_credits - total_debits.")
    total_credits: int = Field(description="The sum of the wallet's credit entries in the window.")
    total_debits: int = Field(description="The sum of the wallet's debit entries in the window.")
    transactions: list[Transaction] = Field(description="Oldest first, each once.")


class Verification(BaseModel):
    ok: bool
    accounts_checked: int
    transactions_checked: int
    problems: list[dict[str, Any]]


class SystemBalances(BaseModel):
    treasury: int = Field(description="Negative: what top-ups have issued.")
    bonus: int = Field(description="Negative: what bonuses have issued.")
    revenue: int = Field(description="Positive: what spends have collected.")
    breakage: int = Field(description="Positive: what expired credits took back.")


class AssetBalances(BaseModel):
    asset: str
    wallet_count: int = Field(description="User wallets of the asset.")
    user_total: int = Field(description="Sum of the balances of the asset's user wallets.")
    system: SystemBalances


class LedgerBalances(BaseModel):
    """Per asset; `user_total` plus the three system balances is always 0."""

    data: list[AssetBalances]


class Health(BaseModel):
    status: str


class ProblemError(BaseModel):
    loc: list[str | int]
    msg: str


class ProblemDocument(BaseModel):
    type: str
    title: str
    status: int
    detail: str
    code: str
    errors: list[ProblemError] | None = None


class Event(BaseModel):
    id: uuid.UUID
    type: Literal["transaction.posted", "hold.created", "hold.captured", "hold.voided", "hold.expired"]
    created_at: str
    data: dict[str, Any] = Field(description="The Transaction (transaction.posted) or the Hold.")


class EventPage(BaseModel):
    data: list[Event]
    next_cursor: str = Field(description="Never null: the position after the last event shown.")
