"""Expiring credits: a top-up or bonus with `expires_at` is a lot of the wallet; debits take from
lots soonest-expiring first, then from non-expiring funds; transfers carry expiry; holds take
parts and give them back; reversals give back to (or take back from) the right lots; an expired
lot leaves the wallet in an `expiry` transaction to the breakage account, posted by the wallet's
next movement (in its database transaction, before it) or by the sweeper.

The tests here run against a server whose sweeper is off, so every expiry they see was posted by
a movement; tests/api/test_lots_sweeper.py runs one with the sweeper on. The tests that need a
lot to expire make it expire a second or two from now and wait once for all their cases."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest

from support import Server, assert_ledger_ok, new_wallet, start_server, wallet_command

HOUR = timedelta(hours=1)
SHORT_SECONDS = 2.0  # how soon the lots that must expire during a test expire
GATHER_TIMEOUT_SECONDS = 120


@pytest.fixture(scope="module")
def server(create_database: Callable[[], str], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server with the expiry sweeper off, on a seeded database of this module's own: the
    session's server, whose sweeper runs, must not post the expiries these tests wait for."""
    database_url = create_database()
    wallet_command("db", "seed", database_url=database_url)
    log_path = tmp_path_factory.mktemp("lots") / "server.log"
    running = start_server(database_url, log_path, {"WALLET_EXPIRY_SWEEP_SECONDS": "0"})
    try:
        yield running
    finally:
        running.stop()


def at(delta: timedelta) -> str:
    return (datetime.now(UTC) + delta).isoformat()


def post(client: httpx.Client, path: str, body: dict[str, Any], key: str | None = None) -> httpx.Response:
    return client.post(path, json=body, headers={"Idempotency-Key": key or str(uuid.uuid4())})


def credit(
    client: httpx.Client, wallet_id: str, amount: int, expires_at: str | None = None, op: str = "topup"
) -> dict[str, Any]:
    body: dict[str, Any] = {"amount": amount}
    if expires_at is not None:
        body["expires_at"] = expires_at
    response = post(client, f"/v1/wallets/{wallet_id}/{op}", body)
    assert response.status_code == 201, response.text
    document: dict[str, Any] = response.json()
    return document


def spend(client: httpx.Client, wallet_id: str, amount: int) -> httpx.Response:
    return post(client, f"/v1/wallets/{wallet_id}/spend", {"amount": amount})


def lots(client: httpx.Client, wallet_id: str) -> list[tuple[int, int]]:
    """(amount, remaining) of the wallet's unexpired lots, soonest first."""
    response = client.get(f"/v1/wallets/{wallet_id}/lots")
    assert response.status_code == 200, response.text
    return [(lot["amount"], lot["remaining"]) for lot in response.json()["data"]]


def wallet(client: httpx.Client, wallet_id: str) -> dict[str, Any]:
    response = client.get(f"/v1/wallets/{wallet_id}")
    assert response.status_code == 200, response.text
    document: dict[str, Any] = response.json()
    return document


def history(client: httpx.Client, wallet_id: str) -> list[tuple[str, int, int]]:
    """(type, amount, balance_after) of the wallet's transactions, oldest first."""
    response = client.get(f"/v1/wallets/{wallet_id}/transactions", params={"limit": 200})
    assert response.status_code == 200, response.text
    rows = [
        (t["type"], t["amount"], entry["balance_after"])
        for t in response.json()["data"]
        for entry in t["entries"]
        if entry["account_id"] == wallet_id
    ]
    return rows[::-1]


