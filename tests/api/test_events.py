"""The event feed (GET /v1/events): every posted transaction and every change of a hold's status,
once each, in commit order, by a cursor that never ends; an event whose transaction commits
after a later-started one's still reaches a consumer that was following the feed."""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections import defaultdict
from typing import Any

import asyncpg
import httpx

from support import Server, assert_ledger_ok, create_key, new_wallet, topup
from wallet.ledger import events, posting

WAIT_SECONDS_MAX = 15.0
WRITERS = 32
WRITE_SECONDS = 10.0


async def end_cursor(database_url: str) -> str:
    """A cursor at the feed's end now (every event placed so far is before it)."""
    connection = await asyncpg.connect(database_url, timeout=10)
    try:
        await events.sequence_all(connection)
        position = await connection.fetchval("SELECT last_position FROM event_sequencer")
    finally:
        await connection.close()
    return events.encode_cursor(position)


def follow(client: httpx.Client, cursor: str, count: int) -> tuple[list[dict[str, Any]], str]:
    """Read the feed from `cursor` until `count` events came (or fail after WAIT_SECONDS_MAX)."""
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + WAIT_SECONDS_MAX
    while len(seen) < count:
        assert time.monotonic() < deadline, f"only {len(seen)} of {count} events came: {seen}"
        response = client.get("/v1/events", params={"after": cursor, "limit": 1000})
        assert response.status_code == 200, response.text
        page = response.json()
        assert page["next_cursor"], page
        seen += page["data"]
        cursor = page["next_cursor"]
        if not page["data"]:
            time.sleep(0.02)
    return seen, cursor


def test_every_change_is_an_event_in_order(client: httpx.Client, server: Server) -> None:
    cursor = asyncio.run(end_cursor(server.database_url))
    wallet_id = new_wallet(client)
    credited = topup(client, wallet_id, 100).json()
    held = client.post(
        f"/v1/wallets/{wallet_id}/holds", json={"amount": 30}, headers={"Idempotency-Key": str(uuid.uuid4())}
    ).json()
    captured = client.post(
        f"/v1/holds/{held['id']}/capture", json={"amount": 10}, headers={"Idempotency-Key": str(uuid.uuid4())}
    ).json()
    voided_hold = client.post(
        f"/v1/wallets/{wallet_id}/holds", json={"amount": 5}, headers={"Idempotency-Key": str(uuid.uuid4())}
    ).json()
    voided = client.post(
        f"/v1/holds/{voided_hold['id']}/void", json={}, headers={"Idempotency-Key": str(uuid.uuid4())}
    ).json()
    short = client.post(
        f"/v1/wallets/{wallet_id}/holds",
        json={"amount": 7, "expires_in_seconds": 1},
        headers={"Idempotency-Key": str(uuid.uuid4())},
    ).json()
    time.sleep(1.1)
    spent = client.post(
        f"/v1/wallets/{wallet_id}/spend", json={"amount": 20}, headers={"Idempotency-Key": str(uuid.uuid4())}
    ).json()

    seen, cursor = follow(client, cursor, 9)
    mine = [
        event
        for event in seen
        if _subject(event)
        in {credited["id"], held["id"], captured["id"], voided_hold["id"], short["id"], spent["id"]}
    ]
    assert [(event["type"], _subject(event)) for event in mine] == [
        ("transaction.posted", credited["id"]),
        ("hold.created", held["id"]),
        *sorted(
            [("transaction.posted", captured["id"]), ("hold.captured", held["id"])],
            key=lambda pair: _position(mine, pair),
        ),
        ("hold.created", voided_hold["id"]),
        ("hold.voided", voided_hold["id"]),
        ("hold.created", short["id"]),
        *sorted(
            [("hold.expired", short["id"]), ("transaction.posted", spent["id"])],
            key=lambda pair: _position(mine, pair),
        ),
    ]
    by_type = {(event["type"], _subject(event)): event for event in mine}
    assert by_type[("transaction.posted", credited["id"])]["data"] == credited
    assert by_type[("transaction.posted", captured["id"])]["data"] == captured
    assert by_type[("hold.created", held["id"])]["data"] == held, "a created hold shows as it was placed"
    assert by_type[("hold.captured", held["id"])]["data"]["status"] == "captured"
    assert by_type[("hold.voided", voided_hold["id"])]["data"] == voided
    assert by_type[("hold.expired", short["id"])]["data"]["status"] == "expired"
    assert by_type[("hold.expired", short["id"])]["created_at"] == spent["created_at"], "noticed by the spend"
    assert all(set(event) == {"id", "type", "created_at", "data"} for event in mine)
    assert len({event["id"] for event in seen}) == len(seen)

    # Nothing new: the cursor given comes back, never null.
    again = client.get("/v1/events", params={"after": cursor}).json()
    assert again == {"data": [], "next_cursor": cursor}
    assert_ledger_ok(client)


