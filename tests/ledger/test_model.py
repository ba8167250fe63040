"""A model-based test of the money movements: Hypothesis drives the real service with random
top-ups and bonuses (some of them expiring), spends, transfers, journals and batches of them,
holds (placed, captured, voided, expired), reversals, the clock passing credits' expiries, the
expiry sweep, replays and misuses of Idempotency-Keys (a batch item replayed as its single
request), and invalid amounts. After every step it compares the service with a small in-memory
model: each wallet's balance, held, available and next expiry, its lots (GET .../lots), the
`expiry` transactions its history must show, and the ledger invariants (verify). Every
transaction a 201 returns reads back byte for byte the same.

The model keeps each wallet's lots (what remains of each, when it expires, the credit that made
it) and the rules of expiring credits: a debit takes from the open lots soonest-expiring first
(at one expiry, the older lot first), then from non-expiring funds; a transfer or journal
posting gives the receiver a lot per expiry of the parts it took; a hold takes its parts when
placed, a void gives them back, a capture consumes what it spends of them and gives back the
rest; a reversal of a debit gives back the debit's non-expiring part first, then its lot parts
last-taken first, and a reversal of a credit takes first from the lots that credit made. Every
call that reaches the posting core (or places or voids a hold) for a wallet, a replay or a
decline too, first gives back the parts of the wallet's expired holds and posts an `expiry` of
what remains of each of its due lots, in the call's own database transaction; a part given back
to a lot that has expired expires at the end of the call. Until then a due lot (and the parts
of an expired hold) are as the service shows them: the lot is listed no more and is no next
expiry, but stays in the balance (and available); the parts are in no lot and in no hold.

Time is not waited for. A hold expires by moving its `expires_at` into the past in the
database; credits expire on a short horizon of a few instants, and the clock passes one of them
the same way: every lot due by then gets its `expires_at` (and its wallet its `lot_expires_at`)
moved into the past. One rule has a hold outlive the lots it took from, the rarest of these
paths. The server runs on a database of its own with its sweeper off, so the expiries are
posted only by movements and by the sweep this test runs."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    precondition,
    rule,
    run_state_machine_as_test,
)

from support import Server, assert_ledger_ok, start_server, wallet_command
from wallet.ledger import lots as ledger_lots

ASSETS = ("GOLD", "POINTS")
JSON_MEDIA_TYPE = "application/json"
PROBLEM_MEDIA_TYPE = "application/problem+json"
# Responses the contract says are stored for replay: successes and these business declines.
STORED_DECLINES = frozenset(
    {"insufficient_funds", "balance_limit_exceeded", "asset_mismatch", "wallet_not_found"}
)
# Amounts the contract rejects with 422 validation_error (a sample of its list).
INVALID_AMOUNTS: tuple[Any, ...] = (0, "5", -5, 10.5, True, None)
CREDITED_AMOUNTS = st.integers(1, 1000)
SPENT_AMOUNTS = st.integers(1, 1200)
SHARED_AMOUNTS = st.integers(1, 300)
WALLETS_MAX = 6
# The horizon of expiring credits: this many instants, EXPIRY_SPACING apart from an hour after
# the machine starts (so none comes by itself while it runs), often shared by several lots.
EXPIRY_INSTANTS = 4
EXPIRY_START = timedelta(hours=1)
EXPIRY_SPACING = timedelta(seconds=90, microseconds=123457)
# How a credit writes its expires_at: the same instant at several UTC offsets.
EXPIRY_OFFSETS = (UTC, timezone(timedelta(hours=2)), timezone(-timedelta(hours=5, minutes=30)))
EXPIRES = st.none() | st.tuples(st.integers(0, EXPIRY_INSTANTS - 1), st.integers(0, len(EXPIRY_OFFSETS) - 1))
# Where the clock puts the instants it passes: this long before now.
PASSED_BY = timedelta(seconds=1)
HISTORY_PAGE_MAX = 200
# GET /v1/ledger/verify after every this many steps (it is fast enough on the test database).
VERIFY_EVERY_STEPS = 1
MODEL_SETTINGS = settings(
    max_examples=25,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

Outcome = tuple[int, str]  # (status, problem code), code "" for a 201
CREATED: Outcome = (201, "")
INSUFFICIENT: Outcome = (409, "insufficient_funds")
# (debited wallet, credited wallet, amount); None: a system account
Posting = tuple[str | None, str | None, int]


@pytest.fixture(scope="module")
def model_server(create_database: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server on a seeded database of its own, with the expiry sweeper off: no other test's
    server sweeps the lots this test makes due, and no sweep runs but the test's own."""
    database_url = create_database()
    wallet_command("db", "seed", database_url=database_url)
    log_path: Path = tmp_path_factory.mktemp("model") / "server.log"
    running = start_server(database_url, log_path, {"WALLET_EXPIRY_SWEEP_SECONDS": "0"})
    try:
        yield running
    finally:
        running.stop()


@dataclass(frozen=True)
class SentRequest:
    """A money-moving request whose response the service stored under its Idempotency-Key."""

    method: str
    path: str
    body: dict[str, Any]
    status: int
    content: bytes
    wallet_ids: tuple[str, ...]


def new_key() -> str:
    return f"model-{uuid.uuid4()}"


def now() -> datetime:
    return datetime.now(UTC)


