"""GET /v1/ledger/balances: per asset, the user wallets' total and each system account's balance."""

from __future__ import annotations

import uuid

import httpx

from support import Server, create_key, new_wallet, topup


def new_asset(client: httpx.Client) -> str:
    code = "B" + uuid.uuid4().hex[:12].upper()
    response = client.post("/v1/assets", json={"code": code, "name": "Balances test"})
    assert response.status_code == 201, response.text
    return code


def move(client: httpx.Client, path: str, body: dict[str, object]) -> None:
    response = client.post(path, json=body, headers={"Idempotency-Key": str(uuid.uuid4())})
    assert response.status_code == 201, response.text


def asset_entry(client: httpx.Client, code: str) -> dict[str, object]:
    response = client.get("/v1/ledger/balances")
    assert response.status_code == 200, response.text
    entries: list[dict[str, object]] = [item for item in response.json()["data"] if item["asset"] == code]
    assert len(entries) == 1
    return entries[0]


def test_a_new_asset_has_no_wallets_and_zero_balances(client: httpx.Client) -> None:
    code = new_asset(client)
    assert asset_entry(client, code) == {
        "asset": code,
        "wallet_count": 0,
        "user_total": 0,
        "system": {"treasury": 0, "bonus": 0, "revenue": 0, "breakage": 0},
    }


def test_each_movement_shows_on_its_system_account_and_every_asset_sums_to_zero(
    client: httpx.Client,
) -> None:
    code = new_asset(client)
    alice, bob = new_wallet(client, code), new_wallet(client, code)
    assert topup(client, alice, 100).status_code == 201
    move(client, f"/v1/wallets/{alice}/bonus", {"amount": 20})
    move(client, f"/v1/wallets/{alice}/spend", {"amount": 30})
    move(client, "/v1/transfers", {"from_wallet_id": alice, "to_wallet_id": bob, "amount": 40})
    assert asset_entry(client, code) == {
        "asset": code,
        "wallet_count": 2,
        "user_total": 90,
        "system": {"treasury": -100, "bonus": -20, "revenue": 30, "breakage": 0},
    }
    data = client.get("/v1/ledger/balances").json()["data"]
    assert [item["asset"] for item in data] == sorted(item["asset"] for item in data)
    for item in data:
        assert item["user_total"] + sum(item["system"].values()) == 0, item


def test_balances_need_an_admin_key(server: Server) -> None:
    with httpx.Client(base_url=server.base_url) as anonymous:
        response = anonymous.get("/v1/ledger/balances")
    assert response.status_code == 401
    assert response.json()["code"] == "unauthenticated"
    key = create_key(server.database_url, "wallets:read", "wallets:write")
    with server.client(key) as client:
        response = client.get("/v1/ledger/balances")
    assert response.status_code == 403
    assert response.json()["code"] == "forbidden"