def _subject(event: dict[str, Any]) -> str:
    subject: str = event["data"]["id"]
    return subject


def _position(events_seen: list[dict[str, Any]], pair: tuple[str, str]) -> int:
    return next(n for n, event in enumerate(events_seen) if (event["type"], _subject(event)) == pair)


def test_the_feed_refuses_what_it_cannot_follow(client: httpx.Client, server: Server) -> None:
    first = client.get("/v1/events", params={"limit": 1})
    assert first.status_code == 200 and first.json()["next_cursor"]
    for params in (
        {"after": "not-a-cursor"},
        {"after": events.encode_cursor(0)[:-1] + "!"},
        {"limit": 0},
        {"limit": 1001},
    ):
        response = client.get("/v1/events", params=params)
        assert (response.status_code, response.json()["code"]) == (422, "validation_error"), (
            params,
            response.text,
        )
    reader = create_key(server.database_url, "wallets:read")
    with server.client(reader) as read_only:
        assert read_only.get("/v1/events").status_code == 403


async def _held_open_then_committed(server: Server) -> None:
    """A posting that writes its event first and commits last is still seen, once, by a consumer
    that was following the feed meanwhile."""
    async with server.async_client() as client:
        first_wallet = (
            await client.post("/v1/wallets", json={"owner_id": f"late-{uuid.uuid4()}", "asset": "GOLD"})
        ).json()["id"]
        second_wallet = (
            await client.post("/v1/wallets", json={"owner_id": f"early-{uuid.uuid4()}", "asset": "GOLD"})
        ).json()["id"]
        cursor = await end_cursor(server.database_url)
        connection = await asyncpg.connect(server.database_url, timeout=10)
        try:
            api_key_id = await connection.fetchval("SELECT id FROM api_key ORDER BY created_at LIMIT 1")
            late = posting.Request(
                api_key_id,
                f"late-{uuid.uuid4()}",
                bytes(32),
                posting.topup(uuid.UUID(first_wallet), 5, None, None),
            )
            transaction = connection.transaction()
            await transaction.start()
            outcome = (await posting.post(connection, [late], wait_for_locks=True))[0]
            assert outcome.result is posting.Result.POSTED
            late_xid = await connection.fetchval("SELECT pg_current_xact_id()::text::bigint")
            early = await client.post(
                f"/v1/wallets/{second_wallet}/topup",
                json={"amount": 7},
                headers={"Idempotency-Key": str(uuid.uuid4())},
            )
            assert early.status_code == 201
            early_xid = await connection.fetchval(
                "SELECT xid::text::bigint FROM event WHERE id = $1", uuid.UUID(early.json()["id"])
            )
            assert late_xid < early_xid, "the held transaction began first"
            seen: list[dict[str, Any]] = []
            deadline = time.monotonic() + WAIT_SECONDS_MAX
            while not any(_subject(event) == early.json()["id"] for event in seen):
                assert time.monotonic() < deadline
                page = (await client.get("/v1/events", params={"after": cursor})).json()
                seen += page["data"]
                cursor = page["next_cursor"]
                await asyncio.sleep(0.02)
            await transaction.commit()
        finally:
            await connection.close()
        while not any(_subject(event) == str(late.transaction_id) for event in seen):
            assert time.monotonic() < deadline
            page = (await client.get("/v1/events", params={"after": cursor})).json()
            seen += page["data"]
            cursor = page["next_cursor"]
            await asyncio.sleep(0.02)
        subjects = [_subject(event) for event in seen]
        assert subjects.count(str(late.transaction_id)) == subjects.count(early.json()["id"]) == 1
        assert subjects.index(early.json()["id"]) < subjects.index(str(late.transaction_id)), "commit order"


def test_a_transaction_that_commits_late_is_not_skipped(server: Server) -> None:
    asyncio.run(_held_open_then_committed(server))