def test_debits_take_the_soonest_expiring_lots_first(client: httpx.Client) -> None:
    wallet_id = new_wallet(client, "POINTS")
    first = credit(client, wallet_id, 10, at(HOUR))
    credit(client, wallet_id, 30)
    second = credit(client, wallet_id, 20, at(2 * HOUR), op="bonus")
    document = wallet(client, wallet_id)
    assert document["next_expiry"] == {"amount": 10, "expires_at": document["next_expiry"]["expires_at"]}
    assert datetime.fromisoformat(document["next_expiry"]["expires_at"]) > datetime.now(
        UTC
    ) + HOUR - timedelta(minutes=1)
    listed = client.get(f"/v1/wallets/{wallet_id}/lots").json()["data"]
    assert [lot["transaction_id"] for lot in listed] == [first["id"], second["id"]]
    assert set(listed[0]) == {"transaction_id", "amount", "remaining", "expires_at", "created_at"}

    assert spend(client, wallet_id, 25).status_code == 201
    assert lots(client, wallet_id) == [(20, 5)]  # 10 gone, 5 of 20 left, 30 non-expiring untouched
    assert wallet(client, wallet_id)["balance"] == 35
    assert wallet(client, wallet_id)["next_expiry"]["amount"] == 5
    assert spend(client, wallet_id, 31).status_code == 201  # 5 of the lot, then 26 of the rest
    assert lots(client, wallet_id) == []
    assert wallet(client, wallet_id)["next_expiry"] is None
    assert_ledger_ok(client)


def test_a_transfer_carries_expiry_and_a_journal_too(client: httpx.Client) -> None:
    sender, receiver, third = (new_wallet(client, "POINTS") for _ in range(3))
    credit(client, sender, 10, at(HOUR))
    credit(client, sender, 10, at(2 * HOUR))
    credit(client, sender, 5)
    expiries = [lot["expires_at"] for lot in client.get(f"/v1/wallets/{sender}/lots").json()["data"]]
    moved = post(client, "/v1/transfers", {"from_wallet_id": sender, "to_wallet_id": receiver, "amount": 14})
    assert moved.status_code == 201, moved.text
    received = client.get(f"/v1/wallets/{receiver}/lots").json()["data"]
    assert [
        (lot["amount"], lot["remaining"], lot["transaction_id"], lot["expires_at"]) for lot in received
    ] == [
        (10, 10, moved.json()["id"], expiries[0]),
        (4, 4, moved.json()["id"], expiries[1]),
    ]
    assert lots(client, sender) == [(10, 6)]

    # A journal: the receiver's soonest 3 go to the third wallet with their expiry; the
    # sender's 8 to revenue take its lot's 6, then 2 of its non-expiring funds.
    journal = post(
        client,
        "/v1/journal",
        {
            "asset": "POINTS",
            "postings": [
                {"from": receiver, "to": third, "amount": 3},
                {"from": sender, "to": "revenue", "amount": 8},
            ],
        },
    )
    assert journal.status_code == 201, journal.text
    assert [
        (lot["amount"], lot["expires_at"]) for lot in client.get(f"/v1/wallets/{third}/lots").json()["data"]
    ] == [(3, expiries[0])]
    assert lots(client, receiver) == [(10, 7), (4, 4)]
    assert lots(client, sender) == []
    assert wallet(client, sender)["balance"] == 3
    assert_ledger_ok(client)


def place_hold(client: httpx.Client, wallet_id: str, amount: int) -> dict[str, Any]:
    response = post(client, f"/v1/wallets/{wallet_id}/holds", {"amount": amount})
    assert response.status_code == 201, response.text
    document: dict[str, Any] = response.json()
    return document


def reverse(client: httpx.Client, transaction_id: str, amount: int | None = None) -> httpx.Response:
    return post(
        client, f"/v1/transactions/{transaction_id}/reverse", {} if amount is None else {"amount": amount}
    )


