"""Reversals: a transaction that mirrors another for what is left of it (or a part). Refunds
of a spend, chargebacks of a top-up, a transfer sent back; never more than the original."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import httpx

from support import Server, assert_ledger_ok, async_assert_ledger_ok, balance, new_wallet, topup


def post(client: httpx.Client, path: str, body: dict[str, Any], key: str | None = None) -> httpx.Response:
    return client.post(path, json=body, headers={"Idempotency-Key": key or str(uuid.uuid4())})


def reverse(client: httpx.Client, transaction_id: str, body: dict[str, Any] | None = None) -> httpx.Response:
    return post(client, f"/v1/transactions/{transaction_id}/reverse", body or {})


def test_a_refund_mirrors_the_spend_in_parts_up_to_its_amount(client: httpx.Client) -> None:
    wallet_id = new_wallet(client)
    assert topup(client, wallet_id, 100).status_code == 201
    spend = post(client, f"/v1/wallets/{wallet_id}/spend", {"amount": 60}).json()
    first = reverse(client, spend["id"], {"amount": 25, "reference": "refund-1"})
    assert first.status_code == 201, first.text
    refund = first.json()
    assert (refund["type"], refund["amount"], refund["reverses"], refund["wallet_id"]) == (
        "reversal",
        25,
        spend["id"],
        wallet_id,
    )
    assert [(e["direction"], e["account"]) for e in refund["entries"]] == [
        ("debit", "revenue:GOLD"),
        ("credit", wallet_id),
    ]
    assert refund["balance_after"] == 65 and refund["hold_id"] is None
    assert client.get(f"/v1/transactions/{refund['id']}").content == first.content
    rest = reverse(client, spend["id"])  # default: what is left
    assert (rest.status_code, rest.json()["amount"]) == (201, 35)
    more = reverse(client, spend["id"], {"amount": 1})
    assert (more.status_code, more.json()["code"]) == (409, "reversal_exceeds_original"), more.text
    assert balance(client, wallet_id) == 100
    assert_ledger_ok(client)


def test_a_topup_chargeback_and_a_transfer_sent_back(client: httpx.Client) -> None:
    sender, receiver = new_wallet(client), new_wallet(client)
    top = topup(client, sender, 80).json()
    transfer = post(
        client, "/v1/transfers", {"from_wallet_id": sender, "to_wallet_id": receiver, "amount": 30}
    )
    back = reverse(client, transfer.json()["id"], {"amount": 10})
    assert back.status_code == 201, back.text
    assert [(e["direction"], e["account"]) for e in back.json()["entries"]] == [
        ("debit", receiver),
        ("credit", sender),
    ]
    chargeback = reverse(client, top["id"], {"amount": 60})
    assert chargeback.status_code == 201, chargeback.text
    assert [(e["direction"], e["account"]) for e in chargeback.json()["entries"]] == [
        ("debit", sender),
        ("credit", "treasury:GOLD"),
    ]
    assert (balance(client, sender), balance(client, receiver)) == (0, 20)
    assert_ledger_ok(client)


def test_reversing_a_transfer_the_receiver_spent_is_declined_and_moves_nothing(client: httpx.Client) -> None:
    sender, receiver = new_wallet(client), new_wallet(client)
    assert topup(client, sender, 50).status_code == 201
    transfer = post(
        client, "/v1/transfers", {"from_wallet_id": sender, "to_wallet_id": receiver, "amount": 50}
    )
    assert post(client, f"/v1/wallets/{receiver}/spend", {"amount": 45}).status_code == 201
    key = str(uuid.uuid4())
    declined = post(client, f"/v1/transactions/{transfer.json()['id']}/reverse", {}, key)
    assert (declined.status_code, declined.json()["code"]) == (409, "insufficient_funds"), declined.text
    assert (balance(client, sender), balance(client, receiver)) == (0, 5)
    replay = post(client, f"/v1/transactions/{transfer.json()['id']}/reverse", {}, key)
    assert (replay.status_code, replay.content) == (409, declined.content)


def test_what_cannot_be_reversed(client: httpx.Client) -> None:
    wallet_id, other = new_wallet(client), new_wallet(client)
    top = topup(client, wallet_id, 100).json()
    reversal = reverse(client, top["id"], {"amount": 10}).json()
    again = reverse(client, reversal["id"])
    assert (again.status_code, again.json()["code"]) == (422, "not_reversible"), again.text
    postings = [
        {"from": wallet_id, "to": other, "amount": 20},
        {"from": wallet_id, "to": "revenue", "amount": 5},
    ]
    journal = post(client, "/v1/journal", {"asset": "GOLD", "postings": postings}).json()
    part = reverse(client, journal["id"], {"amount": 10})
    assert (part.status_code, part.json()["code"]) == (422, "validation_error"), part.text
    whole = reverse(client, journal["id"])
    assert whole.status_code == 201, whole.text
    assert len(whole.json()["entries"]) == 4 and whole.json()["amount"] == 25
    unknown = reverse(client, str(uuid.uuid4()))
    assert (unknown.status_code, unknown.json()["code"]) == (404, "transaction_not_found")
    assert reverse(client, "not-a-uuid").status_code == 404
    assert (balance(client, wallet_id), balance(client, other)) == (90, 0)
    assert_ledger_ok(client)


async def test_fifty_partial_refunds_of_ten_on_a_spend_of_a_hundred_ten_succeed(server: Server) -> None:
    async with server.async_client() as client:
        created = await client.post("/v1/wallets", json={"owner_id": f"user-{uuid.uuid4()}", "asset": "GOLD"})
        wallet_id = created.json()["id"]
        key = {"Idempotency-Key": str(uuid.uuid4())}
        await client.post(f"/v1/wallets/{wallet_id}/topup", json={"amount": 100}, headers=key)
        key = {"Idempotency-Key": str(uuid.uuid4())}
        spend = (
            await client.post(f"/v1/wallets/{wallet_id}/spend", json={"amount": 100}, headers=key)
        ).json()
        keys = [str(uuid.uuid4()) for _ in range(50)]
        path = f"/v1/transactions/{spend['id']}/reverse"
        responses = await asyncio.gather(
            *(client.post(path, json={"amount": 10}, headers={"Idempotency-Key": k}) for k in keys)
        )
        statuses = sorted(response.status_code for response in responses)
        assert statuses == [201] * 10 + [409] * 40, [
            r.text for r in responses if r.status_code not in (201, 409)
        ]
        assert {r.json()["code"] for r in responses if r.status_code == 409} == {"reversal_exceeds_original"}
        replays = await asyncio.gather(
            *(client.post(path, json={"amount": 10}, headers={"Idempotency-Key": k}) for k in keys)
        )
        for first, replay in zip(responses, replays, strict=True):
            assert (replay.status_code, replay.content) == (first.status_code, first.content)
            assert replay.headers["Idempotent-Replayed"] == "true"
        document = (await client.get(f"/v1/wallets/{wallet_id}")).json()
        assert document["balance"] == 100
        await async_assert_ledger_ok(client)
