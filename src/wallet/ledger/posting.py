"""Money movements as postings, and the one call that posts them: ledger.post (ledger/sql/post.sql).

Every movement is a `Movement`: a list of postings (debit account, credit account, amount) of
one asset. Top-up, bonus, spend, transfer and journal are short functions that build one. The
core (`post`) takes any number of them, each with its idempotency key, and posts them in one
database transaction and one round trip; the outcome of each is its own.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from wallet._ids import uuid7
from wallet.ledger import transactions
from wallet.ledger.errors import SameAccount
from wallet.ledger.limits import AMOUNT_MAX, AMOUNT_MIN, GROUP_SIZE_MAX, POSTINGS_MAX
from wallet.ledger.transactions import EntryRecord, TransactionRecord, account_label
from wallet.types import Connection


class SystemAccount(enum.StrEnum):
    TREASURY = "treasury"  # issues top-ups
    BONUS = "bonus"  # issues bonuses
    REVENUE = "revenue"  # collects spends


class TransactionType(enum.StrEnum):
    TOPUP = "topup"
    BONUS = "bonus"
    SPEND = "spend"
    TRANSFER = "transfer"
    JOURNAL = "journal"
    REVERSAL = "reversal"
    EXPIRY = "expiry"  # posted by the ledger itself when a lot expires (ledger/sql/lots.sql)


Account = uuid.UUID | SystemAccount  # a wallet, or a system account of the transaction's asset


@dataclass(frozen=True, slots=True)
class Decline:
    code: str
    detail: str


@dataclass(frozen=True, slots=True)
class Posting:
    debit: Account
    credit: Account
    amount: int

    def __post_init__(self) -> None:
        assert AMOUNT_MIN <= self.amount <= AMOUNT_MAX, self.amount
        if self.debit == self.credit:
            raise SameAccount(f"A posting cannot debit and credit {self.debit}.")


@dataclass(frozen=True, slots=True)
class Movement:
    type: TransactionType
    postings: tuple[Posting, ...]
    asset: str | None  # a journal names its asset; the others take their wallet's
    reference: str | None
    metadata_json: str | None  # a JSON object, already rendered canonically
    hold_id: uuid.UUID | None = None  # a capture: the hold it takes
    reverses: uuid.UUID | None = None  # a reversal: the transaction it reverses
    # A decline decided already from what cannot change (the core stores it under the key):
    # such a movement has no postings.
    preset: Decline | None = None
    # A top-up or bonus whose credit expires: the wallet gets a lot of it (ledger/sql/lots.sql).
    expires_at: datetime | None = None

    def __post_init__(self) -> None:
        if self.preset is not None:
            assert not self.postings
            return
        assert 1 <= len(self.postings) <= POSTINGS_MAX, len(self.postings)
        assert any(isinstance(side, uuid.UUID) for p in self.postings for side in (p.debit, p.credit))
        assert (self.asset is None) == (self.type is not TransactionType.JOURNAL), (self.type, self.asset)
        assert (self.reverses is not None) == (self.type is TransactionType.REVERSAL), self
        assert self.hold_id is None or self.type is TransactionType.SPEND, self
        assert self.expires_at is None or self.type in (TransactionType.TOPUP, TransactionType.BONUS), self
        assert self.expires_at is None or self.expires_at.tzinfo is not None, self

    @property
    def wallet_ids(self) -> set[uuid.UUID]:
        return {side for p in self.postings for side in (p.debit, p.credit) if isinstance(side, uuid.UUID)}


def topup(
    wallet_id: uuid.UUID,
    amount: int,
    reference: str | None,
    metadata_json: str | None,
    expires_at: datetime | None = None,
) -> Movement:
    posting = Posting(SystemAccount.TREASURY, wallet_id, amount)
    return Movement(TransactionType.TOPUP, (posting,), None, reference, metadata_json, expires_at=expires_at)


def bonus(
    wallet_id: uuid.UUID,
    amount: int,
    reference: str | None,
    metadata_json: str | None,
    expires_at: datetime | None = None,
) -> Movement:
    posting = Posting(SystemAccount.BONUS, wallet_id, amount)
    return Movement(TransactionType.BONUS, (posting,), None, reference, metadata_json, expires_at=expires_at)


def spend(wallet_id: uuid.UUID, amount: int, reference: str | None, metadata_json: str | None) -> Movement:
    posting = Posting(wallet_id, SystemAccount.REVENUE, amount)
    return Movement(TransactionType.SPEND, (posting,), None, reference, metadata_json)


def transfer(
    source_wallet_id: uuid.UUID,
    target_wallet_id: uuid.UUID,
    amount: int,
    reference: str | None,
    metadata_json: str | None,
) -> Movement:
    posting = Posting(source_wallet_id, target_wallet_id, amount)
    return Movement(TransactionType.TRANSFER, (posting,), None, reference, metadata_json)


def journal(
    asset: str, postings: Sequence[Posting], reference: str | None, metadata_json: str | None
) -> Movement:
    return Movement(TransactionType.JOURNAL, tuple(postings), asset, reference, metadata_json)


def capture(
    hold_id: uuid.UUID, wallet_id: uuid.UUID, amount: int, reference: str | None, metadata_json: str | None
) -> Movement:
    """A spend of (part of) what a hold reserved; the rest of the hold is released."""
    posting = Posting(wallet_id, SystemAccount.REVENUE, amount)
    return Movement(TransactionType.SPEND, (posting,), None, reference, metadata_json, hold_id=hold_id)


def reversal(
    original: TransactionRecord, amount: int, reference: str | None, metadata_json: str | None
) -> Movement:
    """The mirror of a transaction's postings (each debit becomes a credit and back), for
    `amount`: a transaction of one posting may be reversed in part, a journal only whole."""
    pairs = [original.entries[index : index + 2] for index in range(0, len(original.entries), 2)]
    postings = []
    for debit, credit in pairs:
        assert debit.direction == "debit" and credit.direction == "credit" and debit.amount == credit.amount
        posted = amount if len(pairs) == 1 else debit.amount
        postings.append(Posting(_entry_account(credit), _entry_account(debit), posted))
    assert sum(p.amount for p in postings) == amount, (amount, original.amount)
    movement_type = TransactionType.REVERSAL
    return Movement(movement_type, tuple(postings), None, reference, metadata_json, reverses=original.id)


def _entry_account(entry: EntryRecord) -> Account:
    if entry.balance_after is not None:
        return entry.account_id
    return SystemAccount(entry.account.split(":", 1)[0])


def declined(movement_type: TransactionType, code: str, detail: str) -> Movement:
    """A movement the core only stores as declined (see Movement.preset)."""
    return Movement(movement_type, (), None, None, None, preset=Decline(code, detail))


@dataclass(frozen=True, slots=True)
class Request:
    """A movement as a client asked for it: under its API key and Idempotency-Key, with the
    fingerprint of the request (what "the same request" means for a replay)."""

    api_key_id: uuid.UUID
    idempotency_key: str
    fingerprint: bytes
    movement: Movement
    transaction_id: uuid.UUID = field(default_factory=uuid7)

    def __post_init__(self) -> None:
        assert len(self.fingerprint) == 32 and self.idempotency_key

    @property
    def key(self) -> tuple[uuid.UUID, str]:
        return (self.api_key_id, self.idempotency_key)


class Result(enum.StrEnum):
    POSTED = "posted"  # a transaction, new or replayed
    DECLINED = "declined"  # a business decline, new or replayed
    REUSED = "reused"  # the key was used for another request
    DEFERRED = "deferred"  # a wallet it needs was held by another transaction: post it again
    STORED = "stored"  # the replay of a response stored whole (made before the posting core)


@dataclass(frozen=True, slots=True)
class Outcome:
    result: Result
    replayed: bool
    transaction: TransactionRecord | None = None
    decline: Decline | None = None
    stored_status: int | None = None
    stored_body: str | None = None

    def __post_init__(self) -> None:
        assert (self.transaction is not None) == (self.result is Result.POSTED)
        assert (self.decline is not None) == (self.result is Result.DECLINED)
        assert (self.stored_body is not None) == (self.result is Result.STORED)


POST = """
SELECT item_state, item_asset, item_code, item_detail, item_stored_id, item_stored_status,
    item_stored_body, created, entry_accounts, entry_balances