def test_holds_take_parts_of_lots_and_give_them_back(client: httpx.Client) -> None:
    wallet_id = new_wallet(client, "POINTS")
    credit(client, wallet_id, 10, at(HOUR))
    credit(client, wallet_id, 20, at(2 * HOUR))
    credit(client, wallet_id, 30)
    voided = place_hold(client, wallet_id, 15)
    assert lots(client, wallet_id) == [(20, 15)]  # the hold took all of the first lot, 5 of the second
    assert post(client, f"/v1/holds/{voided['id']}/void", {}).status_code == 200
    assert lots(client, wallet_id) == [(10, 10), (20, 20)]

    captured = place_hold(client, wallet_id, 40)  # 10 + 20 of lots, 10 of the rest
    assert lots(client, wallet_id) == []
    assert spend(client, wallet_id, 20).status_code == 201  # the 20 non-expiring left
    capture = post(client, f"/v1/holds/{captured['id']}/capture", {"amount": 12})
    assert capture.status_code == 201, capture.text
    # The capture consumed the hold's parts soonest first (10, then 2); the rest went back.
    assert lots(client, wallet_id) == [(20, 18)]
    assert wallet(client, wallet_id)["balance"] == 28
    # A refund of the capture gives back to the lots it came from, last taken first.
    refund = reverse(client, capture.json()["id"], 5)
    assert refund.status_code == 201, refund.text
    assert lots(client, wallet_id) == [(10, 3), (20, 20)]
    assert reverse(client, capture.json()["id"]).status_code == 201
    assert lots(client, wallet_id) == [(10, 10), (20, 20)]
    assert_ledger_ok(client)


def test_refunds_give_back_to_their_lots_non_expiring_part_first(client: httpx.Client) -> None:
    wallet_id = new_wallet(client, "POINTS")
    credit(client, wallet_id, 10, at(HOUR))
    credit(client, wallet_id, 5)
    spent = spend(client, wallet_id, 12)  # 10 of the lot, then 2 of the rest
    assert spent.status_code == 201
    assert lots(client, wallet_id) == []
    assert reverse(client, spent.json()["id"], 3).status_code == 201  # 2 non-expiring, then 1 of the lot
    assert lots(client, wallet_id) == [(10, 1)]
    assert reverse(client, spent.json()["id"]).status_code == 201
    assert lots(client, wallet_id) == [(10, 10)]
    assert wallet(client, wallet_id)["balance"] == 15
    assert_ledger_ok(client)


def test_a_reversed_credit_takes_back_from_its_own_lot_first(client: httpx.Client) -> None:
    wallet_id = new_wallet(client, "POINTS")
    credit(client, wallet_id, 10, at(HOUR))
    late = credit(client, wallet_id, 10, at(2 * HOUR))
    credit(client, wallet_id, 10)
    assert reverse(client, late["id"], 4).status_code == 201
    assert lots(client, wallet_id) == [(10, 10), (10, 6)]
    # A transfer's reversal takes back from the lots the transfer made at the receiver.
    receiver = new_wallet(client, "POINTS")
    credit(client, receiver, 7, at(3 * HOUR))
    moved = post(
        client, "/v1/transfers", {"from_wallet_id": wallet_id, "to_wallet_id": receiver, "amount": 12}
    )
    assert moved.status_code == 201, moved.text
    assert lots(client, wallet_id) == [(10, 4)]
    assert lots(client, receiver) == [(10, 10), (2, 2), (7, 7)]
    assert reverse(client, moved.json()["id"], 11).status_code == 201
    assert lots(client, receiver) == [(2, 1), (7, 7)]
    # Given back last taken first: the 2 of the later lot, then 9 of the sooner.
    assert lots(client, wallet_id) == [(10, 9), (10, 6)]
    assert_ledger_ok(client)


