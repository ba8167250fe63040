"""POST /v1/journal: many postings of one asset as one transaction, all of them or none, with
wallets locked in one order whatever the order of the postings."""

from __future__ import annotations

import asyncio
import random
import uuid
from typing import Any

import httpx

from support import (
    Server,
    assert_ledger_ok,
    async_assert_ledger_ok,
    async_balance,
    balance,
    new_wallet,
    topup,
)

GATHER_TIMEOUT_SECONDS = 120


def journal(
    client: httpx.Client, postings: list[tuple[str, str, int]], asset: str = "GOLD", key: str | None = None
) -> httpx.Response:
    body = {"asset": asset, "postings": [{"from": a, "to": b, "amount": n} for a, b, n in postings]}
    return client.post("/v1/journal", json=body, headers={"Idempotency-Key": key or str(uuid.uuid4())})


def funded(client: httpx.Client, amount: int, asset: str = "GOLD") -> str:
    wallet_id = new_wallet(client, asset)
    if amount:
        assert topup(client, wallet_id, amount).status_code == 201
    return wallet_id


def test_a_match_settles_in_one_transaction(client: httpx.Client) -> None:
    """API.md's example: four players pay 100 in, the winner gets 360, the house keeps 40."""
    players = [funded(client, 500) for _ in range(4)]
    winner = players[2]
    postings = [(player, "revenue", 100) for player in players] + [("revenue", winner, 360)]
    response = journal(client, postings, key=f"match-{uuid.uuid4()}")
    assert response.status_code == 201, response.text
    document = response.json()
    assert (document["type"], document["asset"], document["amount"]) == ("journal", "GOLD", 760)
    assert document["wallet_id"] == players[0]  # the first wallet debited
    assert document["balance_after"] == 400
    entries = document["entries"]
    assert len(entries) == 10
    expected = []
    for player in players:
        expected += [("debit", player, 100, 400), ("credit", "revenue:GOLD", 100, None)]
    expected += [("debit", "revenue:GOLD", 360, None), ("credit", winner, 360, 760)]
    assert [(e["direction"], e["account"], e["amount"], e["balance_after"]) for e in entries] == expected
    assert [balance(client, player) for player in players] == [400, 400, 760, 400]
    read = client.get(f"/v1/transactions/{document['id']}")
    assert read.content == response.content
    history = client.get(f"/v1/wallets/{winner}/transactions").json()["data"]
    assert [item["id"] for item in history].count(document["id"]) == 1, "the journal shows once"
    assert history[0]["id"] == document["id"]
    assert_ledger_ok(client)


def test_one_short_wallet_among_five_moves_nothing(client: httpx.Client) -> None:
    wallets = [funded(client, 100) for _ in range(4)]
    short = funded(client, 10)
    wallets.insert(2, short)
    key = f"short-{uuid.uuid4()}"
    postings = [(wallet, "revenue", 50) for wallet in wallets]
    response = journal(client, postings, key=key)
    assert response.status_code == 409, response.text
    problem = response.json()
    assert problem["code"] == "insufficient_funds" and short in problem["detail"], problem
    assert [balance(client, wallet) for wallet in wallets] == [100, 100, 10, 100, 100]
    replay = journal(client, postings, key=key)
    assert (replay.status_code, replay.content) == (409, response.content)
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert_ledger_ok(client)


def test_a_posting_order_that_overdraws_midway_is_declined(client: httpx.Client) -> None:
    """Postings apply in order: a wallet must hold each debit when its posting comes."""
    empty, rich = funded(client, 0), funded(client, 100)
    first_credit = journal(client, [(rich, empty, 50), (empty, "revenue", 50)])
    assert first_credit.status_code == 201, first_credit.text
    first_debit = journal(client, [(empty, "revenue", 10), (rich, empty, 10)])
    assert first_debit.status_code == 409, first_debit.text
    assert (balance(client, empty), balance(client, rich)) == (0, 50)


def test_a_journal_declines_and_refusals(client: httpx.Client) -> None:
    gold, points = funded(client, 100), funded(client, 100, "POINTS")

    def body(asset: str, *postings: tuple[str, str, int]) -> dict[str, Any]:
        return {"asset": asset, "postings": [{"from": a, "to": b, "amount": n} for a, b, n in postings]}

    cases: list[tuple[Any, int, str]] = [
        (body("GOLD", (gold, points, 5)), 422, "asset_mismatch"),
        (body("GOLD", (gold, str(uuid.uuid4()), 5)), 404, "wallet_not_found"),
        (body("NOPE", (gold, "revenue", 5)), 404, "asset_not_found"),
        (body("GOLD", (gold, gold, 5)), 422, "validation_error"),
        (body("GOLD", ("treasury", "revenue", 5)), 422, "validation_error"),
        (body("GOLD", ("house", gold, 5)), 422, "validation_error"),
        (body("GOLD"), 422, "validation_error"),
        (body("GOLD", *[("treasury", gold, 1)] * 65), 422, "validation_error"),
        (body("GOLD", (gold, "revenue", 0)), 422, "validation_error"),
    ]
    for body, status, code in cases:
        response = client.post("/v1/journal", json=body, headers={"Idempotency-Key": str(uuid.uuid4())})
        assert (response.status_code, response.json()["code"]) == (status, code), (body, response.text)
    assert (balance(client, gold), balance(client, points)) == (100, 100)
    assert_ledger_ok(client)


async def test_two_hundred_concurrent_journals_over_overlapping_wallets_neither_deadlock_nor_fail(
    server: Server,
) -> None:
    """Each journal moves money among 10 of 30 wallets, its postings in a random order: the
    wallets are locked in one order whatever the postings say, so none waits on another in a
    cycle; each is all or nothing, and the total stays what it was."""
    rng = random.Random(7)
    async with server.async_client() as client:
        wallets = [await new_wallet_async(client) for _ in range(30)]
        for wallet in wallets:
            response = await client.post(
                f"/v1/wallets/{wallet}/topup",
                json={"amount": 1000},
                headers={"Idempotency-Key": str(uuid.uuid4())},
            )
            assert response.status_code == 201, response.text

        def journal_body() -> dict[str, Any]:
            chosen = rng.sample(wallets, 10)
            postings = [
                {
                    "from": chosen[i],
                    "to": chosen[(i + 1 + rng.randrange(9)) % 10],
                    "amount": rng.randint(1, 400),
                }
                for i in range(10)
            ]
            rng.shuffle(postings)
            return {"asset": "GOLD", "postings": postings}

        bodies = [journal_body() for _ in range(200)]
        responses = await asyncio.wait_for(
            asyncio.gather(
                *(
                    client.post("/v1/journal", json=body, headers={"Idempotency-Key": str(uuid.uuid4())})
                    for body in bodies
                )
            ),
            GATHER_TIMEOUT_SECONDS,
        )
        statuses = [response.status_code for response in responses]
        assert set(statuses) <= {201, 409}, [r.text for r in responses if r.status_code not in (201, 409)][:3]
        assert statuses.count(201) > 0
        balances = [await async_balance(client, wallet) for wallet in wallets]
        assert sum(balances) == 30 * 1000
        assert min(balances) >= 0
        await async_assert_ledger_ok(client)


async def new_wallet_async(client: httpx.AsyncClient) -> str:
    response = await client.post("/v1/wallets", json={"owner_id": f"user-{uuid.uuid4()}", "asset": "GOLD"})
    assert response.status_code == 201, response.text
    wallet_id: str = response.json()["id"]
    return wallet_id