FROM ledger.post(
    $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20, $21)
"""


@dataclass(slots=True)
class _Arguments:
    """The arrays ledger.post takes (see its header in ledger/sql/post.sql)."""

    api_key_ids: list[uuid.UUID] = field(default_factory=list)
    keys: list[str] = field(default_factory=list)
    fingerprints: list[bytes] = field(default_factory=list)
    transaction_ids: list[uuid.UUID] = field(default_factory=list)
    types: list[str] = field(default_factory=list)
    assets: list[str | None] = field(default_factory=list)
    references: list[str | None] = field(default_factory=list)
    metadata: list[str | None] = field(default_factory=list)
    wallet_ids: list[uuid.UUID] = field(default_factory=list)
    posting_items: list[int] = field(default_factory=list)
    debit_wallets: list[int] = field(default_factory=list)
    debit_systems: list[str | None] = field(default_factory=list)
    credit_wallets: list[int] = field(default_factory=list)
    credit_systems: list[str | None] = field(default_factory=list)
    amounts: list[int] = field(default_factory=list)
    hold_ids: list[uuid.UUID | None] = field(default_factory=list)
    reverses: list[uuid.UUID | None] = field(default_factory=list)
    preset_codes: list[str | None] = field(default_factory=list)
    preset_details: list[str | None] = field(default_factory=list)
    expires_at: list[datetime | None] = field(default_factory=list)

    def values(self) -> tuple[list[Any] | None, ...]:
        """In ledger.post's order; an optional array none of the items uses is NULL."""

        def used(values: list[Any]) -> list[Any] | None:
            return values if any(value is not None for value in values) else None

        return (
            self.api_key_ids, self.keys, self.fingerprints, self.transaction_ids, self.types,
            self.assets, self.references, self.metadata, self.wallet_ids, self.posting_items,
            self.debit_wallets, self.debit_systems, self.credit_wallets, self.credit_systems,
            self.amounts, used(self.hold_ids), used(self.reverses), used(self.preset_codes),
            used(self.preset_details), used(self.expires_at),
        )  # fmt: skip


