"""Idempotency-Key: a repeat replays the stored response byte for byte and moves money once; a
different request with the same key is refused; only stored outcomes burn a key."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from typing import Any

import asyncpg
import httpx
import pytest

from support import THROUGH_PGBOUNCER_TOO, Server, create_key, server_of
from support import async_assert_ledger_ok as assert_ledger_ok
from support import async_balance as balance

REPLAYED = "Idempotent-Replayed"


@pytest.fixture
def server(request: pytest.FixtureRequest, direct_server: Server) -> Server:
    """The suite's server; through PgBouncer for the tests marked THROUGH_PGBOUNCER_TOO."""
    return server_of(request, direct_server)


def fresh_key() -> str:
    return f"idem-{uuid.uuid4()}"


async def new_wallet(client: httpx.AsyncClient, asset: str = "GOLD") -> str:
    response = await client.post("/v1/wallets", json={"owner_id": f"user-{uuid.uuid4()}", "asset": asset})
    assert response.status_code == 201, response.text
    wallet_id: str = response.json()["id"]
    return wallet_id


async def post(client: httpx.AsyncClient, path: str, body: dict[str, Any], key: str) -> httpx.Response:
    return await client.post(path, json=body, headers={"Idempotency-Key": key})


async def fund(client: httpx.AsyncClient, wallet_id: str, amount: int) -> None:
    response = await post(client, f"/v1/wallets/{wallet_id}/topup", {"amount": amount}, fresh_key())
    assert response.status_code == 201, response.text


def problem_code(response: httpx.Response) -> str:
    assert response.headers["content-type"].startswith("application/problem+json"), response.headers
    code: str = response.json()["code"]
    return code


def assert_replay_of(replay: httpx.Response, first: httpx.Response) -> None:
    assert REPLAYED not in first.headers
    assert replay.headers.get(REPLAYED) == "true", replay.headers
    assert replay.status_code == first.status_code
    assert replay.content == first.content
    assert replay.headers["content-type"] == first.headers["content-type"]


async def fetch(server: Server, query: str, *arguments: Any) -> list[asyncpg.Record]:
    database = await asyncpg.connect(server.database_url)
    try:
        return await database.fetch(query, *arguments)
    finally:
        await database.close()


async def transaction_ids_of(server: Server, wallet_id: str) -> set[uuid.UUID]:
    """Every ledger transaction with an entry on the wallet (either side of a transfer too)."""
    rows = await fetch(
        server, "SELECT DISTINCT transaction_id FROM entry WHERE account_id = $1", uuid.UUID(wallet_id)
    )
    return {row["transaction_id"] for row in rows}


async def stored_keys(server: Server, key: str) -> list[asyncpg.Record]:
    return await fetch(
        server, "SELECT api_key_id, decline_code, transaction_id FROM idempotency_key WHERE key = $1", key
    )


@THROUGH_PGBOUNCER_TOO
async def test_replay_is_byte_identical_marked_replayed_and_moves_money_once(server: Server) -> None:
    async with server.async_client() as client:
        wallet_id = await new_wallet(client)
        key = fresh_key()
        path = f"/v1/wallets/{wallet_id}/topup"
        body = {"amount": 40, "reference": "order-1", "metadata": {"campaign": "spring"}}

        first = await post(client, path, body, key)
        replay = await post(client, path, body, key)

        assert first.status_code == 201, first.text
        assert_replay_of(replay, first)
        assert await balance(client, wallet_id) == 40
        await assert_ledger_ok(client)

    transaction_id = uuid.UUID(first.json()["id"])
    assert await transaction_ids_of(server, wallet_id) == {transaction_id}
    [stored] = await stored_keys(server, key)
    assert (stored["decline_code"], stored["transaction_id"]) == (None, transaction_id)
    rows = await fetch(server, "SELECT count(*) AS n FROM transaction WHERE id = $1", transaction_id)
    assert rows[0]["n"] == 1


