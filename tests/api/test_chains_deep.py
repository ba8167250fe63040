"""A clean ledger verifies deep: 10,000 money movements in concurrent batches (top-ups and bonuses,
some of them lots that expire during or after the run, spends and transfers), with holds placed, captured
and voided and reversals posted at the same time, leave every hash chain whole."""

from __future__ import annotations

import asyncio
import random
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from support import Server

BATCHES = 40
BATCH_ITEMS = 250
WALLETS = 20
GATHER_TIMEOUT_SECONDS = 240


def _key() -> dict[str, str]:
    return {"Idempotency-Key": str(uuid.uuid4())}


def _item(chooser: random.Random, wallets: list[str]) -> dict[str, Any]:
    source, target = chooser.sample(wallets, 2)
    kind = chooser.choice(("topup", "bonus", "spend", "spend", "transfer"))
    item: dict[str, Any] = {
        "op": kind,
        "idempotency_key": str(uuid.uuid4()),
        "amount": chooser.randint(1, 40),
    }
    if kind == "transfer":
        item |= {"from_wallet_id": source, "to_wallet_id": target}
    else:
        item["wallet_id"] = source
    if kind in ("topup", "bonus") and chooser.random() < 0.5:
        item["expires_at"] = (datetime.now(UTC) + timedelta(seconds=chooser.uniform(4, 10))).isoformat()
    return item


async def _mixed_movements(server: Server) -> int:
    async with server.async_client() as client:
        wallets = []
        for _ in range(WALLETS):
            created = await client.post(
                "/v1/wallets", json={"owner_id": f"deep-{uuid.uuid4()}", "asset": "POINTS"}
            )
            wallets.append(created.json()["id"])
            await client.post(f"/v1/wallets/{wallets[-1]}/topup", json={"amount": 5000}, headers=_key())
        posted: list[str] = []
        gate = asyncio.Semaphore(4)

        async def batch(number: int) -> None:
            chooser = random.Random(number)
            async with gate:
                items = [_item(chooser, wallets) for _ in range(BATCH_ITEMS)]
                response = await client.post("/v1/batches", json={"items": items})
                assert response.status_code == 200, response.text
                for result in response.json()["results"]:
                    assert result["status"] in (201, 409), result
                    if result["status"] == 201 and result["body"]["type"] in ("spend", "topup"):
                        posted.append(result["body"]["id"])

        async def holds_and_reversals(number: int) -> None:
            chooser = random.Random(10_000 + number)
            for _ in range(10):
                wallet = chooser.choice(wallets)
                placed = await client.post(f"/v1/wallets/{wallet}/holds", json={"amount": 5}, headers=_key())
                assert placed.status_code in (201, 409), placed.text
                if placed.status_code == 201:
                    ending = chooser.choice(("capture", "void"))
                    ended = await client.post(
                        f"/v1/holds/{placed.json()['id']}/{ending}", json={}, headers=_key()
                    )
                    assert ended.status_code in (200, 201, 409), ended.text
                if posted:
                    reversed_ = await client.post(
                        f"/v1/transactions/{chooser.choice(posted)}/reverse",
                        json={"amount": 1},
                        headers=_key(),
                    )
                    assert reversed_.status_code in (201, 409), reversed_.text

        await asyncio.wait_for(
            asyncio.gather(*(batch(n) for n in range(BATCHES)), *(holds_and_reversals(n) for n in range(20))),
            GATHER_TIMEOUT_SECONDS,
        )
        # One more lot that surely expires unused, then a last spend of each wallet posts what is due.
        last_lot_expires = datetime.now(UTC) + timedelta(seconds=1)
        last_lot = {"amount": 7, "expires_at": last_lot_expires.isoformat()}
        given = await client.post(f"/v1/wallets/{wallets[0]}/bonus", json=last_lot, headers=_key())
        assert given.status_code == 201, given.text
        await asyncio.sleep(max(0.0, (last_lot_expires - datetime.now(UTC)).total_seconds() + 0.2))
        for wallet in wallets:
            await client.post(f"/v1/wallets/{wallet}/spend", json={"amount": 1}, headers=_key())
        return len(posted)


def test_ten_thousand_mixed_movements_verify_deep(client: httpx.Client, server: Server) -> None:
    asyncio.run(_mixed_movements(server))
    balances = client.get("/v1/ledger/balances").json()
    points = next(asset for asset in balances["data"] if asset["asset"] == "POINTS")
    assert points["system"]["breakage"] > 0, "some lots expired during the run"
    response = client.get("/v1/ledger/verify", params={"deep": "true"})
    assert response.status_code == 200, response.text
    assert response.json()["ok"], response.json()["problems"]
