"""A model-based test of the money movements: Hypothesis drives the real service with random
top-ups, bonuses, spends, transfers, journals and batches of them, holds (placed, captured,
voided, expired) and reversals, replays and misuses of Idempotency-Keys (a batch item replayed
as its single request), and invalid amounts, and after every step compares it with a small
in-memory model (dicts of balances and holds) and the ledger invariants 1-7 (verify). Every
transaction a 201 returns reads back byte for byte the same.

A hold's expiry is reached by moving its `expires_at` into the past in the database (the clock
passing it), not by waiting."""

from __future__ import annotations

import asyncio
import json
import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
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

from support import Server, assert_ledger_ok

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
# GET /v1/ledger/verify after every this many steps (it is fast enough on the test database).
VERIFY_EVERY_STEPS = 1
MODEL_SETTINGS = settings(
    max_examples=35,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

Outcome = tuple[int, str]  # (status, problem code), code "" for a 201
CREATED: Outcome = (201, "")


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


def problem_code(response: httpx.Response) -> str:
    if response.status_code < 400:
        return ""
    assert response.headers["content-type"] == PROBLEM_MEDIA_TYPE, response.headers
    document = response.json()
    assert document["status"] == response.status_code, document
    code: str = document["code"]
    return code


@dataclass
class ModelHold:
    wallet_id: str
    amount: int
    status: str = "pending"


@dataclass
class ModelTransaction:
    type: str
    amount: int
    postings: list[tuple[str | None, str | None, int]]  # (debited wallet, credited wallet, amount)
    reversed: int = 0


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


class WalletMachine(RuleBasedStateMachine):
    """The model: `balances` (wallet id -> balance), `assets` (wallet id -> asset) and `sent`
    (Idempotency-Key -> the stored request and response, for retries)."""

    wallets = Bundle("wallets")
    sent_keys = Bundle("sent_keys")
    hold_ids = Bundle("hold_ids")
    transaction_ids = Bundle("transaction_ids")

    def __init__(self, server: Server) -> None:
        super().__init__()
        self.server = server
        self.client = server.client()
        self.balances: dict[str, int] = {}
        self.assets: dict[str, str] = {}
        self.sent: dict[str, SentRequest] = {}
        self.holds: dict[str, ModelHold] = {}
        self.transactions: dict[str, ModelTransaction] = {}
        self.steps = 0

    def _held(self, wallet_id: str) -> int:
        return sum(
            h.amount for h in self.holds.values() if h.wallet_id == wallet_id and h.status == "pending"
        )

    def _available(self, wallet_id: str) -> int:
        return self.balances[wallet_id] - self._held(wallet_id)

    def teardown(self) -> None:
        self.client.close()

    # Helpers.

    def _create_wallet(self, asset: str) -> str:
        response = self.client.post("/v1/wallets", json={"owner_id": f"model-{uuid.uuid4()}", "asset": asset})
        assert response.status_code == 201, response.text
        document = response.json()
        assert document["asset"] == asset and document["balance"] == 0, document
        wallet_id: str = document["id"]
        self.balances[wallet_id] = 0
        self.assets[wallet_id] = asset
        return wallet_id

    def _server_balances(self, wallet_ids: tuple[str, ...]) -> dict[str, int]:
        balances: dict[str, int] = {}
        for wallet_id in wallet_ids:
            response = self.client.get(f"/v1/wallets/{wallet_id}")
            assert response.status_code == 200, response.text
            balances[wallet_id] = response.json()["balance"]
        return balances

    def _model_balances(self, wallet_ids: tuple[str, ...]) -> dict[str, int]:
        return {wallet_id: self.balances[wallet_id] for wallet_id in wallet_ids}

    def _expected_outcomes(self, debited: str | None, credited: str | None, amount: int) -> set[Outcome]:
        """What the contract allows for this movement, given the model. When several declines
        apply at once (the contract does not order them), any of them is accepted."""
        if debited is not None and debited == credited:
            return {(422, "same_wallet")}
        declines: set[Outcome] = set()
        if debited is not None and credited is not None and self.assets[debited] != self.assets[credited]:
            declines.add((422, "asset_mismatch"))
        if debited is not None and self._available(debited) < amount:
            declines.add((409, "insufficient_funds"))
        return declines or {CREATED}

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
        involved = tuple(dict.fromkeys(wallet for wallet in (debited, credited) if wallet is not None))
        expected = self._expected_outcomes(debited, credited, amount)
        key = key or new_key()
        before = self._server_balances(involved)
        response = self.client.post(path, json=body, headers={"Idempotency-Key": key})
        after = self._server_balances(involved)
        outcome = (response.status_code, problem_code(response))
        assert outcome in expected, f"expected one of {expected}, got {response.status_code}: {response.text}"
        assert "Idempotent-Replayed" not in response.headers, response.headers
        if outcome == CREATED:
            assert response.headers["content-type"] == JSON_MEDIA_TYPE, response.headers
            if debited is not None:
                self.balances[debited] -= amount
            if credited is not None:
                self.balances[credited] += amount
            self._check_transaction(response.json(), kind, debited, credited, amount)
            self._check_read_back(response.content)
            self._remember(response.json(), [(debited, credited, amount)])
        else:
            assert after == before, f"{outcome} changed balances {before} -> {after}"
        assert after == self._model_balances(involved), response.text
        if outcome == CREATED or outcome[1] in STORED_DECLINES:
            self.sent[key] = SentRequest("POST", path, body, response.status_code, response.content, involved)
            return key
        return None

    @staticmethod
    def _movement_request(
        kind: str, wallet: str, other: str, amount: Any
    ) -> tuple[str, dict[str, Any], str | None, str | None]:
        """(path, body, debited wallet, credited wallet) of a movement of `kind`."""
        if kind == "transfer":
            body = {"from_wallet_id": wallet, "to_wallet_id": other, "amount": amount}
            return "/v1/transfers", body, wallet, other
        path = f"/v1/wallets/{wallet}/{kind}"
        if kind == "spend":
            return path, {"amount": amount}, wallet, None
        return path, {"amount": amount}, None, wallet

    # Wallets.

    @initialize(target=wallets, funds=st.lists(st.integers(0, 3000), min_size=4, max_size=4))
    def start_with_two_funded_wallets_of_each_asset(self, funds: list[int]) -> Any:
        """Two GOLD and two POINTS wallets, topped up with `funds` (0: not topped up), so that
        spends and transfers go through often, not only their declines."""
        wallet_ids = [self._create_wallet(asset) for asset in ASSETS for _ in range(2)]
        for wallet_id, amount in zip(wallet_ids, funds, strict=True):
            if amount:
                path, body, debited, credited = self._movement_request("topup", wallet_id, wallet_id, amount)
                self._move("topup", path, body, debited, credited)
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
    )
    def credit(self, wallet: str, kind: str, amount: int) -> Any:
        path, body, debited, credited = self._movement_request(kind, wallet, wallet, amount)
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

    def _remember(self, document: dict[str, Any], postings: list[tuple[str | None, str | None, int]]) -> None:
        self.transactions[document["id"]] = ModelTransaction(document["type"], document["amount"], postings)

    def _journal_outcome(self, asset: str, postings: list[tuple[str, str, int]]) -> Outcome:
        """All or nothing, each posting in turn against the running balances."""
        running = dict(self.balances)
        wallets = [side for p in postings for side in p[:2] if side in running]
        if any(self.assets[wallet] != asset for wallet in wallets):
            return (422, "asset_mismatch")
        for source, target, amount in postings:
            if source in running:
                if running[source] - self._held(source) < amount:
                    return (409, "insufficient_funds")
                running[source] -= amount
            if target in running:
                running[target] += amount
        return CREATED

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
        expected = self._journal_outcome(asset, postings)
        body = {"asset": asset, "postings": [{"from": a, "to": b, "amount": n} for a, b, n in postings]}
        involved = tuple(dict.fromkeys(side for p in postings for side in p[:2] if side in self.balances))
        key = new_key()
        before = self._server_balances(involved)
        response = self.client.post("/v1/journal", json=body, headers={"Idempotency-Key": key})
        after = self._server_balances(involved)
        assert (response.status_code, problem_code(response)) == expected, response.text
        if expected == CREATED:
            for source, target, amount in postings:
                if source in self.balances:
                    self.balances[source] -= amount
                if target in self.balances:
                    self.balances[target] += amount
            document = response.json()
            assert document["type"] == "journal" and document["amount"] == sum(n for _, _, n in postings)
            assert len(document["entries"]) == 2 * len(postings), document
            self._check_read_back(response.content)
            wallet_postings = [
                (a if a in self.balances else None, b if b in self.balances else None, n)
                for a, b, n in postings
            ]
            self._remember(document, wallet_postings)
        else:
            assert after == before, f"a declined journal changed balances {before} -> {after}"
        assert after == self._model_balances(involved), response.text
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
            ),
            min_size=1,
            max_size=6,
        ),
    )
    def batch(self, picks: list[tuple[str, int, int, int]]) -> Any:
        """A batch: each item as its single request would be, in item order; each item's key is
        then the single request's, for the replay rules."""
        wallets = list(self.balances)
        items, singles = [], []
        for kind, first, second, amount in picks:
            wallet, other = wallets[first % len(wallets)], wallets[second % len(wallets)]
            if kind == "transfer" and wallet == other:
                continue
            path, body, debited, credited = self._movement_request(kind, wallet, other, amount)
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
        keys = []
        for (kind, path, body, debited, credited, key), result in zip(singles, results, strict=True):
            expected = self._expected_outcomes(debited, credited, body["amount"])
            document = result["body"]
            outcome = (result["status"], document.get("code", "") if result["status"] >= 400 else "")
            assert outcome in expected, (expected, result)
            assert result["replayed"] is False
            content = json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()
            if outcome == CREATED:
                if debited is not None:
                    self.balances[debited] -= body["amount"]
                if credited is not None:
                    self.balances[credited] += body["amount"]
                self._check_transaction(document, kind, debited, credited, body["amount"])
                self._check_read_back(content)
                self._remember(document, [(debited, credited, body["amount"])])
            involved = tuple(dict.fromkeys(w for w in (debited, credited) if w is not None))
            self.sent[key] = SentRequest("POST", path, body, result["status"], content, involved)
            keys.append(key)
        return multiple(*keys)

    # Holds.

    def _post(self, path: str, body: dict[str, Any]) -> httpx.Response:
        return self.client.post(path, json=body, headers={"Idempotency-Key": new_key()})

    @rule(target=hold_ids, wallet=wallets, amount=SHARED_AMOUNTS)
    def place_hold(self, wallet: str, amount: int) -> Any:
        available = self._available(wallet)
        response = self._post(f"/v1/wallets/{wallet}/holds", {"amount": amount})
        if available < amount:
            assert (response.status_code, problem_code(response)) == (409, "insufficient_funds"), (
                response.text
            )
            return multiple()
        assert response.status_code == 201, response.text
        hold = response.json()
        assert (hold["status"], hold["amount"], hold["wallet_id"]) == ("pending", amount, wallet)
        self.holds[hold["id"]] = ModelHold(wallet, amount)
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
        if amount is not None and amount > model.amount:
            assert outcome == (422, "capture_exceeds_hold"), response.text
        elif model.status != "pending":
            assert outcome == (409, "hold_not_pending"), response.text
        else:
            assert outcome == CREATED, response.text
            captured = model.amount if amount is None else amount
            transaction = response.json()
            assert (transaction["type"], transaction["amount"], transaction["hold_id"]) == (
                "spend",
                captured,
                hold,
            )
            model.status = "captured"
            self.balances[model.wallet_id] -= captured
            assert transaction["balance_after"] == self.balances[model.wallet_id]
            self._remember(transaction, [(model.wallet_id, None, captured)])

    @rule(hold=hold_ids)
    def void_hold(self, hold: str) -> None:
        model = self.holds[hold]
        response = self._post(f"/v1/holds/{hold}/void", {})
        if model.status != "pending":
            assert (response.status_code, problem_code(response)) == (409, "hold_not_pending"), response.text
            return
        assert response.status_code == 200 and response.json()["status"] == "voided", response.text
        model.status = "voided"

    @rule(hold=hold_ids)
    def let_a_hold_expire(self, hold: str) -> None:
        """The clock passes the hold's expiry: it reads expired at once and holds nothing."""
        model = self.holds[hold]
        if model.status != "pending":
            return
        asyncio.run(_expire_hold(self.server.database_url, hold))
        model.status = "expired"
        read = self.client.get(f"/v1/holds/{hold}")
        assert read.json()["status"] == "expired", read.text

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
        if model.type == "reversal":
            assert outcome == (422, "not_reversible"), response.text
            return
        if model.type == "journal" and amount not in (None, model.amount):
            assert outcome == (422, "validation_error"), response.text
            return
        requested = left if amount is None else amount
        if left == 0 or requested > left:
            assert outcome == (409, "reversal_exceeds_original"), response.text
            return
        running = dict(self.balances)
        mirrored = [
            (credit, debit, requested if len(model.postings) == 1 else n)
            for debit, credit, n in model.postings
        ]
        for source, target, n in mirrored:
            if source is not None:
                if running[source] - self._held(source) < n:
                    assert outcome == (409, "insufficient_funds"), response.text
                    return
                running[source] -= n
            if target is not None:
                running[target] += n
        assert outcome == CREATED, response.text
        document = response.json()
        assert (document["type"], document["reverses"], document["amount"]) == (
            "reversal",
            original,
            requested,
        )
        self.balances = running
        model.reversed += requested
        self._remember(document, mirrored)
        self._check_read_back(response.content)

    @rule(target=transaction_ids, key=sent_keys)
    def a_transaction_to_reverse(self, key: str) -> Any:
        """Make the transactions posted so far reachable for the reversal rule."""
        sent = self.sent[key]
        if sent.status != 201:
            return multiple()
        transaction_id = json.loads(sent.content)["id"]
        return transaction_id if transaction_id in self.transactions else multiple()

    # Idempotency.

    @rule(key=sent_keys, reformat=st.booleans())
    def retry_replays_the_stored_response(self, key: str, reformat: bool) -> None:
        """Same key, same request (the same JSON, maybe with other key order and whitespace):
        same status, byte-identical body, Idempotent-Replayed: true, nothing moves."""
        sent = self.sent[key]
        before = self._server_balances(sent.wallet_ids)
        if reformat:
            content = json.dumps(dict(reversed(sent.body.items())), indent=2).encode()
            headers = {"Idempotency-Key": key, "Content-Type": JSON_MEDIA_TYPE}
            response = self.client.request(sent.method, sent.path, content=content, headers=headers)
        else:
            headers = {"Idempotency-Key": key}
            response = self.client.request(sent.method, sent.path, json=sent.body, headers=headers)
        after = self._server_balances(sent.wallet_ids)
        assert response.status_code == sent.status, response.text
        assert response.content == sent.content, (sent.content, response.content)
        assert response.headers.get("Idempotent-Replayed") == "true", response.headers
        assert after == before, f"a replay changed balances {before} -> {after}"
        assert after == self._model_balances(sent.wallet_ids)

    @rule(key=sent_keys, delta=st.integers(1, 100))
    def reusing_a_key_for_another_request_is_rejected(self, key: str, delta: int) -> None:
        """Another amount (or, for a journal, another reference) under the same key."""
        sent = self.sent[key]
        if "amount" in sent.body:
            body = {**sent.body, "amount": sent.body["amount"] + delta}
        else:
            body = {**sent.body, "reference": f"another-{delta}"}
        before = self._server_balances(sent.wallet_ids)
        response = self.client.request(sent.method, sent.path, json=body, headers={"Idempotency-Key": key})
        after = self._server_balances(sent.wallet_ids)
        assert response.status_code == 422, response.text
        assert problem_code(response) == "idempotency_key_reused", response.text
        assert response.headers.get("Idempotent-Replayed") is None, response.headers
        assert after == before, f"a reused key changed balances {before} -> {after}"
        assert after == self._model_balances(sent.wallet_ids)

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
        """An invalid amount: 422 validation_error, nothing moves. The key is not claimed, so
        the client may fix the request and send it again with the same key."""
        path, body, debited, credited = self._movement_request(kind, wallet, other, amount)
        involved = tuple(dict.fromkeys(wallet for wallet in (debited, credited) if wallet is not None))
        key = new_key()
        before = self._server_balances(involved)
        response = self.client.post(path, json=body, headers={"Idempotency-Key": key})
        after = self._server_balances(involved)
        assert response.status_code == 422, response.text
        codes = {"validation_error", "same_wallet"} if debited == credited else {"validation_error"}
        code = problem_code(response)
        assert code in codes, response.text
        if code == "validation_error":
            assert response.json()["errors"], response.text
        assert after == before, f"an invalid request changed balances {before} -> {after}"
        assert after == self._model_balances(involved)
        if fixed_amount is None:
            return multiple()
        fixed = {**body, "amount": fixed_amount}
        stored = self._move(kind, path, fixed, debited, credited, key=key)
        return multiple() if stored is None else stored

    # Invariants.

    @invariant()
    def balances_match_the_model(self) -> None:
        wallet_ids = tuple(self.balances)
        assert all(value >= 0 for value in self.balances.values()), self.balances
        assert self._server_balances(wallet_ids) == self.balances

    @invariant()
    def ledger_verifies(self) -> None:
        self.steps += 1
        if self.steps % VERIFY_EVERY_STEPS == 0:
            assert_ledger_ok(self.client)


def test_random_money_movements_match_an_in_memory_model(server: Server) -> None:
    # Hypothesis takes any factory of a machine; its annotation says a class.
    run_state_machine_as_test(lambda: WalletMachine(server), settings=MODEL_SETTINGS)  # type: ignore[arg-type]
    with server.client() as client:
        assert_ledger_ok(client)