@THROUGH_PGBOUNCER_TOO
async def test_twenty_concurrent_duplicates_post_once_and_all_answer_the_same_201(server: Server) -> None:
    async with server.async_client() as client:
        wallet_id = await new_wallet(client)
        key = fresh_key()
        path = f"/v1/wallets/{wallet_id}/topup"

        responses = await asyncio.wait_for(
            asyncio.gather(*(post(client, path, {"amount": 7}, key) for _ in range(20))), timeout=60
        )

        assert [response.status_code for response in responses] == [201] * 20, [
            response.text for response in responses
        ]
        assert len({response.content for response in responses}) == 1
        replayed = Counter(response.headers.get(REPLAYED) for response in responses)
        assert replayed == {"true": 19, None: 1}, replayed
        assert await balance(client, wallet_id) == 7
        await assert_ledger_ok(client)

    rows = await fetch(server, "SELECT id FROM transaction WHERE wallet_id = $1", uuid.UUID(wallet_id))
    assert [row["id"] for row in rows] == [uuid.UUID(responses[0].json()["id"])]


async def test_same_key_with_a_different_amount_is_refused_and_changes_nothing(server: Server) -> None:
    async with server.async_client() as client:
        wallet_id = await new_wallet(client)
        await fund(client, wallet_id, 100)
        key = fresh_key()
        path = f"/v1/wallets/{wallet_id}/spend"
        first = await post(client, path, {"amount": 30}, key)
        assert first.status_code == 201, first.text
        before = await transaction_ids_of(server, wallet_id)

        reused = await post(client, path, {"amount": 31}, key)

        assert reused.status_code == 422, reused.text
        assert problem_code(reused) == "idempotency_key_reused"
        assert REPLAYED not in reused.headers
        assert await balance(client, wallet_id) == 70
        assert await transaction_ids_of(server, wallet_id) == before
        replay = await post(client, path, {"amount": 30}, key)
        assert_replay_of(replay, first)
        await assert_ledger_ok(client)


async def test_same_key_on_another_wallet_path_is_refused_and_changes_nothing(server: Server) -> None:
    async with server.async_client() as client:
        wallet_a, wallet_b = await new_wallet(client), await new_wallet(client)
        await fund(client, wallet_a, 100)
        await fund(client, wallet_b, 100)
        key = fresh_key()
        first = await post(client, f"/v1/wallets/{wallet_a}/spend", {"amount": 25}, key)
        assert first.status_code == 201, first.text
        before_a = await transaction_ids_of(server, wallet_a)
        before_b = await transaction_ids_of(server, wallet_b)

        reused = await post(client, f"/v1/wallets/{wallet_b}/spend", {"amount": 25}, key)

        assert reused.status_code == 422, reused.text
        assert problem_code(reused) == "idempotency_key_reused"
        assert (await balance(client, wallet_a), await balance(client, wallet_b)) == (75, 100)
        assert await transaction_ids_of(server, wallet_a) == before_a
        assert await transaction_ids_of(server, wallet_b) == before_b
        await assert_ledger_ok(client)
    [stored] = await stored_keys(server, key)
    assert stored["transaction_id"] == uuid.UUID(first.json()["id"])


async def test_idempotency_keys_are_scoped_to_the_api_key(server: Server) -> None:
    secrets = [
        await asyncio.to_thread(create_key, server.database_url, "wallets:write", "wallets:read")
        for _ in range(2)
    ]
    async with server.async_client() as admin:
        wallet_id = await new_wallet(admin)
    key = fresh_key()
    path = f"/v1/wallets/{wallet_id}/topup"

    responses = []
    for secret in secrets:
        async with server.async_client(secret) as client:
            responses.append(await post(client, path, {"amount": 15}, key))

    assert [response.status_code for response in responses] == [201, 201], [r.text for r in responses]
    assert all(REPLAYED not in response.headers for response in responses)
    ids = {uuid.UUID(response.json()["id"]) for response in responses}
    assert len(ids) == 2
    async with server.async_client() as admin:
        assert await balance(admin, wallet_id) == 30
        await assert_ledger_ok(admin)
    assert await transaction_ids_of(server, wallet_id) == ids
    stored = await stored_keys(server, key)
    assert len({row["api_key_id"] for row in stored}) == 2
    assert {row["transaction_id"] for row in stored} == ids