def test_expiry_is_exact_and_posted_before_the_next_movement(client: httpx.Client, server: Server) -> None:
    """Lots that expire in SHORT_SECONDS, one wait for all the cases."""
    deadline = datetime.now(UTC) + timedelta(seconds=SHORT_SECONDS)
    soon = deadline.isoformat()
    only_lot, lot_and_more, held, spent_from, captured, untouched, hold_expires = (
        new_wallet(client, "POINTS") for _ in range(7)
    )
    for wallet_id in (only_lot, lot_and_more, held, spent_from, captured, untouched):
        credit(client, wallet_id, 10, soon)
    credit(client, lot_and_more, 5)
    hold = place_hold(client, held, 10)
    spent = spend(client, spent_from, 4)
    assert spent.status_code == 201
    partial = place_hold(client, captured, 6)
    credit(client, hold_expires, 8, at(HOUR))
    short_hold = post(client, f"/v1/wallets/{hold_expires}/holds", {"amount": 5, "expires_in_seconds": 1})
    assert short_hold.status_code == 201
    assert lots(client, hold_expires) == [(8, 3)]
    assert lots(client, untouched) == [(10, 10)]
    assert datetime.now(UTC) < deadline, "the setup took longer than the lots' life"
    time.sleep((deadline - datetime.now(UTC)).total_seconds() + 0.2)

    # Expired lots are listed no more at once, but stay in the balance until posted.
    assert lots(client, untouched) == []
    assert (wallet(client, untouched)["balance"], wallet(client, untouched)["next_expiry"]) == (10, None)

    declined = spend(client, only_lot, 1)
    assert (declined.status_code, declined.json()["code"]) == (409, "insufficient_funds")
    assert "0 available" in declined.json()["detail"]
    assert history(client, only_lot) == [("topup", 10, 10), ("expiry", 10, 0)]

    paid = spend(client, lot_and_more, 5)
    assert paid.status_code == 201, paid.text
    assert history(client, lot_and_more) == [
        ("topup", 10, 10),
        ("topup", 5, 15),
        ("expiry", 10, 5),
        ("spend", 5, 0),
    ]
    transactions = client.get(f"/v1/wallets/{lot_and_more}/transactions").json()["data"]
    expiry = transactions[1]
    assert expiry["created_at"] == transactions[0]["created_at"], "posted in the spend's transaction"
    assert expiry["reverses"] is None and expiry["reference"] is None
    assert {entry["account"] for entry in expiry["entries"]} == {lot_and_more, "breakage:POINTS"}
    assert expiry["metadata"] == {
        "lot_expires_at": deadline.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "lot_transaction_id": transactions[-1]["id"],
    }
    refused = reverse(client, expiry["id"])
    assert (refused.status_code, refused.json()["code"]) == (422, "not_reversible")

    # The hold kept its parts from expiring; voided, they go back to the lot, which has expired.
    assert post(client, f"/v1/holds/{hold['id']}/void", {}).status_code == 200
    assert history(client, held) == [("topup", 10, 10), ("expiry", 10, 0)]

    # A refund of a spend that took from the lot: the rest of the lot expires first, then the
    # refund gives back to it, and that part expires too.
    assert reverse(client, spent.json()["id"]).status_code == 201
    assert history(client, spent_from) == [
        ("topup", 10, 10), ("spend", 4, 6), ("expiry", 6, 0), ("reversal", 4, 4), ("expiry", 4, 0),
    ]  # fmt: skip

    # A capture consumes the hold's parts even of an expired lot; the rest expires.
    capture = post(client, f"/v1/holds/{partial['id']}/capture", {"amount": 2})
    assert capture.status_code == 201, capture.text
    assert history(client, captured) == [
        ("topup", 10, 10), ("expiry", 4, 6), ("spend", 2, 4), ("expiry", 4, 0),
    ]  # fmt: skip

    # An expired hold gave its parts back: the next debit takes from the lot again.
    assert spend(client, hold_expires, 1).status_code == 201
    assert lots(client, hold_expires) == [(8, 7)]

    # On demand, like the sweeper: the rest of the due lots expire.
    output = wallet_command("lots", "expire", database_url=server.database_url).stdout
    assert "expired what was due in" in output
    assert history(client, untouched) == [("topup", 10, 10), ("expiry", 10, 0)]
    assert wallet(client, untouched)["balance"] == 0
    assert_ledger_ok(client)


async def _spends_across_an_expiry(
    server: Server, wallet_id: str, count: int, spread_seconds: float
) -> list[int]:
    async with server.async_client() as client:

        async def one(number: int) -> int:
            await asyncio.sleep(spread_seconds * number / count)
            response = await client.post(
                f"/v1/wallets/{wallet_id}/spend",
                json={"amount": 1},
                headers={"Idempotency-Key": str(uuid.uuid4())},
            )
            assert response.status_code in (201, 409), response.text
            return response.status_code

        return await asyncio.wait_for(asyncio.gather(*(one(n) for n in range(count))), GATHER_TIMEOUT_SECONDS)