def _arguments(requests: Sequence[Request]) -> _Arguments:
    arguments = _Arguments()
    wallet_ids = sorted({wallet_id for request in requests for wallet_id in request.movement.wallet_ids})
    position = {wallet_id: number for number, wallet_id in enumerate(wallet_ids, start=1)}
    arguments.wallet_ids = wallet_ids
    for number, request in enumerate(requests, start=1):
        movement = request.movement
        arguments.api_key_ids.append(request.api_key_id)
        arguments.keys.append(request.idempotency_key)
        arguments.fingerprints.append(request.fingerprint)
        arguments.transaction_ids.append(request.transaction_id)
        arguments.types.append(movement.type.value)
        arguments.assets.append(movement.asset)
        arguments.references.append(movement.reference)
        arguments.metadata.append(movement.metadata_json)
        arguments.hold_ids.append(movement.hold_id)
        arguments.reverses.append(movement.reverses)
        arguments.preset_codes.append(movement.preset.code if movement.preset else None)
        arguments.preset_details.append(movement.preset.detail if movement.preset else None)
        arguments.expires_at.append(movement.expires_at)
        for posting in movement.postings:
            arguments.posting_items.append(number)
            for side, wallets, systems in (
                (posting.debit, arguments.debit_wallets, arguments.debit_systems),
                (posting.credit, arguments.credit_wallets, arguments.credit_systems),
            ):
                if isinstance(side, uuid.UUID):
                    wallets.append(position[side])
                    systems.append(None)
                else:
                    wallets.append(0)
                    systems.append(side.value)
            arguments.amounts.append(posting.amount)
    return arguments