async def test_declined_spend_replays_its_409_after_the_wallet_is_topped_up(server: Server) -> None:
    async with server.async_client() as client:
        wallet_id = await new_wallet(client)
        await fund(client, wallet_id, 10)
        key = fresh_key()
        path = f"/v1/wallets/{wallet_id}/spend"
        declined = await post(client, path, {"amount": 50}, key)
        assert declined.status_code == 409, declined.text
        assert problem_code(declined) == "insufficient_funds"
        await fund(client, wallet_id, 100)

        replay = await post(client, path, {"amount": 50}, key)

        assert_replay_of(replay, declined)
        assert await balance(client, wallet_id) == 110
        await assert_ledger_ok(client)
    [stored] = await stored_keys(server, key)
    assert (stored["decline_code"], stored["transaction_id"]) == ("insufficient_funds", None)


async def test_replay_ignores_json_key_order_and_whitespace(server: Server) -> None:
    async with server.async_client() as client:
        wallet_id = await new_wallet(client)
        key = fresh_key()
        path = f"/v1/wallets/{wallet_id}/topup"
        headers = {"Idempotency-Key": key, "Content-Type": "application/json"}
        compact = b'{"amount":12,"reference":"r-9","metadata":{"a":1,"b":{"x":[1,2],"y":null}}}'
        reordered = (
            b'{ "metadata" : { "b" : { "y" : null , "x" : [ 1 , 2 ] } , "a" : 1 } ,\n'
            b'\t"reference" : "r-9",   "amount" : 12 }\n'
        )

        first = await client.post(path, content=compact, headers=headers)
        replay = await client.post(path, content=reordered, headers=headers)

        assert first.status_code == 201, first.text
        assert_replay_of(replay, first)
        assert await balance(client, wallet_id) == 12
        await assert_ledger_ok(client)


@pytest.mark.parametrize(
    "changed",
    [
        {"amount": 12, "reference": "r-10", "metadata": {"a": 1}},
        {"amount": 12, "metadata": {"a": 1}},
        {"amount": 12, "reference": "r-9", "metadata": {"a": 2}},
        {"amount": 12, "reference": "r-9"},
        {"amount": 12, "reference": "r-9", "metadata": {"a": 1, "b": None}},
    ],
    ids=["other-reference", "no-reference", "other-metadata", "no-metadata", "extra-metadata-key"],
)
async def test_a_different_reference_or_metadata_reuses_the_key(
    server: Server, changed: dict[str, Any]
) -> None:
    async with server.async_client() as client:
        wallet_id = await new_wallet(client)
        key = fresh_key()
        path = f"/v1/wallets/{wallet_id}/topup"
        first = await post(client, path, {"amount": 12, "reference": "r-9", "metadata": {"a": 1}}, key)
        assert first.status_code == 201, first.text

        reused = await post(client, path, changed, key)

        assert reused.status_code == 422, reused.text
        assert problem_code(reused) == "idempotency_key_reused"
        assert await balance(client, wallet_id) == 12
        await assert_ledger_ok(client)
    assert await transaction_ids_of(server, wallet_id) == {uuid.UUID(first.json()["id"])}