def test_concurrent_spends_while_a_lot_expires(client: httpx.Client, server: Server) -> None:
    """100 spends of 1, spread over two seconds, on a wallet whose soonest lot (100) expires a
    second in: each spend before the expiry takes from that lot, the expiry takes exactly what
    is left of it, the spends after take from the rest (50) and then are declined, and the
    balance never goes below zero."""
    wallet_id = new_wallet(client, "POINTS")
    credit(client, wallet_id, 100, at(timedelta(seconds=1.0)))
    credit(client, wallet_id, 30, at(HOUR))
    credit(client, wallet_id, 20)
    statuses = asyncio.run(_spends_across_an_expiry(server, wallet_id, 100, 2.0))
    rows = history(client, wallet_id)[3:]
    kinds = [row[0] for row in rows]
    assert kinds.count("expiry") == 1 and set(kinds) == {"spend", "expiry"}, rows
    spent_before = kinds.index("expiry")
    assert 0 < spent_before < 100, "the lot expired while the spends ran"
    assert rows[spent_before][1] == 100 - spent_before, rows  # what the spends left of the lot
    successes = statuses.count(201)
    assert len(rows) == successes + 1
    assert successes == spent_before + min(100 - spent_before, 50)
    assert all(row[2] >= 0 for row in rows)
    assert wallet(client, wallet_id)["balance"] == 150 - successes - (100 - spent_before)
    assert_ledger_ok(client)


@pytest.fixture
def own_server(create_database: Callable[[], str], tmp_path: Path) -> Iterator[Server]:
    """A server with the sweeper off on a database of its own: what a test leaves in it reaches
    no other test's sweep."""
    database_url = create_database()
    wallet_command("db", "seed", database_url=database_url)
    running = start_server(database_url, tmp_path / "server.log", {"WALLET_EXPIRY_SWEEP_SECONDS": "0"})
    try:
        yield running
    finally:
        running.stop()


def test_a_hold_and_its_lot_that_both_expired_leave_every_call_of_the_wallet_working(
    own_server: Server,
) -> None:
    """A hold takes 50 of a lot of 100 and both expire. The wallet's next call (a movement, a
    void, the sweep) gives the hold's 50 back to the lot, which has expired, and expires the lot
    (100): the balance falls to the 10 of non-expiring funds, below the 50 the hold held, and
    held must fall to 0 with it."""
    with own_server.client() as client:
        spent_from, voided_in, swept = (new_wallet(client, "POINTS") for _ in range(3))
        deadline = datetime.now(UTC) + timedelta(seconds=SHORT_SECONDS)
        holds = {}
        for wallet_id in (spent_from, voided_in, swept):
            credit(client, wallet_id, 10)
            credit(client, wallet_id, 100, deadline.isoformat(), op="bonus")
            hold = post(client, f"/v1/wallets/{wallet_id}/holds", {"amount": 50, "expires_in_seconds": 1})
            assert hold.status_code == 201, hold.text
            holds[wallet_id] = hold.json()["id"]
        assert datetime.now(UTC) < deadline, "the setup took longer than the lots' life"
        time.sleep((deadline - datetime.now(UTC)).total_seconds() + 0.2)

        paid = spend(client, spent_from, 1)
        assert paid.status_code == 201, paid.text
        assert history(client, spent_from) == [
            ("topup", 10, 10), ("bonus", 100, 110), ("expiry", 100, 10), ("spend", 1, 9),
        ]  # fmt: skip

        refused = post(client, f"/v1/holds/{holds[voided_in]}/void", {})
        assert (refused.status_code, refused.json()["code"]) == (409, "hold_not_pending"), refused.text
        assert history(client, voided_in)[-1] == ("expiry", 100, 10)

        wallet_command("lots", "expire", database_url=own_server.database_url)
        assert history(client, swept)[-1] == ("expiry", 100, 10)
        for wallet_id, balance in ((spent_from, 9), (voided_in, 10), (swept, 10)):
            assert {name: wallet(client, wallet_id)[name] for name in ("balance", "held", "available")} == {
                "balance": balance,
                "held": 0,
                "available": balance,
            }
        assert_ledger_ok(client)


