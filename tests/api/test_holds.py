"""Holds: reserve now, capture (a spend) or void later. A hold moves no money but lowers what
the wallet has available; a pending hold past its expiry is expired at once."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import httpx

from support import Server, assert_ledger_ok, async_assert_ledger_ok, new_wallet, topup

GATHER_TIMEOUT_SECONDS = 120
TOO_LONG = 30 * 86400 + 1  # seconds: past the 30 days a hold may last


def post(client: httpx.Client, path: str, body: dict[str, Any], key: str | None = None) -> httpx.Response:
    return client.post(path, json=body, headers={"Idempotency-Key": key or str(uuid.uuid4())})


def wallet(client: httpx.Client, wallet_id: str) -> dict[str, Any]:
    response = client.get(f"/v1/wallets/{wallet_id}")
    assert response.status_code == 200, response.text
    document: dict[str, Any] = response.json()
    return document


def amounts(client: httpx.Client, wallet_id: str) -> tuple[int, int, int]:
    document = wallet(client, wallet_id)
    assert document["available"] == document["balance"] - document["held"], document
    return document["balance"], document["held"], document["available"]


def funded(client: httpx.Client, amount: int) -> str:
    wallet_id = new_wallet(client)
    assert topup(client, wallet_id, amount).status_code == 201
    return wallet_id


def test_a_hold_lowers_available_and_a_capture_spends_part_of_it(client: httpx.Client) -> None:
    wallet_id = funded(client, 100)
    key = str(uuid.uuid4())
    placed = post(client, f"/v1/wallets/{wallet_id}/holds", {"amount": 60, "reference": "order-1"}, key)
    assert placed.status_code == 201, placed.text
    hold = placed.json()
    assert (hold["status"], hold["amount"], hold["captured_amount"], hold["wallet_id"]) == (
        "pending",
        60,
        0,
        wallet_id,
    )
    assert hold["transaction_id"] is None and hold["reference"] == "order-1"
    assert amounts(client, wallet_id) == (100, 60, 40)
    assert client.get(f"/v1/holds/{hold['id']}").json() == hold

    short = post(client, f"/v1/wallets/{wallet_id}/spend", {"amount": 41})
    assert (short.status_code, short.json()["code"]) == (409, "insufficient_funds")
    assert "40 available" in short.json()["detail"]
    again = post(client, f"/v1/wallets/{wallet_id}/holds", {"amount": 60, "reference": "order-1"}, key)
    assert (again.status_code, again.content) == (201, placed.content)
    assert again.headers["Idempotent-Replayed"] == "true"

    captured = post(client, f"/v1/holds/{hold['id']}/capture", {"amount": 25})
    assert captured.status_code == 201, captured.text
    transaction = captured.json()
    assert (transaction["type"], transaction["amount"], transaction["hold_id"]) == ("spend", 25, hold["id"])
    assert transaction["balance_after"] == 75
    assert amounts(client, wallet_id) == (75, 0, 75)  # the rest of the hold is released
    after = client.get(f"/v1/holds/{hold['id']}").json()
    assert (after["status"], after["captured_amount"], after["transaction_id"]) == (
        "captured",
        25,
        transaction["id"],
    )
    replay = post(client, f"/v1/wallets/{wallet_id}/holds", {"amount": 60, "reference": "order-1"}, key)
    assert replay.content == placed.content, "a replay shows the hold as it was placed"
    assert_ledger_ok(client)


def test_void_releases_the_hold_and_a_second_void_or_capture_is_refused(client: httpx.Client) -> None:
    wallet_id = funded(client, 50)
    hold = post(client, f"/v1/wallets/{wallet_id}/holds", {"amount": 50}).json()
    key = str(uuid.uuid4())
    voided = post(client, f"/v1/holds/{hold['id']}/void", {}, key)
    assert voided.status_code == 200, voided.text
    assert voided.json()["status"] == "voided"
    assert amounts(client, wallet_id) == (50, 0, 50)
    replay = post(client, f"/v1/holds/{hold['id']}/void", {}, key)
    assert (replay.status_code, replay.content, replay.headers["Idempotent-Replayed"]) == (
        200,
        voided.content,
        "true",
    )
    for action in ("void", "capture"):
        refused = post(client, f"/v1/holds/{hold['id']}/{action}", {})
        assert (refused.status_code, refused.json()["code"]) == (409, "hold_not_pending"), refused.text
        assert "voided" in refused.json()["detail"]


def test_hold_refusals(client: httpx.Client) -> None:
    wallet_id = funded(client, 30)
    hold = post(client, f"/v1/wallets/{wallet_id}/holds", {"amount": 20}).json()
    unknown = str(uuid.uuid4())
    cases = [
        (f"/v1/wallets/{wallet_id}/holds", {"amount": 11}, 409, "insufficient_funds"),
        (f"/v1/wallets/{unknown}/holds", {"amount": 1}, 404, "wallet_not_found"),
        (f"/v1/wallets/{wallet_id}/holds", {"amount": 1, "expires_in_seconds": 0}, 422, "validation_error"),
        (
            f"/v1/wallets/{wallet_id}/holds",
            {"amount": 1, "expires_in_seconds": 2592001},
            422,
            "validation_error",
        ),
        (f"/v1/holds/{hold['id']}/capture", {"amount": 21}, 422, "capture_exceeds_hold"),
        (f"/v1/holds/{unknown}/capture", {}, 404, "hold_not_found"),
        (f"/v1/holds/{unknown}/void", {}, 404, "hold_not_found"),
        ("/v1/holds/not-a-uuid/void", {}, 404, "hold_not_found"),
        (f"/v1/holds/{hold['id']}/void", {"amount": 1}, 422, "validation_error"),
    ]
    for path, body, status, code in cases:
        response = post(client, path, body)
        assert (response.status_code, response.json()["code"]) == (status, code), (path, body, response.text)
    assert client.get(f"/v1/holds/{unknown}").status_code == 404
    assert amounts(client, wallet_id) == (30, 20, 10)
    assert_ledger_ok(client)


def test_a_hold_past_its_expiry_is_expired_at_once_and_frees_available(client: httpx.Client) -> None:
    wallet_id = funded(client, 40)
    hold = post(client, f"/v1/wallets/{wallet_id}/holds", {"amount": 30, "expires_in_seconds": 1}).json()
    assert amounts(client, wallet_id) == (40, 30, 10)
    deadline = time.monotonic() + 10
    while client.get(f"/v1/holds/{hold['id']}").json()["status"] == "pending":
        assert time.monotonic() < deadline, "the hold never expired"
        time.sleep(0.05)  # poll interval of a bounded wait for the wall clock to pass expires_at
    assert amounts(client, wallet_id) == (40, 0, 40), "an expired hold holds nothing"
    late = post(client, f"/v1/holds/{hold['id']}/capture", {})
    assert (late.status_code, late.json()["code"]) == (409, "hold_not_pending"), late.text
    assert "expired" in late.json()["detail"]
    assert amounts(client, wallet_id) == (40, 0, 40)
    assert post(client, f"/v1/wallets/{wallet_id}/spend", {"amount": 40}).status_code == 201
    listed = client.get(f"/v1/wallets/{wallet_id}/holds", params={"status": "expired"}).json()["data"]
    assert [item["id"] for item in listed] == [hold["id"]]
    assert_ledger_ok(client)


def test_a_wallets_holds_page_newest_first_and_filter_by_status(client: httpx.Client) -> None:
    wallet_id = funded(client, 100)
    ids = [post(client, f"/v1/wallets/{wallet_id}/holds", {"amount": 5}).json()["id"] for _ in range(5)]
    post(client, f"/v1/holds/{ids[1]}/void", {})
    post(client, f"/v1/holds/{ids[3]}/capture", {})
    seen, cursor = [], None
    while True:
        params: dict[str, Any] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = client.get(f"/v1/wallets/{wallet_id}/holds", params=params).json()
        seen += [item["id"] for item in page["data"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ids[::-1]
    pending = client.get(f"/v1/wallets/{wallet_id}/holds", params={"status": "pending"}).json()["data"]
    assert [item["id"] for item in pending] == [ids[4], ids[2], ids[0]]
    bad = client.get(f"/v1/wallets/{wallet_id}/holds", params={"status": "lost"})
    assert bad.status_code == 422


async def test_capture_and_void_of_one_hold_sent_together_fifty_times_one_wins(server: Server) -> None:
    async with server.async_client() as client:
        wallet_id = await _new_wallet(client)
        await client.post(f"/v1/wallets/{wallet_id}/topup", json={"amount": 50 * 10}, headers=_key())
        balance = 500
        for round_number in range(50):
            hold = (
                await client.post(f"/v1/wallets/{wallet_id}/holds", json={"amount": 10}, headers=_key())
            ).json()
            capture, void = await asyncio.gather(
                client.post(f"/v1/holds/{hold['id']}/capture", json={"amount": 4}, headers=_key()),
                client.post(f"/v1/holds/{hold['id']}/void", json={}, headers=_key()),
            )
            outcomes = sorted((capture.status_code, void.status_code))
            assert outcomes in ([200, 409], [201, 409]), (round_number, capture.text, void.text)
            loser = capture if capture.status_code == 409 else void
            assert loser.json()["code"] == "hold_not_pending"
            if capture.status_code == 201:
                balance -= 4
            document = (await client.get(f"/v1/wallets/{wallet_id}")).json()
            assert (document["balance"], document["held"], document["available"]) == (balance, 0, balance)
        await async_assert_ledger_ok(client)


async def test_a_hundred_holds_of_ten_on_five_hundred_fifty_succeed(server: Server) -> None:
    async with server.async_client() as client:
        wallet_id = await _new_wallet(client)
        await client.post(f"/v1/wallets/{wallet_id}/topup", json={"amount": 500}, headers=_key())
        responses = await asyncio.wait_for(
            asyncio.gather(
                *(
                    client.post(f"/v1/wallets/{wallet_id}/holds", json={"amount": 10}, headers=_key())
                    for _ in range(100)
                )
            ),
            GATHER_TIMEOUT_SECONDS,
        )
        statuses = sorted(response.status_code for response in responses)
        assert statuses == [201] * 50 + [409] * 50
        document = (await client.get(f"/v1/wallets/{wallet_id}")).json()
        assert (document["balance"], document["held"], document["available"]) == (500, 500, 0)
        spend = await client.post(f"/v1/wallets/{wallet_id}/spend", json={"amount": 1}, headers=_key())
        assert (spend.status_code, spend.json()["code"]) == (409, "insufficient_funds")
        first = next(response.json() for response in responses if response.status_code == 201)
        await client.post(f"/v1/holds/{first['id']}/void", json={}, headers=_key())
        spend = await client.post(f"/v1/wallets/{wallet_id}/spend", json={"amount": 10}, headers=_key())
        assert spend.status_code == 201, spend.text
        await async_assert_ledger_ok(client)


def _key() -> dict[str, str]:
    return {"Idempotency-Key": str(uuid.uuid4())}


async def _new_wallet(client: httpx.AsyncClient) -> str:
    response = await client.post("/v1/wallets", json={"owner_id": f"user-{uuid.uuid4()}", "asset": "GOLD"})
    assert response.status_code == 201, response.text
    wallet_id: str = response.json()["id"]
    return wallet_id
