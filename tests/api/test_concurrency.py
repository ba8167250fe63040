"""Money movements sent truly in parallel (asyncio.gather over one httpx.AsyncClient) against the
real server and PostgreSQL: no lost update, no overdraft, no deadlock, no 500."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections import Counter
from typing import Any

import asyncpg
import httpx
import pytest

from support import THROUGH_PGBOUNCER_TOO, Server, server_of
from support import async_assert_ledger_ok as assert_ledger_ok
from support import async_balance as balance

GATHER_TIMEOUT_SECONDS = 60.0


@pytest.fixture
def server(request: pytest.FixtureRequest, direct_server: Server) -> Server:
    """The suite's server; through PgBouncer for the tests marked THROUGH_PGBOUNCER_TOO."""
    return server_of(request, direct_server)


async def new_wallet(client: httpx.AsyncClient, asset: str = "GOLD") -> str:
    response = await client.post("/v1/wallets", json={"owner_id": f"user-{uuid.uuid4()}", "asset": asset})
    assert response.status_code == 201, response.text
    wallet_id: str = response.json()["id"]
    return wallet_id


async def move(client: httpx.AsyncClient, path: str, body: dict[str, Any]) -> httpx.Response:
    return await client.post(path, json=body, headers={"Idempotency-Key": f"conc-{uuid.uuid4()}"})


async def fund(client: httpx.AsyncClient, wallet_id: str, amount: int) -> None:
    response = await move(client, f"/v1/wallets/{wallet_id}/topup", {"amount": amount})
    assert response.status_code == 201, response.text


async def gather_all(*requests: Any) -> list[httpx.Response]:
    """Run the requests concurrently; the bound turns a deadlock or a lost request into a failure."""
    responses: list[httpx.Response] = await asyncio.wait_for(
        asyncio.gather(*requests), timeout=GATHER_TIMEOUT_SECONDS
    )
    return responses


def problem_code(response: httpx.Response) -> str:
    assert response.headers["content-type"].startswith("application/problem+json"), response.headers
    code: str = response.json()["code"]
    return code


async def wallet_entries(server: Server, wallet_id: str) -> list[asyncpg.Record]:
    database = await asyncpg.connect(server.database_url)
    try:
        return await database.fetch(
            "SELECT account_sequence, direction, amount, balance_after FROM entry WHERE account_id = $1"
            " ORDER BY account_sequence",
            uuid.UUID(wallet_id),
        )
    finally:
        await database.close()


def assert_balance_chain(entries: list[asyncpg.Record], final_balance: int) -> None:
    """Each entry of a wallet, in posting order, starts from the balance the previous one left."""
    running = 0
    for entry in entries:
        running += entry["amount"] if entry["direction"] == "credit" else -entry["amount"]
        assert entry["balance_after"] == running, (entry, running)
    assert running == final_balance


@THROUGH_PGBOUNCER_TOO
async def test_five_parallel_spends_of_thirty_leave_ten(server: Server) -> None:
    async with server.async_client() as client:
        wallet_id = await new_wallet(client)
        await fund(client, wallet_id, 100)

        responses = await gather_all(
            *(move(client, f"/v1/wallets/{wallet_id}/spend", {"amount": 30}) for _ in range(5))
        )

        statuses = Counter(response.status_code for response in responses)
        assert statuses == {201: 3, 409: 2}, [response.text for response in responses]
        declined = [response for response in responses if response.status_code == 409]
        assert all(problem_code(response) == "insufficient_funds" for response in declined)
        succeeded = [response.json() for response in responses if response.status_code == 201]
        assert sorted(document["balance_after"] for document in succeeded) == [10, 40, 70]
        assert all("Idempotent-Replayed" not in response.headers for response in responses)
        assert await balance(client, wallet_id) == 10
        await assert_ledger_ok(client)


@THROUGH_PGBOUNCER_TOO
async def test_two_hundred_spends_of_one_on_150_each_see_a_distinct_balance(server: Server) -> None:
    async with server.async_client() as client:
        wallet_id = await new_wallet(client)
        await fund(client, wallet_id, 150)

        responses = await gather_all(
            *(move(client, f"/v1/wallets/{wallet_id}/spend", {"amount": 1}) for _ in range(200))
        )

        statuses = Counter(response.status_code for response in responses)
        assert statuses == {201: 150, 409: 50}, statuses
        declined = [response for response in responses if response.status_code == 409]
        assert {problem_code(response) for response in declined} == {"insufficient_funds"}
        answered = sorted(
            response.json()["balance_after"] for response in responses if response.status_code == 201
        )
        assert answered == list(range(150))
        assert await balance(client, wallet_id) == 0
        await assert_ledger_ok(client)

    entries = await wallet_entries(server, wallet_id)
    debits = [entry for entry in entries if entry["direction"] == "debit"]
    assert len(debits) == 150
    assert all(entry["amount"] == 1 for entry in debits)
    debit_balances = Counter(entry["balance_after"] for entry in debits)
    assert set(debit_balances) == set(range(150))
    assert set(debit_balances.values()) == {1}, "two spends saw the same balance"
    assert_balance_chain(entries, 0)


