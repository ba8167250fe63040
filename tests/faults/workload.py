"""Money movements driven at a `wallet serve` that a fault test breaks, and the exactly-once check.

Clients behave as API.md asks of them: each operation has its own Idempotency-Key, and a request
that got no answer (connection refused or cut, read timeout) or a 503 is sent again with the
same key and the same body until it gets a final answer. The pause between tries is
RETRY_PAUSE_SECONDS, shorter than the service's Retry-After, to press the service harder.

Afterwards `assert_applied_exactly_once` compares what the clients were told with the database:
every 201 has exactly its one transaction, every 409 none, no transaction exists that no client
was told about, the balances are what the 201s imply, and `wallet ledger verify` passes.
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import httpx

from support import wallet_command

RETRY_PAUSE_SECONDS = 0.1
REQUEST_TIMEOUT_SECONDS = 10.0
FINAL_STATUSES = (201, 409)
RETRIED_STATUSES = (503,)


@dataclass(frozen=True)
class Operation:
    key: str
    kind: str  # topup, spend or transfer
    path: str
    body: dict[str, Any]
    source: str | None  # the debited wallet
    target: str | None  # the credited wallet


@dataclass(frozen=True)
class Attempt:
    started: float  # time.monotonic()
    seconds: float
    status: int | None  # None: no answer
    error: str | None = None  # for no answer: the httpx exception, such as ConnectError


@dataclass
class Outcome:
    operation: Operation
    attempts: list[Attempt] = field(default_factory=list)
    status: int | None = None
    document: dict[str, Any] | None = None
    replayed: bool = False


def plan(wallets: list[str], count: int, seed: int) -> list[Operation]:
    """`count` top-ups, spends and transfers over `wallets`, each with a key of its own. Amounts
    are drawn so that some spends and transfers are declined (409) for want of funds."""
    rng = random.Random(seed)
    operations = []
    for number in range(count):
        key = f"fault-{seed}-{number}-{uuid.uuid4().hex[:8]}"
        kind = rng.choices(["topup", "spend", "transfer"], weights=[35, 35, 30])[0]
        amount = rng.randint(1, 100 if kind == "topup" else 150)
        if kind == "transfer":
            sender, receiver = rng.sample(wallets, 2)
            body = {"from_wallet_id": sender, "to_wallet_id": receiver, "amount": amount}
            operations.append(Operation(key, kind, "/v1/transfers", body, sender, receiver))
        else:
            wallet_id = rng.choice(wallets)
            source: str | None = None if kind == "topup" else wallet_id
            target: str | None = wallet_id if kind == "topup" else None
            path = f"/v1/wallets/{wallet_id}/{kind}"
            operations.append(Operation(key, kind, path, {"amount": amount}, source, target))
    return operations


async def captures_and_refunds(
    base_url: str, admin_key: str, wallets: list[str], count: int
) -> tuple[list[Operation], dict[str, int]]:
    """`count` holds and `count` spends made now (with the admin key, so they are not the
    workload's), and the operations that capture each hold and refund each spend, for the load.
    Returns them with the wallets' balances after the holds and spends."""
    headers = {"Authorization": f"Bearer {admin_key}"}
    operations: list[Operation] = []
    async with httpx.AsyncClient(base_url=base_url, headers=headers, timeout=30.0) as client:
        for number in range(count):
            wallet = wallets[number % len(wallets)]
            key = {"Idempotency-Key": f"setup-hold-{uuid.uuid4()}"}
            hold = await client.post(f"/v1/wallets/{wallet}/holds", json={"amount": 5}, headers=key)
            assert hold.status_code == 201, hold.text
            path = f"/v1/holds/{hold.json()['id']}/capture"
            operations.append(
                Operation(f"capture-{uuid.uuid4()}", "spend", path, {"amount": 5}, wallet, None)
            )
            spender = wallets[(number + 7) % len(wallets)]
            key = {"Idempotency-Key": f"setup-spend-{uuid.uuid4()}"}
            spend = await client.post(f"/v1/wallets/{spender}/spend", json={"amount": 4}, headers=key)
            assert spend.status_code == 201, spend.text
            path = f"/v1/transactions/{spend.json()['id']}/reverse"
            operations.append(
                Operation(f"refund-{uuid.uuid4()}", "reversal", path, {"amount": 4}, None, spender)
            )
        balances = {}
        for wallet in wallets:
            balances[wallet] = (await client.get(f"/v1/wallets/{wallet}")).json()["balance"]
    return operations, balances


class Workload:
    """Runs the operations with `concurrency` requests in flight, each retried until final."""

    def __init__(self, base_url: str, api_key: str, operations: list[Operation], concurrency: int) -> None:
        assert 1 <= concurrency <= 256
        self.base_url = base_url
        self.api_key = api_key
        self.outcomes = [Outcome(operation) for operation in operations]
        self.concurrency = concurrency
        self.answered = 0  # operations with a final answer
        self._progress = asyncio.Condition()

    async def run(self) -> list[Outcome]:
        limits = httpx.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency)
        headers = {"Authorization": f"Bearer {self.api_key}"}
        async with httpx.AsyncClient(
            base_url=self.base_url, headers=headers, limits=limits, timeout=REQUEST_TIMEOUT_SECONDS
        ) as client:
            pending = iter(self.outcomes)
            await asyncio.gather(*(self._client(client, pending) for _ in range(self.concurrency)))
        return self.outcomes

    async def wait_until_answered(self, count: int) -> None:
        async with self._progress:
            await self._progress.wait_for(lambda: self.answered >= count)

    async def _client(self, client: httpx.AsyncClient, pending: Any) -> None:
        for outcome in pending:
            await self._until_final(client, outcome)
            async with self._progress:
                self.answered += 1
                self._progress.notify_all()

    async def _until_final(self, client: httpx.AsyncClient, outcome: Outcome) -> None:
        operation = outcome.operation
        headers = {"Idempotency-Key": operation.key}
        while True:
            started = time.monotonic()
            try:
                response = await client.post(operation.path, json=operation.body, headers=headers)
            except httpx.TransportError as error:
                elapsed = time.monotonic() - started
                outcome.attempts.append(Attempt(started, elapsed, None, type(error).__name__))
                await asyncio.sleep(RETRY_PAUSE_SECONDS)
                continue
            outcome.attempts.append(Attempt(started, time.monotonic() - started, response.status_code))
            if response.status_code in RETRIED_STATUSES:
                assert response.headers.get("Retry-After"), response.headers
                await asyncio.sleep(RETRY_PAUSE_SECONDS)
                continue
            outcome.status = response.status_code
            outcome.document = response.json()
            outcome.replayed = response.headers.get("Idempotent-Replayed") == "true"
            return