def test_expires_at_must_be_an_rfc3339_time_ahead(client: httpx.Client) -> None:
    wallet_id = new_wallet(client, "POINTS")
    now = datetime.now(UTC)
    refused: list[Any] = [
        (now - timedelta(seconds=1)).isoformat(),
        (now + timedelta(days=3653 + 1)).isoformat(),
        (now + HOUR).replace(tzinfo=None).isoformat(),  # no offset
        (now + HOUR).strftime("%Y-%m-%d"),
        (now + HOUR).timestamp(),
        str(int((now + HOUR).timestamp())),
        "2030-02-30T00:00:00Z",
        "2030-01-01T00:00:00+24:00",
        "",
    ]
    for value in refused:
        for op in ("topup", "bonus"):
            response = post(client, f"/v1/wallets/{wallet_id}/{op}", {"amount": 1, "expires_at": value})
            assert (response.status_code, response.json()["code"]) == (422, "validation_error"), (
                value,
                response.text,
            )
            assert response.json()["errors"][0]["loc"][:2] == ["body", "expires_at"], response.text
    spending = post(
        client, f"/v1/wallets/{wallet_id}/spend", {"amount": 1, "expires_at": (now + HOUR).isoformat()}
    )
    assert spending.status_code == 422
    assert wallet(client, wallet_id)["balance"] == 0
    accepted = post(
        client, f"/v1/wallets/{wallet_id}/topup", {"amount": 1, "expires_at": "2099-01-01T00:00:00Z"}
    )
    assert (accepted.status_code, accepted.json()["code"]) == (422, "validation_error"), (
        "more than 10 years ahead"
    )
    lowercase = (now + HOUR).astimezone(timezone(timedelta(hours=2))).strftime("%Y-%m-%dt%H:%M:%S.%f+02:00")
    assert (
        post(client, f"/v1/wallets/{wallet_id}/topup", {"amount": 1, "expires_at": lowercase}).status_code
        == 201
    )


def test_batch_items_carry_expires_at_and_replay_their_single_request(client: httpx.Client) -> None:
    wallet_id = new_wallet(client, "POINTS")
    expires_at = at(HOUR)
    key = str(uuid.uuid4())
    items = [
        {
            "op": "topup",
            "wallet_id": wallet_id,
            "amount": 7,
            "expires_at": expires_at,
            "idempotency_key": key,
        },
        {"op": "bonus", "wallet_id": wallet_id, "amount": 3, "idempotency_key": str(uuid.uuid4())},
    ]
    batch = client.post("/v1/batches", json={"items": items})
    assert batch.status_code == 200, batch.text
    assert [result["status"] for result in batch.json()["results"]] == [201, 201]
    assert lots(client, wallet_id) == [(7, 7)]
    single = post(client, f"/v1/wallets/{wallet_id}/topup", {"amount": 7, "expires_at": expires_at}, key)
    assert single.status_code == 201 and single.headers["Idempotent-Replayed"] == "true"
    other = post(client, f"/v1/wallets/{wallet_id}/topup", {"amount": 7, "expires_at": at(2 * HOUR)}, key)
    assert (other.status_code, other.json()["code"]) == (422, "idempotency_key_reused")
    spend_item = {
        "op": "spend",
        "wallet_id": wallet_id,
        "amount": 1,
        "expires_at": expires_at,
        "idempotency_key": "k",
    }
    refused = client.post("/v1/batches", json={"items": [spend_item]})
    assert refused.status_code == 422
    assert refused.json()["errors"][0]["loc"] == ["body", "items", 0, "expires_at"]
    assert lots(client, wallet_id) == [(7, 7)]


def test_lots_of_an_unknown_wallet(client: httpx.Client) -> None:
    response = client.get(f"/v1/wallets/{uuid.uuid4()}/lots")
    assert (response.status_code, response.json()["code"]) == (404, "wallet_not_found")
    assert client.get(f"/v1/wallets/{uuid.uuid4()}/lots", params={"limit": 0}).status_code == 422