@THROUGH_PGBOUNCER_TOO
async def test_hundred_opposing_transfers_neither_deadlock_nor_fail_and_conserve_the_total(
    server: Server,
) -> None:
    rng = random.Random(20261126)
    async with server.async_client() as client:
        wallet_a, wallet_b = await new_wallet(client), await new_wallet(client)
        await fund(client, wallet_a, 120)
        await fund(client, wallet_b, 80)
        directions = [(wallet_a, wallet_b)] * 50 + [(wallet_b, wallet_a)] * 50
        rng.shuffle(directions)
        bodies: list[dict[str, Any]] = [
            {"from_wallet_id": source, "to_wallet_id": target, "amount": rng.randint(1, 10)}
            for source, target in directions
        ]

        responses = await gather_all(*(move(client, "/v1/transfers", body) for body in bodies))

        assert len(responses) == 100
        assert {response.status_code for response in responses} <= {201, 409}, [
            response.text for response in responses if response.status_code not in (201, 409)
        ]
        declined = [response for response in responses if response.status_code == 409]
        assert {problem_code(response) for response in declined} <= {"insufficient_funds"}
        expected = {wallet_a: 120, wallet_b: 80}
        succeeded_from: Counter[str] = Counter()
        for body, response in zip(bodies, responses, strict=True):
            if response.status_code == 201:
                document = response.json()
                assert (document["type"], document["wallet_id"], document["amount"]) == (
                    "transfer",
                    body["from_wallet_id"],
                    body["amount"],
                )
                expected[body["from_wallet_id"]] -= body["amount"]
                expected[body["to_wallet_id"]] += body["amount"]
                succeeded_from[body["from_wallet_id"]] += 1
        assert succeeded_from[wallet_a] > 0 and succeeded_from[wallet_b] > 0, succeeded_from
        final_a, final_b = await balance(client, wallet_a), await balance(client, wallet_b)
        assert final_a + final_b == 200
        assert {wallet_a: final_a, wallet_b: final_b} == expected
        await assert_ledger_ok(client)

    assert_balance_chain(await wallet_entries(server, wallet_a), final_a)
    assert_balance_chain(await wallet_entries(server, wallet_b), final_b)


def _apply(expected: dict[str, int], document: dict[str, Any]) -> None:
    """Move `expected` by what one 201 Transaction says happened."""
    amount = document["amount"]
    if document["type"] in ("topup", "bonus"):
        expected[document["wallet_id"]] += amount
        return
    expected[document["wallet_id"]] -= amount
    if document["type"] == "transfer":
        credited = [entry["account"] for entry in document["entries"] if entry["direction"] == "credit"]
        assert len(credited) == 1, document
        expected[credited[0]] += amount


@THROUGH_PGBOUNCER_TOO
async def test_mixed_parallel_load_leaves_the_balances_the_responses_imply(server: Server) -> None:
    rng = random.Random(17)
    async with server.async_client() as client:
        wallets = [await new_wallet(client) for _ in range(6)]
        for wallet_id in wallets:
            await fund(client, wallet_id, 50)
        requests: list[tuple[str, str, dict[str, Any]]] = []
        for _ in range(300):
            kind = rng.choice(["topup", "bonus", "spend", "spend", "transfer", "transfer"])
            amount = rng.randint(1, 40)
            if kind == "transfer":
                source, target = rng.sample(wallets, 2)
                body = {"from_wallet_id": source, "to_wallet_id": target, "amount": amount}
                requests.append((kind, "/v1/transfers", body))
            else:
                wallet_id = rng.choice(wallets)
                requests.append((kind, f"/v1/wallets/{wallet_id}/{kind}", {"amount": amount}))

        responses = await gather_all(*(move(client, path, body) for _, path, body in requests))

        assert {response.status_code for response in responses} <= {201, 409}, [
            response.text for response in responses if response.status_code not in (201, 409)
        ]
        expected = dict.fromkeys(wallets, 50)
        for (kind, _, body), response in zip(requests, responses, strict=True):
            if response.status_code == 409:
                assert kind in ("spend", "transfer") and problem_code(response) == "insufficient_funds"
                continue
            document = response.json()
            assert (document["type"], document["amount"]) == (kind, body["amount"])
            _apply(expected, document)
        succeeded = Counter(
            kind
            for (kind, _, _), response in zip(requests, responses, strict=True)
            if response.status_code == 201
        )
        assert set(succeeded) == {"topup", "bonus", "spend", "transfer"}, succeeded
        finals = {wallet_id: await balance(client, wallet_id) for wallet_id in wallets}
        assert finals == expected
        await assert_ledger_ok(client)

    for wallet_id in wallets:
        assert_balance_chain(await wallet_entries(server, wallet_id), finals[wallet_id])