def _posted_record(
    request: Request,
    asset: str,
    created_at: datetime,
    accounts: Sequence[uuid.UUID],
    balances: Sequence[int | None],
) -> TransactionRecord:
    """The record of a transaction just posted, from the request and what ledger.post returned;
    the same record a read of it gives (tests/ledger/test_posting.py checks it)."""
    movement = request.movement
    assert len(accounts) == len(balances) == 2 * len(movement.postings)
    entries: list[EntryRecord] = []
    for number, posting in enumerate(movement.postings):
        for offset, (side, direction) in enumerate(((posting.debit, "debit"), (posting.credit, "credit"))):
            account_id, balance = accounts[2 * number + offset], balances[2 * number + offset]
            kind = None if isinstance(side, uuid.UUID) else side.value
            assert (account_id == side) if kind is None else (balance is None), (account_id, side, balance)
            label = account_label(account_id, kind, asset)
            entries.append(EntryRecord(account_id, label, direction, posting.amount, balance))
    debited = [p.debit for p in movement.postings if isinstance(p.debit, uuid.UUID)]
    credited = [p.credit for p in movement.postings if isinstance(p.credit, uuid.UUID)]
    return TransactionRecord(
        id=request.transaction_id,
        type=movement.type.value,
        asset=asset,
        amount=sum(posting.amount for posting in movement.postings),
        wallet_id=(debited or credited)[0],
        reference=movement.reference,
        metadata_json=movement.metadata_json,
        created_at=created_at,
        entries=tuple(entries),
        reverses=movement.reverses,
        hold_id=movement.hold_id,
    )


async def post(connection: Connection, requests: Sequence[Request], *, wait_for_locks: bool) -> list[Outcome]:
    """Post the requests in one database transaction and one call (plus one read when some are
    replays of earlier transactions); an outcome per request, in order. Two requests with the
    same (API key, Idempotency-Key) must not be in one call. Without `wait_for_locks`, a request
    that needs a wallet another transaction holds is DEFERRED (and nothing of it is stored)."""
    assert 1 <= len(requests) <= GROUP_SIZE_MAX, len(requests)
    assert len({request.key for request in requests}) == len(requests), "one key twice in a group"
    row = await connection.fetchrow(POST, *_arguments(requests).values(), wait_for_locks)
    assert row is not None
    count = len(requests)
    states, assets, codes, details = (
        row["item_state"],
        row["item_asset"],
        row["item_code"],
        row["item_detail"],
    )
    stored_ids = row["item_stored_id"] or [None] * count
    stored_statuses = row["item_stored_status"] or [None] * count
    stored_bodies = row["item_stored_body"] or [None] * count
    accounts, balances = row["entry_accounts"], row["entry_balances"]
    assert len(states) == len(assets) == len(codes) == len(details) == count
    outcomes: list[Outcome | None] = []
    replayed_ids: list[uuid.UUID] = []
    entry_first = 0
    for index, request in enumerate(requests):
        state = states[index]
        if state == "posted":
            entry_last = entry_first + 2 * len(request.movement.postings)
            record = _posted_record(
                request, assets[index], row["created"], accounts[entry_first:entry_last],
                balances[entry_first:entry_last],
            )  # fmt: skip
            entry_first = entry_last
            outcomes.append(Outcome(Result.POSTED, False, transaction=record))
        elif state == "reused":
            outcomes.append(Outcome(Result.REUSED, False))
        elif state == "deferred":
            outcomes.append(Outcome(Result.DEFERRED, False))
        elif codes[index] is not None:
            decline = Decline(codes[index], details[index])
            outcomes.append(Outcome(Result.DECLINED, state == "replayed", decline=decline))
        elif stored_bodies[index] is not None:
            outcomes.append(
                Outcome(
                    Result.STORED,
                    True,
                    stored_status=stored_statuses[index],
                    stored_body=stored_bodies[index],
                )
            )
        else:
            assert state == "replayed" and stored_ids[index] is not None, (state, index)
            outcomes.append(None)
            replayed_ids.append(stored_ids[index])
    assert entry_first == len(accounts), (entry_first, len(accounts))
    if replayed_ids:
        records = await transactions.get_transactions(connection, replayed_ids)
        for index, outcome in enumerate(outcomes):
            if outcome is None:
                outcomes[index] = Outcome(Result.POSTED, True, transaction=records[stored_ids[index]])
    assert all(outcome is not None for outcome in outcomes)
    return outcomes  # type: ignore[return-value]