async def _writers_and_a_consumer(server: Server) -> tuple[list[dict[str, Any]], list[str], set[str]]:
    async with server.async_client() as client:
        wallets = []
        for _ in range(16):
            response = await client.post(
                "/v1/wallets", json={"owner_id": f"feed-{uuid.uuid4()}", "asset": "GOLD"}
            )
            wallets.append(response.json()["id"])
            await client.post(
                f"/v1/wallets/{wallets[-1]}/topup",
                json={"amount": 10**9},
                headers={"Idempotency-Key": str(uuid.uuid4())},
            )
        cursor = await end_cursor(server.database_url)
        posted: set[str] = set()
        stop = time.monotonic() + WRITE_SECONDS

        async def writer(number: int) -> None:
            chooser = random.Random(number)
            while time.monotonic() < stop:
                source, target = chooser.sample(wallets, 2)
                kind = chooser.choice(("spend", "topup", "transfer"))
                if kind == "transfer":
                    path, body = (
                        "/v1/transfers",
                        {"from_wallet_id": source, "to_wallet_id": target, "amount": 1},
                    )
                else:
                    path, body = f"/v1/wallets/{source}/{kind}", {"amount": 1}
                response = await client.post(path, json=body, headers={"Idempotency-Key": str(uuid.uuid4())})
                assert response.status_code == 201, response.text
                posted.add(response.json()["id"])

        seen: list[dict[str, Any]] = []
        writers_done = asyncio.Event()

        async def consumer() -> None:
            nonlocal cursor
            deadline = stop + WAIT_SECONDS_MAX
            while time.monotonic() < deadline:
                page = (await client.get("/v1/events", params={"after": cursor, "limit": 1000})).json()
                seen.extend(page["data"])
                cursor = page["next_cursor"]
                if writers_done.is_set() and posted <= {_subject(event) for event in seen}:
                    return
                await asyncio.sleep(0.01)
            raise AssertionError("the consumer did not see every event")

        reading = asyncio.create_task(consumer())
        await asyncio.gather(*(writer(number) for number in range(WRITERS)))
        writers_done.set()
        await reading
        return seen, wallets, posted


def test_32_writers_and_a_consumer_that_sees_each_event_once_in_commit_order(server: Server) -> None:
    seen, wallets, posted = asyncio.run(_writers_and_a_consumer(server))
    print(f"\nfeed: {len(posted)} transactions by {WRITERS} writers in {WRITE_SECONDS:.0f} s")
    ids = [event["id"] for event in seen]
    assert len(ids) == len(set(ids)), "no event twice"
    subjects = [_subject(event) for event in seen if event["type"] == "transaction.posted"]
    assert posted <= set(subjects)
    # Commit order: each wallet's transactions come in the order the wallet took them (its
    # entries' account_sequence), which is the order they committed in.
    by_wallet: dict[str, list[str]] = defaultdict(list)
    for event in seen:
        if event["type"] == "transaction.posted":
            for entry in event["data"]["entries"]:
                if entry["account_id"] in wallets:
                    by_wallet[entry["account_id"]].append(event["data"]["id"])
    expected = asyncio.run(_wallet_orders(server.database_url, wallets, set(subjects)))
    for wallet_id in wallets:
        assert list(dict.fromkeys(by_wallet[wallet_id])) == expected[wallet_id], wallet_id


async def _wallet_orders(database_url: str, wallets: list[str], subjects: set[str]) -> dict[str, list[str]]:
    connection = await asyncpg.connect(database_url, timeout=10)
    try:
        rows = await connection.fetch(
            """
            SELECT account_id::text, transaction_id::text FROM entry
            WHERE account_id = ANY($1::uuid[]) AND transaction_id = ANY($2::uuid[])
            ORDER BY account_id, account_sequence
            """,
            wallets,
            list(subjects),
        )
    finally:
        await connection.close()
    orders: dict[str, list[str]] = defaultdict(list)
    for row in rows:
        orders[row["account_id"]].append(row["transaction_id"])
    return {wallet_id: list(dict.fromkeys(order)) for wallet_id, order in orders.items()}


async def _retype(database_url: str, event_id: uuid.UUID, event_type: str) -> None:
    connection = await asyncpg.connect(database_url, timeout=10)
    try:
        await connection.execute("UPDATE event SET type = $2 WHERE id = $1", event_id, event_type)
    finally:
        await connection.close()


def test_verify_checks_one_posted_event_per_transaction(client: httpx.Client, server: Server) -> None:
    """An event of a transaction made into a hold's: verify finds the transaction without its
    event and the event without its hold."""
    posted = uuid.UUID(topup(client, new_wallet(client), 1).json()["id"])
    asyncio.run(_retype(server.database_url, posted, "hold.created"))
    try:
        problems = client.get("/v1/ledger/verify").json()["problems"]
    finally:
        asyncio.run(_retype(server.database_url, posted, "transaction.posted"))
    assert [problem.get("invariant") for problem in problems].count(8) == 2, problems
    assert_ledger_ok(client)