class BatchWorkload(Workload):
    """The operations sent as POST /v1/batches of `batch_size` items, each batch retried as it is
    until it gets a 200 (API.md: a timed-out batch is retried as it is); each item's outcome is
    its result in the batch."""

    def __init__(
        self, base_url: str, api_key: str, operations: list[Operation], concurrency: int, batch_size: int
    ) -> None:
        super().__init__(base_url, api_key, operations, concurrency)
        assert 1 <= batch_size <= 1000
        self.batch_size = batch_size

    async def _client(self, client: httpx.AsyncClient, pending: Any) -> None:
        while True:
            batch = [outcome for _, outcome in zip(range(self.batch_size), pending, strict=False)]
            if not batch:
                return
            await self._batch_until_final(client, batch)
            async with self._progress:
                self.answered += len(batch)
                self._progress.notify_all()

    async def _batch_until_final(self, client: httpx.AsyncClient, batch: list[Outcome]) -> None:
        items = [batch_item(outcome.operation) for outcome in batch]
        while True:
            started = time.monotonic()
            try:
                response = await client.post("/v1/batches", json={"items": items})
            except httpx.TransportError as error:
                for outcome in batch:
                    outcome.attempts.append(
                        Attempt(started, time.monotonic() - started, None, type(error).__name__)
                    )
                await asyncio.sleep(RETRY_PAUSE_SECONDS)
                continue
            elapsed = time.monotonic() - started
            if response.status_code in RETRIED_STATUSES:
                for outcome in batch:
                    outcome.attempts.append(Attempt(started, elapsed, response.status_code))
                await asyncio.sleep(RETRY_PAUSE_SECONDS)
                continue
            assert response.status_code == 200, response.text
            for outcome, result in zip(batch, response.json()["results"], strict=True):
                outcome.attempts.append(Attempt(started, elapsed, result["status"]))
                outcome.status = result["status"]
                outcome.document = result["body"]
                outcome.replayed = result["replayed"]
            return


def batch_item(operation: Operation) -> dict[str, Any]:
    item: dict[str, Any] = {"op": operation.kind, "idempotency_key": operation.key, **operation.body}
    if operation.kind != "transfer":
        item["wallet_id"] = operation.target if operation.kind == "topup" else operation.source
    return item