def timestamp_text(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def problem_code(response: httpx.Response) -> str:
    if response.status_code < 400:
        return ""
    assert response.headers["content-type"] == PROBLEM_MEDIA_TYPE, response.headers
    document = response.json()
    assert document["status"] == response.status_code, document
    code: str = document["code"]
    return code


def wallets_of(postings: Iterable[Posting]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(side for posting in postings for side in posting[:2] if side is not None))


@dataclass(eq=False)
class ModelLot:
    """A lot: what a credit with an expiry (or a transfer's part of one) gave a wallet. Lots
    are numbered as they are made, as the service's lot ids are: at one expiry, the older first."""

    number: int
    wallet_id: str
    expires_at: datetime
    amount: int
    remaining: int  # neither spent nor held
    origin: str = ""  # the transaction that made it (known once it is posted)

    def due(self, moment: datetime) -> bool:
        return self.expires_at <= moment


LotPart = tuple[ModelLot, int]


@dataclass
class ModelHold:
    wallet_id: str
    amount: int
    parts: list[LotPart]  # what it took from lots, in the order taken
    status: str = "pending"
    parts_out: bool = False  # expired, and its parts not given back yet: the wallet's next call does


@dataclass
class ModelTransaction:
    id: str
    type: str
    amount: int
    postings: list[Posting]
    uses: list[LotPart]  # what its debits took from lots, in the order taken
    reversed: int = 0
    given_back: dict[str, int] = field(default_factory=dict)  # per wallet, by its reversals


@dataclass(frozen=True)
class Seen:
    """A transaction a wallet's history must show: `call` numbers the database transaction
    (of a request or a sweep) that posted it."""

    type: str
    amount: int
    balance_after: int
    call: int
    transaction_id: str | None  # None: an expiry (its id is the service's)
    lot: ModelLot | None = None  # an expiry's lot
    lot_expires_at: datetime | None = None  # and when that lot expired


@dataclass
class Effects:
    """What a posted item did to lots: the lots it made and the parts its debits took."""

    lots: list[ModelLot] = field(default_factory=list)
    uses: list[LotPart] = field(default_factory=list)
    given_back: dict[str, int] = field(default_factory=dict)


@dataclass
class Saved:
    balances: dict[str, int]
    lots: list[tuple[ModelLot, int, int]]
    expiring: dict[str, int]


async def _expire_hold(database_url: str, hold_id: str) -> None:
    """Move a pending hold's expiry (and its wallet's soonest expiry) into the past."""
    connection = await asyncpg.connect(database_url, timeout=10)
    try:
        await connection.execute(
            """
            UPDATE hold SET created_at = least(created_at, now() - interval '2 seconds'),
                expires_at = now() - interval '1 second'
            WHERE id = $1 AND status = 'pending'
            """,
            uuid.UUID(hold_id),
        )
        await connection.execute(
            """
            UPDATE account a SET hold_expires_at = (
                SELECT min(h.expires_at) FROM hold h WHERE h.wallet_id = a.id AND h.status = 'pending')
            WHERE a.id = (SELECT wallet_id FROM hold WHERE id = $1)
            """,
            uuid.UUID(hold_id),
        )
    finally:
        await connection.close()


async def _move_lot_expiries(
    database_url: str, wallet_ids: list[str], moved: dict[datetime, datetime]
) -> None:
    """The clock passes some instants: these wallets' lots expiring at each (spent, held or
    not) expire at its new instant instead, and each wallet's lot_expires_at, the soonest expiry
    of its open lots (what postings, the sweep and the wallet view go by), follows."""
    ids = [uuid.UUID(wallet_id) for wallet_id in wallet_ids]
    connection = await asyncpg.connect(database_url, timeout=10)
    try:
        async with connection.transaction():
            await connection.execute(
                "SELECT FROM account WHERE id = ANY($1::uuid[]) ORDER BY id FOR UPDATE", ids
            )
            await connection.execute(
                """
                UPDATE lot l SET expires_at = v.moved
                FROM unnest($2::timestamptz[], $3::timestamptz[]) AS v(expires_at, moved)
                WHERE l.wallet_id = ANY($1::uuid[]) AND l.expires_at = v.expires_at
                """,
                ids,
                list(moved),
                list(moved.values()),
            )
            await connection.execute(
                """
                UPDATE account a SET lot_expires_at = (
                    SELECT min(l.expires_at) FROM lot l WHERE l.wallet_id = a.id AND l.remaining > 0)
                WHERE a.id = ANY($1::uuid[])
                """,
                ids,
            )
    finally:
        await connection.close()


async def _sweep(database_url: str) -> int:
    """What `wallet lots expire` and the sweeper do: expire everything due."""
    connection = await asyncpg.connect(database_url, timeout=10)
    try:
        return await ledger_lots.sweep(connection)
    finally:
        await connection.close()


class WalletMachine(RuleBasedStateMachine):
    """The model: `balances` (wallet id -> balance), `assets` (wallet id -> asset), `lots`,
    `holds`, `transactions` (with the lot parts their debits took), `history` (wallet id -> the
    transactions it must show) and `sent` (Idempotency-Key -> the stored request and response,
    for retries)."""

    wallets = Bundle("wallets")
    sent_keys = Bundle("sent_keys")
    hold_ids = Bundle("hold_ids")
    transaction_ids = Bundle("transaction_ids")

    def __init__(self, server: Server, tally: Counter[str]) -> None:
        super().__init__()
        self.server = server
        self.tally = tally  # how often the model saw what it is there to see, over all runs
        self.client = server.client()
        self.balances: dict[str, int] = {}
        self.assets: dict[str, str] = {}
        self.sent: dict[str, SentRequest] = {}
        self.holds: dict[str, ModelHold] = {}
        self.transactions: dict[str, ModelTransaction] = {}
        self.lots: list[ModelLot] = []
        self.lot_count = 0
        self.expiring: dict[str, int] = {}  # given back, in the current call, to lots that have expired
        self.history: dict[str, list[Seen]] = {}
        self.history_checked: dict[str, int] = {}  # how much of each history was read back
        self.expired_in_step: set[str] = set()
        self.expiry_ids: list[str] = []
        self.call = 0
        start = now() + EXPIRY_START
        self.horizon = [start + number * EXPIRY_SPACING for number in range(EXPIRY_INSTANTS)]
        self.steps = 0

    def teardown(self) -> None:
        self.client.close()

    # The model's rules.

    def _held(self, wallet_id: str) -> int:
        return sum(
            h.amount for h in self.holds.values() if h.wallet_id == wallet_id and h.status == "pending"
        )

    def _available(self, wallet_id: str) -> int:
        return self.balances[wallet_id] - self._held(wallet_id)

    def _open_lots(self, wallet_id: str) -> list[ModelLot]:
        """The wallet's unexpired lots with something remaining, in the order debits take them."""
        moment = now()
        found = [
            lot
            for lot in self.lots
            if lot.wallet_id == wallet_id and lot.remaining > 0 and not lot.due(moment)
        ]
        return sorted(found, key=lambda lot: (lot.expires_at, lot.number))

    def _new_lot(self, wallet_id: str, expires_at: datetime, amount: int) -> ModelLot:
        self.lot_count += 1
        lot = ModelLot(self.lot_count, wallet_id, expires_at, amount, amount)
        self.lots.append(lot)
        return lot

    def _save(self) -> Saved:
        lots = [(lot, lot.remaining, lot.amount) for lot in self.lots]
        return Saved(dict(self.balances), lots, dict(self.expiring))

    def _restore(self, saved: Saved) -> None:
        self.balances = saved.balances
        for lot, remaining, amount in saved.lots:
            lot.remaining, lot.amount = remaining, amount
        del self.lots[len(saved.lots) :]
        self.expiring = saved.expiring

    def _see(self, wallet_id: str, seen: Seen) -> None:
        self.history[wallet_id].append(seen)

    def _expire_due_lots(self, wallet_id: str) -> None:
        """Each due lot of the wallet with something remaining: an expiry of that to breakage."""
        moment = now()
        due = [
            lot for lot in self.lots if lot.wallet_id == wallet_id and lot.remaining > 0 and lot.due(moment)
        ]
        for lot in sorted(due, key=lambda lot: (lot.expires_at, lot.number)):
            self.balances[wallet_id] -= lot.remaining
            seen = Seen(
                "expiry", lot.remaining, self.balances[wallet_id], self.call, None, lot, lot.expires_at
            )
            self._see(wallet_id, seen)
            self.tally["expiries"] += 1
            lot.remaining = 0
            self.expired_in_step.add(wallet_id)

    def _begin_call(self, wallet_ids: Iterable[str]) -> None:
        """A call of the posting core (or a hold's, or a sweep) takes these wallets: each
        wallet's expired holds give their parts back, then its due lots expire."""
        self.call += 1
        self.expiring = {}
        for wallet_id in dict.fromkeys(wallet_ids):
            for hold in self.holds.values():
                if hold.wallet_id == wallet_id and hold.parts_out:
                    for lot, part in hold.parts:
                        lot.remaining += part
                    hold.parts_out = False
            self._expire_due_lots(wallet_id)

    def _end_call(self, wallet_ids: Iterable[str]) -> None:
        """Parts the call gave back to lots that have expired expire now: no due lot keeps
        anything after a call that took its wallet."""
        for wallet_id in dict.fromkeys(wallet_ids):
            self._expire_due_lots(wallet_id)

    def _take(self, wallet_id: str, amount: int, first_from: str | None = None) -> list[LotPart]:
        """A debit's parts of the wallet's lots: soonest first (the lots `first_from` made
        before any other, for a reversal of a credit); the rest is of non-expiring funds."""
        parts: list[LotPart] = []
        left = amount
        for origin in (first_from, None) if first_from is not None else (None,):
            for lot in self._open_lots(wallet_id):
                if left == 0:
                    break
                if origin is not None and lot.origin != origin:
                    continue
                part = min(left, lot.remaining)
                lot.remaining -= part
                left -= part
                parts.append((lot, part))
        return parts

    def _consume_hold(self, hold: ModelHold, amount: int) -> list[LotPart]:
        """A capture spends its hold's parts in the order taken; the rest goes back to its lots."""
        parts: list[LotPart] = []
        left = amount
        moment = now()
        for lot, part in hold.parts:
            spent = min(left, part)
            if spent:
                parts.append((lot, spent))
                left -= spent
            if part > spent:
                lot.remaining += part - spent
                if lot.due(moment):
                    self.expiring[hold.wallet_id] = self.expiring.get(hold.wallet_id, 0) + part - spent
                    self.tally["parts given back to expired lots"] += 1
        return parts

    def _carry(self, wallet_id: str, parts: list[LotPart]) -> list[ModelLot]:
        """A posting between wallets gives the receiver one lot per expiry of the parts taken."""
        made: dict[datetime, ModelLot] = {}
        for lot, part in parts:
            if lot.expires_at in made:
                made[lot.expires_at].amount += part
                made[lot.expires_at].remaining += part
            else:
                made[lot.expires_at] = self._new_lot(wallet_id, lot.expires_at, part)
                self.tally["lots carried"] += 1
        return list(made.values())

    def _give_back(
        self, original: ModelTransaction, wallet_id: str, given_back: dict[str, int], amount: int
    ) -> None:
        """A reversal credits `amount` back to a wallet the original debited. In the order it
        comes back, what the original took from the wallet is its non-expiring part, then its lot
        parts last taken first; `given_back` of that came back before (earlier reversals, or
        earlier postings of this one)."""
        debited = sum(n for debit, _, n in original.postings if debit == wallet_id)
        parts = [(lot, part) for lot, part in original.uses if lot.wallet_id == wallet_id]
        order: list[tuple[ModelLot | None, int]] = [(None, debited - sum(part for _, part in parts))]
        order += reversed(parts)
        start = given_back.get(wallet_id, 0)
        end = start + amount
        assert end <= debited, (start, amount, debited)
        position = 0
        moment = now()
        for lot, size in order:
            low, high = max(position, start), min(position + size, end)
            if lot is not None and high > low:
                lot.remaining += high - low
                if lot.due(moment):
                    self.expiring[wallet_id] = self.expiring.get(wallet_id, 0) + high - low
                    self.tally["parts given back to expired lots"] += 1
            position += size
        given_back[wallet_id] = end

    def _post_item(
        self,
        postings: list[Posting],
        *,
        expires_at: datetime | None = None,
        hold: ModelHold | None = None,
        original: ModelTransaction | None = None,
    ) -> tuple[Outcome, Effects]:
        """One item of a call, after the call began: its postings in turn, each debit against
        what the wallet has available (less what the call gave back to expired lots). A decline
        undoes the whole item."""
        saved = self._save()
        effects = Effects(given_back=dict(original.given_back) if original is not None else {})
        if hold is not None:
            hold.status = "captured"  # released: what it held is there for the capture
        for debited, credited, amount in postings:
            parts: list[LotPart] = []
            if debited is not None:
                if self._available(debited) - self.expiring.get(debited, 0) < amount:
                    self._restore(saved)
                    if hold is not None:
                        hold.status = "pending"
                    return INSUFFICIENT, Effects()
                self.balances[debited] -= amount
                if hold is not None:
                    parts = self._consume_hold(hold, amount)
                else:
                    parts = self._take(debited, amount, first_from=None if original is None else original.id)
                effects.uses += parts
            if credited is not None:
                self.balances[credited] += amount
                if original is not None:
                    self._give_back(original, credited, effects.given_back, amount)
                elif debited is not None:
                    effects.lots += self._carry(credited, parts)
                elif expires_at is not None:
                    effects.lots.append(self._new_lot(credited, expires_at, amount))
        return CREATED, effects

    def _commit(self, document: dict[str, Any], postings: list[Posting], effects: Effects) -> None:
        """A posted item's transaction, as the service numbered it."""
        transaction_id: str = document["id"]
        for lot in effects.lots:
            lot.origin = transaction_id
        self.transactions[transaction_id] = ModelTransaction(
            transaction_id, document["type"], document["amount"], postings, effects.uses
        )
        for wallet_id in wallets_of(postings):
            seen = Seen(
                document["type"], document["amount"], self.balances[wallet_id], self.call, transaction_id
            )
            self._see(wallet_id, seen)

    def _expect(
        self, postings: list[Posting], expires_at: datetime | None = None
    ) -> tuple[set[Outcome], Effects]:
        """What the contract allows for a movement of one asset (the call began), given the
        model; when it is posted, the model has moved. Several declines at once (the contract
        does not order them): any of them."""
        wallet_ids = wallets_of(postings)
        if len({self.assets[wallet_id] for wallet_id in wallet_ids}) > 1:
            declines = {(422, "asset_mismatch")}
            debited = postings[0][0]
            if len(postings) == 1 and debited is not None and self._available(debited) < postings[0][2]:
                declines.add(INSUFFICIENT)
            return declines, Effects()
        outcome, effects = self._post_item(postings, expires_at=expires_at)
        return {outcome}, effects

    # Helpers.

    def _create_wallet(self, asset: str) -> str:
        response = self.client.post("/v1/wallets", json={"owner_id": f"model-{uuid.uuid4()}", "asset": asset})
        assert response.status_code == 201, response.text
        document = response.json()
        assert document["asset"] == asset and document["balance"] == 0, document
        wallet_id: str = document["id"]
        self.balances[wallet_id] = 0
        self.assets[wallet_id] = asset
        self.history[wallet_id] = []
        self.history_checked[wallet_id] = 0
        return wallet_id

    def _check_read_back(self, content: bytes) -> None:
        """A transaction reads back exactly as the response that posted it showed it."""
        transaction_id = json.loads(content)["id"]
        read = self.client.get(f"/v1/transactions/{transaction_id}")
        assert read.status_code == 200, read.text
        assert read.content == content, (content, read.content)

    def _check_transaction(
        self, document: dict[str, Any], kind: str, debited: str | None, credited: str | None, amount: int
    ) -> None:
        """The Transaction of a 201 against the model, already updated."""
        asset = self.assets[debited or credited or ""]
        wallet_id = debited or credited
        assert wallet_id is not None
        assert document["type"] == kind, document
        assert document["asset"] == asset, document
        assert document["amount"] == amount, document
        assert document["wallet_id"] == wallet_id, document
        assert document["balance_after"] == self.balances[wallet_id], document
        system_kind = {"topup": "treasury", "bonus": "bonus", "spend": "revenue"}.get(kind)
        system = f"{system_kind}:{asset}"
        entries = {entry["direction"]: entry for entry in document["entries"]}
        assert len(document["entries"]) == 2 and set(entries) == {"debit", "credit"}, document
        for direction, wallet in (("debit", debited), ("credit", credited)):
            entry = entries[direction]
            assert entry["amount"] == amount, document
            if wallet is None:
                assert entry["account"] == system and entry["balance_after"] is None, document
            else:
                assert entry["account"] == wallet and entry["account_id"] == wallet, document
                assert entry["balance_after"] == self.balances[wallet], document

    def _move(
        self,
        kind: str,
        path: str,
        body: dict[str, Any],
        debited: str | None,
        credited: str | None,
        key: str | None = None,
    ) -> str | None:
        """Send one money movement with a fresh (or given, unclaimed) key, check it against the
        model, update the model. Returns the key when the service stored the response."""
        amount: int = body["amount"]
        involved = wallets_of([(debited, credited, amount)])
        key = key or new_key()
        response = self.client.post(path, json=body, headers={"Idempotency-Key": key})
        outcome = (response.status_code, problem_code(response))
        assert "Idempotent-Replayed" not in response.headers, response.headers
        if debited is not None and debited == credited:  # refused before the ledger: nothing stored
            assert outcome == (422, "same_wallet"), response.text
            return None
        self._begin_call(involved)
        postings: list[Posting] = [(debited, credited, amount)]
        expected, effects = self._expect(postings, self._expires_at(body))
        assert outcome in expected, f"expected one of {expected}, got {response.status_code}: {response.text}"
        if outcome == CREATED:
            assert response.headers["content-type"] == JSON_MEDIA_TYPE, response.headers
            self._check_transaction(response.json(), kind, debited, credited, amount)
            self._check_read_back(response.content)
            self._commit(response.json(), postings, effects)
        self._end_call(involved)
        if outcome == CREATED or outcome[1] in STORED_DECLINES:
            self.sent[key] = SentRequest("POST", path, body, response.status_code, response.content, involved)
            return key
        return None

    @staticmethod
    def _expires_at(body: dict[str, Any]) -> datetime | None:
        text = body.get("expires_at")
        return None if text is None else datetime.fromisoformat(text).astimezone(UTC)

    def _expires_at_text(self, expires: tuple[int, int] | None) -> str | None:
        if expires is None:
            return None
        instant, offset = expires
        return self.horizon[instant].astimezone(EXPIRY_OFFSETS[offset]).isoformat()

    @staticmethod
    def _movement_request(
        kind: str, wallet: str, other: str, amount: Any, expires_at: str | None = None
    ) -> tuple[str, dict[str, Any], str | None, str | None]:
        """(path, body, debited wallet, credited wallet) of a movement of `kind`."""
        if kind == "transfer":
            body = {"from_wallet_id": wallet, "to_wallet_id": other, "amount": amount}
            return "/v1/transfers", body, wallet, other
        path = f"/v1/wallets/{wallet}/{kind}"
        if kind == "spend":
            return path, {"amount": amount}, wallet, None
        body = {"amount": amount} if expires_at is None else {"amount": amount, "expires_at": expires_at}
        return path, body, None, wallet

    # Wallets.

    @initialize(
        target=wallets,
        funds=st.lists(
            st.tuples(st.integers(0, 3000), st.integers(0, 1000), st.integers(0, EXPIRY_INSTANTS - 1)),
            min_size=4,
            max_size=4,
        ),
    )
    def start_with_two_funded_wallets_of_each_asset(self, funds: list[tuple[int, int, int]]) -> Any:
        """Two GOLD and two POINTS wallets, each topped up with its funds (0: not topped up)
        and given an expiring bonus (0: none), so that spends and transfers go through often,
        not only their declines, and take from lots from the start."""
        wallet_ids = [self._create_wallet(asset) for asset in ASSETS for _ in range(2)]
        for wallet_id, (amount, expiring, instant) in zip(wallet_ids, funds, strict=True):
            if amount:
                path, body, debited, credited = self._movement_request("topup", wallet_id, wallet_id, amount)
                self._move("topup", path, body, debited, credited)
            if expiring:
                expires_at = self._expires_at_text((instant, 0))
                path, body, debited, credited = self._movement_request(
                    "bonus", wallet_id, wallet_id, expiring, expires_at
                )
                self._move("bonus", path, body, debited, credited)
        return multiple(*wallet_ids)

    @precondition(lambda self: len(self.balances) < WALLETS_MAX)
    @rule(target=wallets, asset=st.sampled_from(ASSETS))
    def create_wallet(self, asset: str) -> str:
        return self._create_wallet(asset)

    # Money movements.

    @rule(
        target=sent_keys,
        wallet=wallets,
        kind=st.sampled_from(["topup", "bonus"]),
        amount=CREDITED_AMOUNTS,
        expires=EXPIRES,
    )
    def credit(self, wallet: str, kind: str, amount: int, expires: tuple[int, int] | None) -> Any:
        """A top-up or bonus; with `expires`, a lot of the wallet that expires at one of the
        horizon's instants (written at some UTC offset)."""
        expires_at = self._expires_at_text(expires)
        path, body, debited, credited = self._movement_request(kind, wallet, wallet, amount, expires_at)
        key = self._move(kind, path, body, debited, credited)
        return multiple() if key is None else key

    @rule(target=sent_keys, wallet=wallets, amount=SPENT_AMOUNTS)
    def spend(self, wallet: str, amount: int) -> Any:
        path, body, debited, credited = self._movement_request("spend", wallet, wallet, amount)
        key = self._move("spend", path, body, debited, credited)
        return multiple() if key is None else key

    @rule(target=sent_keys, sender=wallets, receiver=wallets, amount=SPENT_AMOUNTS)
    def transfer(self, sender: str, receiver: str, amount: int) -> Any:
        """Any two wallets: moves when they differ and hold one asset, else 422 (asset_mismatch
        or same_wallet) or 409 insufficient_funds."""
        path, body, debited, credited = self._movement_request("transfer", sender, receiver, amount)
        key = self._move("transfer", path, body, debited, credited)
        return multiple() if key is None else key

    @rule(target=sent_keys, sender=wallets, choice=st.integers(0, WALLETS_MAX), amount=SHARED_AMOUNTS)
    def transfer_within_an_asset(self, sender: str, choice: int, amount: int) -> Any:
        """To another wallet of the sender's asset (the `choice`-th, cyclically), so that
        transfers often go through."""
        asset = self.assets[sender]
        others = [wallet for wallet in self.balances if wallet != sender and self.assets[wallet] == asset]
        return self.transfer(sender, others[choice % len(others)], amount)

    @rule(
        target=sent_keys,
        asset=st.sampled_from(ASSETS),
        picks=st.lists(
            st.tuples(st.integers(0, WALLETS_MAX + 2), st.integers(0, WALLETS_MAX + 2), SHARED_AMOUNTS),
            min_size=1,
            max_size=5,
        ),
    )
    def journal(self, asset: str, picks: list[tuple[int, int, int]]) -> Any:
        """Postings among the asset's wallets (now and then one of another asset) and its system
        accounts: all apply or none; a wallet short at its posting declines the whole journal."""
        accounts = [wallet for wallet in self.balances if self.assets[wallet] == asset]
        accounts += ["treasury", "revenue", next(iter(self.balances))]
        postings: list[tuple[str, str, int]] = []
        for source, target, amount in picks:
            debit, credit = accounts[source % len(accounts)], accounts[target % len(accounts)]
            if debit != credit:
                postings.append((debit, credit, amount))
        if not any(side in self.balances for p in postings for side in p[:2]):
            return multiple()
        body = {"asset": asset, "postings": [{"from": a, "to": b, "amount": n} for a, b, n in postings]}
        wallet_postings: list[Posting] = [
            (a if a in self.balances else None, b if b in self.balances else None, n) for a, b, n in postings
        ]
        involved = wallets_of(wallet_postings)
        key = new_key()
        response = self.client.post("/v1/journal", json=body, headers={"Idempotency-Key": key})
        self._begin_call(involved)
        if any(self.assets[wallet] != asset for wallet in involved):
            expected, effects = (422, "asset_mismatch"), Effects()
        else:
            expected, effects = self._post_item(wallet_postings)
        assert (response.status_code, problem_code(response)) == expected, response.text
        if expected == CREATED:
            document = response.json()
            assert document["type"] == "journal" and document["amount"] == sum(n for _, _, n in postings)
            assert len(document["entries"]) == 2 * len(postings), document
            self._check_read_back(response.content)
            self._commit(document, wallet_postings, effects)
        self._end_call(involved)
        self.sent[key] = SentRequest(
            "POST", "/v1/journal", body, response.status_code, response.content, involved
        )
        return key

    @rule(
        target=sent_keys,
        picks=st.lists(
            st.tuples(
                st.sampled_from(["topup", "bonus", "spend", "transfer"]),
                st.integers(0, WALLETS_MAX),
                st.integers(0, WALLETS_MAX),
                SPENT_AMOUNTS,
                EXPIRES,
            ),
            min_size=1,
            max_size=6,
        ),
    )
    def batch(self, picks: list[tuple[str, int, int, int, tuple[int, int] | None]]) -> Any:
        """A batch: each item as its single request would be, in item order, all in one call
        (whose wallets all expire what is due first); each item's key is then the single
        request's, for the replay rules."""
        wallets = list(self.balances)
        items, singles = [], []
        for kind, first, second, amount, expires in picks:
            wallet, other = wallets[first % len(wallets)], wallets[second % len(wallets)]
            if kind == "transfer" and wallet == other:
                continue
            expires_at = self._expires_at_text(expires) if kind in ("topup", "bonus") else None
            path, body, debited, credited = self._movement_request(kind, wallet, other, amount, expires_at)
            key = new_key()
            item = {"op": kind, "idempotency_key": key, **body}
            if kind != "transfer":
                item["wallet_id"] = wallet
            items.append(item)
            singles.append((kind, path, body, debited, credited, key))
        if not items:
            return multiple()
        response = self.client.post("/v1/batches", json={"items": items})
        assert response.status_code == 200, response.text
        results = response.json()["results"]
        assert len(results) == len(items)
        involved = wallets_of((debited, credited, 0) for _, _, _, debited, credited, _ in singles)
        self._begin_call(involved)
        keys = []
        for (kind, path, body, debited, credited, key), result in zip(singles, results, strict=True):
            postings: list[Posting] = [(debited, credited, body["amount"])]
            expected, effects = self._expect(postings, self._expires_at(body))
            document = result["body"]
            outcome = (result["status"], document.get("code", "") if result["status"] >= 400 else "")
            assert outcome in expected, (expected, result)
            assert result["replayed"] is False
            content = json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()
            if outcome == CREATED:
                self._check_transaction(document, kind, debited, credited, body["amount"])
                self._check_read_back(content)
                self._commit(document, postings, effects)
            self.sent[key] = SentRequest("POST", path, body, result["status"], content, wallets_of(postings))
            keys.append(key)
        self._end_call(involved)
        return multiple(*keys)

    # Holds.

    def _post(self, path: str, body: dict[str, Any]) -> httpx.Response:
        return self.client.post(path, json=body, headers={"Idempotency-Key": new_key()})

    @rule(target=hold_ids, wallet=wallets, amount=SHARED_AMOUNTS)
    def place_hold(self, wallet: str, amount: int) -> Any:
        """A hold takes its parts of the wallet's lots, soonest first, when it is placed."""
        response = self._post(f"/v1/wallets/{wallet}/holds", {"amount": amount})
        self._begin_call([wallet])
        if self._available(wallet) < amount:
            assert (response.status_code, problem_code(response)) == INSUFFICIENT, response.text
            return multiple()
        assert response.status_code == 201, response.text
        hold = response.json()
        assert (hold["status"], hold["amount"], hold["wallet_id"]) == ("pending", amount, wallet)
        self.holds[hold["id"]] = ModelHold(wallet, amount, self._take(wallet, amount))
        self.tally["holds with lot parts"] += bool(self.holds[hold["id"]].parts)
        return hold["id"]

    @rule(hold=hold_ids, part=st.sampled_from([None, 1, 2, 0]))
    def capture_hold(self, hold: str, part: int | None) -> None:
        """All of it (None), a part (1: half, rounded up), or more than it holds (2: one more)."""
        model = self.holds[hold]
        amount = (
            None if part is None else {1: (model.amount + 1) // 2, 2: model.amount + 1, 0: model.amount}[part]
        )
        response = self._post(f"/v1/holds/{hold}/capture", {} if amount is None else {"amount": amount})
        outcome = (response.status_code, problem_code(response))
        if amount is not None and amount > model.amount:  # decided before the ledger: no call
            assert outcome == (422, "capture_exceeds_hold"), response.text
            return
        self._begin_call([model.wallet_id])
        if model.status != "pending":
            assert outcome == (409, "hold_not_pending"), response.text
            return
        assert outcome == CREATED, response.text
        captured = model.amount if amount is None else amount
        postings: list[Posting] = [(model.wallet_id, None, captured)]
        expected, effects = self._post_item(postings, hold=model)
        assert expected == CREATED, "a pending hold is always there to capture"
        transaction = response.json()
        assert (transaction["type"], transaction["amount"], transaction["hold_id"]) == (
            "spend",
            captured,
            hold,
        )
        assert transaction["balance_after"] == self.balances[model.wallet_id]
        self._commit(transaction, postings, effects)
        self._end_call([model.wallet_id])

    @rule(hold=hold_ids)
    def void_hold(self, hold: str) -> None:
        """A void gives the hold's parts back to their lots; a part of a lot that has expired
        meanwhile expires at once."""
        model = self.holds[hold]
        response = self._post(f"/v1/holds/{hold}/void", {})
        self._begin_call([model.wallet_id])
        if model.status != "pending":
            assert (response.status_code, problem_code(response)) == (409, "hold_not_pending"), response.text
            return
        assert response.status_code == 200 and response.json()["status"] == "voided", response.text
        model.status = "voided"
        for lot, part in model.parts:
            lot.remaining += part
        self._end_call([model.wallet_id])

    @rule(hold=hold_ids)
    def let_a_hold_expire(self, hold: str) -> None:
        """The clock passes the hold's expiry: it reads expired at once and holds nothing; its
        parts of lots go back to them at its wallet's next call."""
        model = self.holds[hold]
        if model.status != "pending":
            return
        asyncio.run(_expire_hold(self.server.database_url, hold))
        model.status = "expired"
        model.parts_out = True
        read = self.client.get(f"/v1/holds/{hold}")
        assert read.json()["status"] == "expired", read.text

    # Time.

    @precondition(lambda self: any(not lot.due(now()) for lot in self.lots))
    @rule(choice=st.integers(0, EXPIRY_INSTANTS - 1))
    def the_clock_passes_an_expiry(self, choice: int) -> None:
        """The clock passes the `choice`-th of the lots' expiries to come (the last, if fewer):
        in the database, that one and every sooner one still to come move into the past, in
        order. Nothing is posted yet: the lots read expired at once (no longer listed or the
        next expiry), but stay in the balance until their wallet's next call or a sweep."""
        moment = now()
        instants = sorted({lot.expires_at for lot in self.lots if not lot.due(moment)})
        self._pass(instants[min(choice, len(instants) - 1)])

    def _pass(self, until: datetime) -> None:
        """The clock passes `until`: the lots' expiries from now to it move to just before now,
        `until` PASSED_BY before it, each sooner one as much sooner as it was."""
        moment = now()
        instants = sorted({lot.expires_at for lot in self.lots if not lot.due(moment)})
        passed = moment - PASSED_BY
        moved = {instant: passed - (until - instant) for instant in instants if instant <= until}
        asyncio.run(_move_lot_expiries(self.server.database_url, list(self.balances), moved))
        for lot in self.lots:
            lot.expires_at = moved.get(lot.expires_at, lot.expires_at)

    @rule(
        target=hold_ids,
        wallet=wallets,
        amount=SHARED_AMOUNTS,
        ending=st.sampled_from(["void", "capture all", "capture half", "expire"]),
    )
    def a_hold_outlives_its_lots(self, wallet: str, amount: int, ending: str) -> Any:
        """A hold takes parts of lots, the clock passes their expiry while it holds them, then
        it ends: a void or its expiry gives the parts back to lots that have expired (they
        expire at once, or at the wallet's next call), a capture consumes them and gives back
        the rest (which expires at the end of the capture)."""
        hold = self.place_hold(wallet, amount)
        if not isinstance(hold, str):
            return multiple()
        moment = now()
        expiries = [lot.expires_at for lot, _ in self.holds[hold].parts if not lot.due(moment)]
        if expiries:
            self._pass(max(expiries))
        if ending == "void":
            self.void_hold(hold)
        elif ending == "expire":
            self.let_a_hold_expire(hold)
        else:
            self.capture_hold(hold, None if ending == "capture all" else 1)
        return hold

    def _something_due(self) -> bool:
        moment = now()
        due_lots = any(lot.remaining > 0 and lot.due(moment) for lot in self.lots)
        return due_lots or any(hold.parts_out for hold in self.holds.values())

    @precondition(lambda self: self._something_due())
    @rule()
    def sweep(self) -> None:
        """What the sweeper (and `wallet lots expire`) does: every wallet with something due
        expires it, each in a call of its own."""
        asyncio.run(_sweep(self.server.database_url))
        for wallet_id in self.balances:
            self._begin_call([wallet_id])

    # Reversals.

    @rule(original=transaction_ids, part=st.sampled_from([None, 1, 2]))
    def reverse(self, original: str, part: int | None) -> None:
        """What is left (None), a part of it (1: one unit), or more than is left (2)."""
        model = self.transactions[original]
        left = model.amount - model.reversed
        amount = {None: None, 1: 1, 2: left + 1}[part]
        response = self._post(
            f"/v1/transactions/{original}/reverse", {} if amount is None else {"amount": amount}
        )
        outcome = (response.status_code, problem_code(response))
        # Decided before the ledger, with no call: what cannot be reversed, or is reversed whole.
        if model.type in ("reversal", "expiry"):
            assert outcome == (422, "not_reversible"), response.text
            return
        if model.type == "journal" and amount not in (None, model.amount):
            assert outcome == (422, "validation_error"), response.text
            return
        if left == 0:
            assert outcome == (409, "reversal_exceeds_original"), response.text
            return
        requested = left if amount is None else amount
        mirrored: list[Posting] = [
            (credit, debit, requested if len(model.postings) == 1 else n)
            for debit, credit, n in model.postings
        ]
        involved = wallets_of(mirrored)
        self._begin_call(involved)
        if requested > left:
            assert outcome == (409, "reversal_exceeds_original"), response.text
            return
        expected, effects = self._post_item(mirrored, original=model)
        assert outcome == expected, response.text
        if outcome == CREATED:
            document = response.json()
            assert (document["type"], document["reverses"], document["amount"]) == (
                "reversal",
                original,
                requested,
            )
            model.reversed += requested
            model.given_back = effects.given_back
            self._commit(document, mirrored, effects)
            self._check_read_back(response.content)
        self._end_call(involved)

    @rule(key=sent_keys, part=st.sampled_from([None, 1, 2]))
    def reverse_a_sent_movement(self, key: str, part: int | None) -> None:
        """A reversal of what a request posted (a refund of a spend that took from lots, most
        often), as the reversal rule does it."""
        sent = self.sent[key]
        if sent.status == 201 and json.loads(sent.content)["id"] in self.transactions:
            self.reverse(json.loads(sent.content)["id"], part)

    @rule(target=transaction_ids, key=sent_keys)
    def a_transaction_to_reverse(self, key: str) -> Any:
        """Make the transactions posted so far reachable for the reversal rule."""
        sent = self.sent[key]
        if sent.status != 201:
            return multiple()
        transaction_id = json.loads(sent.content)["id"]
        return transaction_id if transaction_id in self.transactions else multiple()

    @precondition(lambda self: bool(self.expiry_ids))
    @rule(target=transaction_ids, choice=st.integers(0, 100))
    def an_expiry_to_reverse(self, choice: int) -> str:
        """An expiry the service posted (read back from a history): not reversible."""
        return self.expiry_ids[choice % len(self.expiry_ids)]

    # Idempotency.

    @rule(key=sent_keys, reformat=st.booleans())
    def retry_replays_the_stored_response(self, key: str, reformat: bool) -> None:
        """Same key, same request (the same JSON, maybe with other key order and whitespace):
        same status, byte-identical body, Idempotent-Replayed: true, nothing moves (but the
        call takes the request's wallets: what is due of them expires)."""
        sent = self.sent[key]
        if reformat:
            content = json.dumps(dict(reversed(sent.body.items())), indent=2).encode()
            headers = {"Idempotency-Key": key, "Content-Type": JSON_MEDIA_TYPE}
            response = self.client.request(sent.method, sent.path, content=content, headers=headers)
        else:
            headers = {"Idempotency-Key": key}
            response = self.client.request(sent.method, sent.path, json=sent.body, headers=headers)
        assert response.status_code == sent.status, response.text
        assert response.content == sent.content, (sent.content, response.content)
        assert response.headers.get("Idempotent-Replayed") == "true", response.headers
        self._begin_call(sent.wallet_ids)

    @rule(key=sent_keys, delta=st.integers(1, 100))
    def reusing_a_key_for_another_request_is_rejected(self, key: str, delta: int) -> None:
        """Another amount (or, for a journal, another reference) under the same key: 422, and
        nothing moves (but what is due of the request's wallets expires)."""
        sent = self.sent[key]
        if "amount" in sent.body:
            body = {**sent.body, "amount": sent.body["amount"] + delta}
        else:
            body = {**sent.body, "reference": f"another-{delta}"}
        response = self.client.request(sent.method, sent.path, json=body, headers={"Idempotency-Key": key})
        assert response.status_code == 422, response.text
        assert problem_code(response) == "idempotency_key_reused", response.text
        assert response.headers.get("Idempotent-Replayed") is None, response.headers
        self._begin_call(sent.wallet_ids)

    @rule(
        target=sent_keys,
        wallet=wallets,
        other=wallets,
        kind=st.sampled_from(["topup", "bonus", "spend", "transfer"]),
        amount=st.sampled_from(INVALID_AMOUNTS),
        fixed_amount=st.none() | CREDITED_AMOUNTS,
    )
    def invalid_amount_is_rejected_and_not_stored(
        self, wallet: str, other: str, kind: str, amount: Any, fixed_amount: int | None
    ) -> Any:
        """An invalid amount: 422 validation_error, nothing moves (the ledger is not called).
        The key is not claimed, so the client may fix the request and send it again with the
        same key."""
        path, body, debited, credited = self._movement_request(kind, wallet, other, amount)
        key = new_key()
        response = self.client.post(path, json=body, headers={"Idempotency-Key": key})
        assert response.status_code == 422, response.text
        codes = {"validation_error", "same_wallet"} if debited == credited else {"validation_error"}
        code = problem_code(response)
        assert code in codes, response.text
        if code == "validation_error":
            assert response.json()["errors"], response.text
        if fixed_amount is None:
            return multiple()
        fixed = {**body, "amount": fixed_amount}
        stored = self._move(kind, path, fixed, debited, credited, key=key)
        return multiple() if stored is None else stored

    # Invariants.

    def _expected_wallet(self, wallet_id: str) -> dict[str, Any]:
        open_lots = self._open_lots(wallet_id)
        next_expiry = None
        if open_lots:
            soonest = open_lots[0].expires_at
            amount = sum(lot.remaining for lot in open_lots if lot.expires_at == soonest)
            next_expiry = {"amount": amount, "expires_at": soonest}
        held = self._held(wallet_id)
        balance = self.balances[wallet_id]
        return {"balance": balance, "held": held, "available": balance - held, "next_expiry": next_expiry}

    @invariant()
    def wallets_and_their_lots_match_the_model(self) -> None:
        """Each wallet's balance, held, available and next expiry, and its lots (soonest first),
        as the model has them; and what its history shows since it was last read, when expiries
        were posted for it."""
        assert all(value >= 0 for value in self.balances.values()), self.balances
        for wallet_id in self.balances:
            response = self.client.get(f"/v1/wallets/{wallet_id}")
            assert response.status_code == 200, response.text
            document = response.json()
            shown = {name: document[name] for name in ("balance", "held", "available", "next_expiry")}
            if shown["next_expiry"] is not None:
                expires_at = datetime.fromisoformat(shown["next_expiry"]["expires_at"])
                shown["next_expiry"] = {**shown["next_expiry"], "expires_at": expires_at}
            assert shown == self._expected_wallet(wallet_id), (wallet_id, document)
            expected = [
                (lot.origin, lot.amount, lot.remaining, lot.expires_at) for lot in self._open_lots(wallet_id)
            ]
            if not expected:
                # next_expiry is null (above), and verify checks that lot_expires_at, which the
                # view goes by, is the soonest open lot's: no unexpired lot keeps anything.
                continue
            listed = self.client.get(f"/v1/wallets/{wallet_id}/lots")
            assert listed.status_code == 200, listed.text
            lots = [
                (
                    lot["transaction_id"],
                    lot["amount"],
                    lot["remaining"],
                    datetime.fromisoformat(lot["expires_at"]),
                )
                for lot in listed.json()["data"]
            ]
            assert lots == expected, (wallet_id, listed.json())
        for wallet_id in sorted(self.expired_in_step):
            self._check_history(wallet_id)
        self.expired_in_step.clear()

    def _check_history(self, wallet_id: str) -> None:
        """The wallet's transactions since its history was last read (and the one before, where
        that reading ended), oldest first, against the model: the expiries of exactly what was
        left of each lot, to breakage, posted in the database transaction of the call that
        found them due (the same time as the transactions it posted)."""
        history = self.history[wallet_id]
        start = max(0, self.history_checked[wallet_id] - 1, len(history) - HISTORY_PAGE_MAX)
        expected = history[start:]
        response = self.client.get(f"/v1/wallets/{wallet_id}/transactions", params={"limit": len(expected)})
        assert response.status_code == 200, response.text
        shown = response.json()["data"][::-1]
        assert [(t["type"], t["amount"]) for t in shown] == [(s.type, s.amount) for s in expected], (
            wallet_id,
            shown,
        )
        asset = self.assets[wallet_id]
        for number, (seen, transaction) in enumerate(zip(expected, shown, strict=True)):
            own = [entry for entry in transaction["entries"] if entry["account_id"] == wallet_id]
            assert own and own[-1]["balance_after"] == seen.balance_after, (seen, transaction)
            if number > 0:
                earlier = expected[number - 1]
                same_time = transaction["created_at"] == shown[number - 1]["created_at"]
                assert same_time == (earlier.call == seen.call), (
                    earlier,
                    seen,
                    shown[number - 1],
                    transaction,
                )
            if seen.transaction_id is not None:
                assert transaction["id"] == seen.transaction_id, (seen, transaction)
                continue
            assert seen.lot is not None and seen.lot_expires_at is not None
            assert transaction["metadata"] == {
                "lot_expires_at": timestamp_text(seen.lot_expires_at),
                "lot_transaction_id": seen.lot.origin,
            }, transaction
            assert (transaction["wallet_id"], transaction["asset"], transaction["balance_after"]) == (
                wallet_id,
                asset,
                seen.balance_after,
            ), transaction
            assert (transaction["reference"], transaction["reverses"], transaction["hold_id"]) == (
                None,
                None,
                None,
            )
            assert [
                (e["account"], e["direction"], e["amount"], e["balance_after"])
                for e in transaction["entries"]
            ] == [
                (wallet_id, "debit", seen.amount, seen.balance_after),
                (f"breakage:{asset}", "credit", seen.amount, None),
            ], transaction
            if transaction["id"] not in self.transactions:
                self.transactions[transaction["id"]] = ModelTransaction(
                    transaction["id"], "expiry", seen.amount, [(wallet_id, None, seen.amount)], []
                )
                self.expiry_ids.append(transaction["id"])
        self.history_checked[wallet_id] = len(history)

    @invariant()
    def ledger_verifies(self) -> None:
        self.steps += 1
        if self.steps % VERIFY_EVERY_STEPS == 0:
            assert_ledger_ok(self.client)


def test_random_money_movements_match_an_in_memory_model(model_server: Server) -> None:
    tally: Counter[str] = Counter()
    # Hypothesis takes any factory of a machine; its annotation says a class.
    run_state_machine_as_test(lambda: WalletMachine(model_server, tally), settings=MODEL_SETTINGS)  # type: ignore[arg-type]
    with model_server.client() as client:
        assert_ledger_ok(client)
    # The runs went where expiring credits matter (a run rarely sees none of these; all runs
    # together always see many).
    assert tally["expiries"] and tally["lots carried"] and tally["holds with lot parts"], tally