@pytest.mark.parametrize(
    ("content", "content_type", "status", "code"),
    [
        (b'{"amount": 0}', "application/json", 422, "validation_error"),
        (b'{"amount": 5.5}', "application/json", 422, "validation_error"),
        (b'{"amount": 5', "application/json", 400, "malformed_json"),
        (b'{"amount": 5}', "text/plain", 415, "unsupported_media_type"),
    ],
    ids=["zero-amount", "fractional-amount", "malformed-json", "wrong-media-type"],
)
async def test_a_malformed_request_does_not_burn_the_key(
    server: Server, content: bytes, content_type: str, status: int, code: str
) -> None:
    async with server.async_client() as client:
        wallet_id = await new_wallet(client)
        key = fresh_key()
        path = f"/v1/wallets/{wallet_id}/topup"
        rejected = await client.post(
            path, content=content, headers={"Idempotency-Key": key, "Content-Type": content_type}
        )
        assert rejected.status_code == status, rejected.text
        assert problem_code(rejected) == code
        assert await stored_keys(server, key) == []

        corrected = await post(client, path, {"amount": 5}, key)

        assert corrected.status_code == 201, corrected.text
        assert REPLAYED not in corrected.headers
        assert await balance(client, wallet_id) == 5
        await assert_ledger_ok(client)


async def test_an_auth_failure_does_not_burn_the_key(server: Server) -> None:
    async with server.async_client() as client:
        wallet_id = await new_wallet(client)
    key = fresh_key()
    path = f"/v1/wallets/{wallet_id}/topup"
    async with server.async_client("wk_not-a-real-key") as stranger:
        refused = await post(stranger, path, {"amount": 8}, key)
    assert refused.status_code == 401, refused.text
    assert problem_code(refused) == "unauthenticated"
    assert await stored_keys(server, key) == []

    async with server.async_client() as client:
        accepted = await post(client, path, {"amount": 8}, key)
        assert accepted.status_code == 201, accepted.text
        assert REPLAYED not in accepted.headers
        assert await balance(client, wallet_id) == 8
        await assert_ledger_ok(client)


async def test_wallet_not_found_on_a_topup_is_stored_and_replayed(server: Server) -> None:
    missing = str(uuid.uuid4())
    key = fresh_key()
    async with server.async_client() as client:
        path = f"/v1/wallets/{missing}/topup"
        first = await post(client, path, {"amount": 3}, key)
        assert first.status_code == 404, first.text
        assert problem_code(first) == "wallet_not_found"

        replay = await post(client, path, {"amount": 3}, key)

        assert_replay_of(replay, first)
        await assert_ledger_ok(client)
    [stored] = await stored_keys(server, key)
    assert (stored["decline_code"], stored["transaction_id"]) == ("wallet_not_found", None)


async def test_wallet_not_found_on_a_transfer_target_is_stored_and_replayed(server: Server) -> None:
    async with server.async_client() as client:
        source = await new_wallet(client)
        await fund(client, source, 50)
        key = fresh_key()
        body = {"from_wallet_id": source, "to_wallet_id": str(uuid.uuid4()), "amount": 20}
        first = await post(client, "/v1/transfers", body, key)
        assert first.status_code == 404, first.text
        assert problem_code(first) == "wallet_not_found"

        replay = await post(client, "/v1/transfers", body, key)

        assert_replay_of(replay, first)
        assert await balance(client, source) == 50
        await assert_ledger_ok(client)
    assert len(await transaction_ids_of(server, source)) == 1  # the funding top-up only


@THROUGH_PGBOUNCER_TOO
async def test_a_replayed_transfer_moves_money_once(server: Server) -> None:
    async with server.async_client() as client:
        wallet_a, wallet_b = await new_wallet(client), await new_wallet(client)
        await fund(client, wallet_a, 100)
        key = fresh_key()
        body = {"from_wallet_id": wallet_a, "to_wallet_id": wallet_b, "amount": 30}

        first = await post(client, "/v1/transfers", body, key)
        replay = await post(client, "/v1/transfers", body, key)

        assert first.status_code == 201, first.text
        assert first.json()["type"] == "transfer"
        assert_replay_of(replay, first)
        assert (await balance(client, wallet_a), await balance(client, wallet_b)) == (70, 30)
        await assert_ledger_ok(client)
    assert await transaction_ids_of(server, wallet_b) == {uuid.UUID(first.json()["id"])}