@dataclass(frozen=True)
class Tally:
    """The numbers docs/reliability.md reports for each fault."""

    operations: int
    requests: int  # attempts sent
    no_answer: int  # attempts that got no answer (refused, cut, timed out)
    unavailable: int  # attempts answered 503
    retried: int  # operations that took more than one attempt
    replayed: int  # operations whose final answer was the stored one (Idempotent-Replayed)
    applied: int  # operations answered 201
    declined: int  # operations answered 409

    def line(self) -> str:
        return ", ".join(f"{name}={value}" for name, value in vars(self).items())


def tally(outcomes: list[Outcome]) -> Tally:
    statuses = Counter(attempt.status for outcome in outcomes for attempt in outcome.attempts)
    finals = Counter(outcome.status for outcome in outcomes)
    return Tally(
        operations=len(outcomes),
        requests=sum(statuses.values()),
        no_answer=statuses[None],
        unavailable=statuses[503],
        retried=sum(1 for outcome in outcomes if len(outcome.attempts) > 1),
        replayed=sum(1 for outcome in outcomes if outcome.replayed),
        applied=finals[201],
        declined=finals[409],
    )


async def assert_applied_exactly_once(
    database_url: str, key_id: uuid.UUID, outcomes: list[Outcome], balances_before: dict[str, int]
) -> None:
    """Every operation got a final answer and the database holds exactly what the answers say."""
    _assert_final_answers(outcomes)
    connection = await asyncpg.connect(database_url, timeout=10)
    try:
        stored = await connection.fetch(
            """
            SELECT i.key, i.decline_code, i.transaction_id, count(t.id) AS transactions
            FROM idempotency_key i LEFT JOIN transaction t ON t.id = i.transaction_id
            WHERE i.api_key_id = $1
            GROUP BY i.key, i.decline_code, i.transaction_id
            """,
            key_id,
        )
        written = await connection.fetch("SELECT id FROM transaction WHERE api_key_id = $1", key_id)
        balances = await connection.fetch(
            "SELECT id::text, balance FROM account WHERE id = ANY($1::uuid[])", list(balances_before)
        )
    finally:
        await connection.close()
    _assert_keys_match(outcomes, {row["key"]: row for row in stored})
    told = {outcome.document["id"] for outcome in outcomes if outcome.status == 201 and outcome.document}
    assert len(written) == len(told), f"{len(written)} transactions written, {len(told)} answered 201"
    assert {str(row["id"]) for row in written} == told
    assert {row["id"]: row["balance"] for row in balances} == expected_balances(outcomes, balances_before)
    verified = wallet_command("ledger", "verify", database_url=database_url, check=False)
    assert verified.returncode == 0, verified.stdout + verified.stderr


def _assert_final_answers(outcomes: list[Outcome]) -> None:
    unfinished = [outcome for outcome in outcomes if outcome.status not in FINAL_STATUSES]
    assert not unfinished, [(outcome.status, outcome.document) for outcome in unfinished[:5]]
    allowed = {None, *FINAL_STATUSES, *RETRIED_STATUSES}
    seen = Counter(attempt.status for outcome in outcomes for attempt in outcome.attempts)
    assert set(seen) <= allowed, f"unexpected statuses: {seen}"
    for outcome in outcomes:
        assert outcome.document is not None
        if outcome.status == 409:
            assert outcome.document["code"] == "insufficient_funds", outcome.document
            continue
        operation = outcome.operation
        assert (outcome.document["type"], outcome.document["amount"]) == (
            operation.kind,
            operation.body["amount"],
        ), outcome.document


def _assert_keys_match(outcomes: list[Outcome], stored: dict[str, asyncpg.Record]) -> None:
    assert set(stored) == {outcome.operation.key for outcome in outcomes}
    for outcome in outcomes:
        row = stored[outcome.operation.key]
        assert outcome.document is not None
        stored_code = None if outcome.status == 201 else outcome.document["code"]
        assert row["decline_code"] == stored_code, (outcome.operation, row)
        if outcome.status == 201:
            assert str(row["transaction_id"]) == outcome.document["id"], (outcome.operation, row)
            assert row["transactions"] == 1, (outcome.operation, row)
        else:
            assert row["transaction_id"] is None and row["transactions"] == 0, (outcome.operation, row)


def expected_balances(outcomes: list[Outcome], balances_before: dict[str, int]) -> dict[str, int]:
    expected = dict(balances_before)
    for outcome in outcomes:
        if outcome.status != 201:
            continue
        operation = outcome.operation
        amount = operation.body["amount"]
        if operation.source is not None:
            expected[operation.source] -= amount
        if operation.target is not None:
            expected[operation.target] += amount
    return expected
