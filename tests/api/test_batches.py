"""POST /v1/batches: many independent movements in one request. An item is exactly the single
request it names: same rules, same key space, same fingerprint, so the two replay each other."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx

from support import Server, assert_ledger_ok, async_balance, balance, new_wallet, topup


def batch(client: httpx.Client, items: list[dict[str, Any]]) -> httpx.Response:
    return client.post("/v1/batches", json={"items": items})


def item(op: str, wallet_id: str, amount: int, key: str | None = None, **fields: Any) -> dict[str, Any]:
    return {
        "op": op,
        "wallet_id": wallet_id,
        "amount": amount,
        "idempotency_key": key or str(uuid.uuid4()),
        **fields,
    }


def test_a_batch_of_a_thousand_items_applies_each(client: httpx.Client) -> None:
    wallets = [new_wallet(client) for _ in range(20)]
    items = [item("topup", wallets[n % 20], n + 1, reference=f"batch-{n}") for n in range(1000)]
    response = batch(client, items)
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [result["status"] for result in results] == [201] * 1000
    assert not any(result["replayed"] for result in results)
    assert [result["body"]["amount"] for result in results] == list(range(1, 1001))
    assert [result["body"]["reference"] for result in results] == [f"batch-{n}" for n in range(1000)]
    for number, wallet in enumerate(wallets):
        assert balance(client, wallet) == sum(n + 1 for n in range(1000) if n % 20 == number)
    assert_ledger_ok(client)


def test_an_item_and_its_single_request_replay_each_other(client: httpx.Client) -> None:
    wallet = new_wallet(client)
    assert topup(client, wallet, 100).status_code == 201
    first_key, second_key = f"item-{uuid.uuid4()}", f"single-{uuid.uuid4()}"

    batched = batch(client, [item("spend", wallet, 30, first_key, reference="order-1")])
    [result] = batched.json()["results"]
    assert (result["status"], result["replayed"]) == (201, False)
    single = client.post(
        f"/v1/wallets/{wallet}/spend",
        json={"reference": "order-1", "amount": 30},
        headers={"Idempotency-Key": first_key},
    )
    assert single.status_code == 201 and single.headers["Idempotent-Replayed"] == "true"
    assert single.json() == result["body"]

    alone = client.post(
        f"/v1/wallets/{wallet}/spend", json={"amount": 20}, headers={"Idempotency-Key": second_key}
    )
    assert alone.status_code == 201
    [again] = batch(client, [item("spend", wallet, 20, second_key)]).json()["results"]
    assert (again["status"], again["replayed"], again["body"]) == (201, True, alone.json())

    [reused] = batch(client, [item("spend", wallet, 21, second_key)]).json()["results"]
    assert (reused["status"], reused["body"]["code"]) == (422, "idempotency_key_reused")
    assert balance(client, wallet) == 50


def test_items_are_independent_and_each_keeps_its_own_answer(client: httpx.Client) -> None:
    wallet, other = new_wallet(client), new_wallet(client)
    items = [
        item("topup", wallet, 50),
        item("spend", wallet, 80),  # more than it holds: declined, the others go on
        {
            "op": "transfer",
            "from_wallet_id": wallet,
            "to_wallet_id": wallet,
            "amount": 5,
            "idempotency_key": "x1",
        },
        {
            "op": "transfer",
            "from_wallet_id": wallet,
            "to_wallet_id": other,
            "amount": 20,
            "idempotency_key": "x2",
        },
        item("bonus", str(uuid.uuid4()), 5),
        {
            "op": "journal",
            "asset": "GOLD",
            "postings": [{"from": other, "to": "revenue", "amount": 5}],
            "idempotency_key": str(uuid.uuid4()),
        },
    ]
    response = batch(client, items)
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert [(r["status"], r["body"].get("code")) for r in results] == [
        (201, None),
        (409, "insufficient_funds"),
        (422, "same_wallet"),
        (201, None),
        (404, "wallet_not_found"),
        (201, None),
    ]
    assert (balance(client, wallet), balance(client, other)) == (30, 15)
    again = batch(client, items).json()["results"]
    assert [(r["status"], r["replayed"]) for r in again] == [
        (201, True),
        (409, True),
        (422, False),  # same_wallet is refused before the ledger: not stored
        (201, True),
        (404, True),
        (201, True),
    ]
    assert [r["body"] for r in again] == [r["body"] for r in results]
    assert_ledger_ok(client)


def test_a_malformed_item_rejects_the_batch_and_nothing_moves(client: httpx.Client) -> None:
    wallet = new_wallet(client)
    keys = [str(uuid.uuid4()) for _ in range(3)]
    items = [
        item("topup", wallet, 10, keys[0]),
        item("topup", wallet, 10, keys[1]),
        item("topup", wallet, 10, keys[2]),
    ]
    items[1]["amount"] = "10"
    response = batch(client, items)
    assert response.status_code == 422, response.text
    problem = response.json()
    assert problem["code"] == "validation_error"
    assert [error["loc"] for error in problem["errors"]] == [["body", "items", 1, "amount"]]
    assert balance(client, wallet) == 0
    cases: list[tuple[Any, list[Any]]] = [
        (
            {"op": "refund", "wallet_id": wallet, "amount": 1, "idempotency_key": "k"},
            ["body", "items", 1, "op"],
        ),
        ({**items[0], "idempotency_key": ""}, ["body", "items", 1, "idempotency_key"]),
        ({**items[0], "extra": True}, ["body", "items", 1, "extra"]),
        (7, ["body", "items", 1]),
    ]
    for malformed, location in cases:
        response = batch(client, [items[0], malformed])
        assert response.status_code == 422, response.text
        assert [error["loc"] for error in response.json()["errors"]] == [location], response.text
    bodies: list[Any] = [{"items": []}, {"items": {}}, {"things": []}, [], {"items": [items[0]] * 1001}]
    for body in bodies:
        assert client.post("/v1/batches", json=body).status_code == 422, body
    assert balance(client, wallet) == 0
    items[1]["amount"] = 10  # the client fixes it and sends the same keys again: they were not claimed
    assert [r["status"] for r in batch(client, items).json()["results"]] == [201, 201, 201]
    assert balance(client, wallet) == 30


def test_two_items_with_one_key_reject_the_batch(client: httpx.Client) -> None:
    wallet = new_wallet(client)
    items = [
        item("topup", wallet, 1, "same"),
        item("topup", wallet, 2, "other"),
        item("topup", wallet, 3, "same"),
    ]
    response = batch(client, items)
    assert response.status_code == 422, response.text
    assert [error["loc"] for error in response.json()["errors"]] == [["body", "items", 2, "idempotency_key"]]
    assert balance(client, wallet) == 0


def test_a_batch_may_be_larger_than_a_single_request_body(client: httpx.Client) -> None:
    wallet = new_wallet(client)
    items = [item("topup", wallet, 1, metadata={"pad": "x" * 600}) for _ in range(300)]
    content_length = len(httpx.Request("POST", "/", json={"items": items}).content)
    assert 64 * 1024 < content_length < 1024 * 1024
    response = batch(client, items)
    assert response.status_code == 200, response.text
    too_large = client.post(
        "/v1/batches", content=b" " * (1024 * 1024 + 1), headers={"Content-Type": "application/json"}
    )
    assert too_large.status_code == 413
    assert balance(client, wallet) == 300


async def test_the_same_batch_sent_four_times_at_once_applies_each_item_once(server: Server) -> None:
    async with server.async_client() as client:
        wallets = []
        for _ in range(5):
            response = await client.post(
                "/v1/wallets", json={"owner_id": f"user-{uuid.uuid4()}", "asset": "GOLD"}
            )
            wallets.append(response.json()["id"])
        items = [item("topup", wallets[n % 5], 1 + n % 7) for n in range(200)]
        responses = await asyncio.gather(
            *(client.post("/v1/batches", json={"items": items}) for _ in range(4))
        )
        assert [response.status_code for response in responses] == [200] * 4
        for position in range(200):
            answers = [response.json()["results"][position] for response in responses]
            assert {answer["status"] for answer in answers} == {201}
            assert sorted(answer["replayed"] for answer in answers) == [False, True, True, True]
            assert len({answer["body"]["id"] for answer in answers}) == 1
        for number, wallet in enumerate(wallets):
            expected = sum(1 + n % 7 for n in range(200) if n % 5 == number)
            assert await async_balance(client, wallet) == expected
