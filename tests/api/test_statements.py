"""GET /v1/wallets/{id}/balance?at= and GET /v1/wallets/{id}/statement: the balance at any
instant is a replay of the wallet's history up to it; a statement's
`opening + credits - debits = closing` for any movements and any window, its CSV is its JSON,
and both read entry_wallet_index, never a scan of the wallet's history."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import random
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import asyncpg
import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from support import Server, assert_ledger_ok, new_wallet, topup
from wallet.keys import Scope
from wallet.keys import create as create_key
from wallet.ledger import statements

MICROSECOND = timedelta(microseconds=1)
CSV_HEADER = ["created_at", "transaction_id", "type", "direction", "amount", "balance_after", "reference"]


# --- helpers ------------------------------------------------------------------------------------


def post(client: httpx.Client, path: str, body: dict[str, Any]) -> httpx.Response:
    return client.post(path, json=body, headers={"Idempotency-Key": str(uuid.uuid4())})


def posted(client: httpx.Client, path: str, body: dict[str, Any]) -> dict[str, Any]:
    response = post(client, path, body)
    assert response.status_code == 201, response.text
    document: dict[str, Any] = response.json()
    return document


def text(moment: datetime, zone: timezone = UTC) -> str:
    """RFC 3339 with microseconds, in `zone`."""
    return moment.astimezone(zone).isoformat(timespec="microseconds").replace("+00:00", "Z")


def instant(value: str) -> datetime:
    return datetime.fromisoformat(value)


def history(client: httpx.Client, wallet_id: str) -> list[dict[str, Any]]:
    """Every transaction of the wallet, oldest first, as its history pages show them."""
    found: list[dict[str, Any]] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 200, **({"cursor": cursor} if cursor else {})}
        page = client.get(f"/v1/wallets/{wallet_id}/transactions", params=params)
        assert page.status_code == 200, page.text
        found += page.json()["data"]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            return found[::-1]


@dataclass(frozen=True)
class Movement:
    """One entry of the wallet, from its history: the replay's unit."""

    created_at: datetime
    transaction_id: str
    type: str
    direction: str
    amount: int
    balance_after: int
    reference: str | None

    @property
    def signed(self) -> int:
        return self.amount if self.direction == "credit" else -self.amount


def movements(transactions: list[dict[str, Any]], wallet_id: str) -> list[Movement]:
    return [
        Movement(
            instant(record["created_at"]),
            record["id"],
            record["type"],
            entry["direction"],
            entry["amount"],
            entry["balance_after"],
            record["reference"],
        )
        for record in transactions
        for entry in record["entries"]
        if entry["account_id"] == wallet_id
    ]


def replayed_balance(replay: list[Movement], through: datetime, *, inclusive: bool) -> int:
    """The wallet's balance from its history alone: its entries up to `through`, summed."""
    return sum(
        movement.signed
        for movement in replay
        if movement.created_at < through or (inclusive and movement.created_at == through)
    )


def balance_at(client: httpx.Client, wallet_id: str, at: str) -> httpx.Response:
    return client.get(f"/v1/wallets/{wallet_id}/balance", params={"at": at})


def statement(
    client: httpx.Client, wallet_id: str, start: str, end: str | None = None, accept: str | None = None
) -> httpx.Response:
    params = {"from": start, **({"to": end} if end is not None else {})}
    headers = {"Accept": accept} if accept is not None else {}
    return client.get(f"/v1/wallets/{wallet_id}/statement", params=params, headers=headers)


def journal(client: httpx.Client, postings: list[tuple[str, str, int]], reference: str | None = None) -> None:
    body: dict[str, Any] = {
        "asset": "GOLD",
        "postings": [{"from": a, "to": b, "amount": n} for a, b, n in postings],
    }
    if reference is not None:
        body["reference"] = reference
    posted(client, "/v1/journal", body)


def assert_problem(response: httpx.Response, status: int, code: str, loc: list[str] | None = None) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    document = response.json()
    assert document["code"] == code, document
    if loc is not None:
        assert [error["loc"] for error in document["errors"]] == [loc], document


def varied_history(client: httpx.Client) -> tuple[str, str]:
    """A wallet with every kind of movement: top-up, bonus, spend, transfers both ways, a
    journal that debits and credits it, a batch of three top-ups (one time), a captured hold and
    a refund. Returns (wallet, the other wallet)."""
    wallet, other = new_wallet(client), new_wallet(client)
    assert topup(client, other, 1000).status_code == 201
    base = f"/v1/wallets/{wallet}"
    posted(client, f"{base}/topup", {"amount": 100, "reference": "order-1"})
    posted(client, f"{base}/bonus", {"amount": 20})
    spend = posted(client, f"{base}/spend", {"amount": 30})
    posted(client, "/v1/transfers", {"from_wallet_id": wallet, "to_wallet_id": other, "amount": 10})
    posted(client, "/v1/transfers", {"from_wallet_id": other, "to_wallet_id": wallet, "amount": 5})
    journal(client, [(wallet, "revenue", 7), ("treasury", wallet, 3)])
    items = [
        {"op": "topup", "wallet_id": wallet, "amount": amount, "idempotency_key": str(uuid.uuid4())}
        for amount in (1, 2, 4)
    ]
    batch = client.post("/v1/batches", json={"items": items})
    assert batch.status_code == 200 and all(r["status"] == 201 for r in batch.json()["results"]), batch.text
    hold = posted(client, f"{base}/holds", {"amount": 6})
    posted(client, f"/v1/holds/{hold['id']}/capture", {"amount": 4})
    posted(client, f"/v1/transactions/{spend['id']}/reverse", {"amount": 12})
    for amount in (9, 8):
        posted(client, f"{base}/spend", {"amount": amount})
    return wallet, other


# --- balance at a time --------------------------------------------------------------------------


def test_balance_at_equals_a_replay_of_the_history_at_50_instants(client: httpx.Client) -> None:
    wallet, _ = varied_history(client)
    replay = movements(history(client, wallet), wallet)
    times = sorted({movement.created_at for movement in replay})
    assert len(times) >= 10 and len(replay) > len(times), "a batch shares one time, a journal two entries"
    rng = random.Random(20261130)
    first, last = times[0], times[-1]
    span_us = (last - first) // MICROSECOND
    chosen = [first - timedelta(days=400), first - MICROSECOND, first, last, last + MICROSECOND]
    while len(chosen) < 50:
        kind = rng.choice(["exact", "just before", "just after", "between"])
        moment = rng.choice(times)
        if kind == "just before":
            moment -= MICROSECOND
        elif kind == "just after":
            moment += MICROSECOND
        elif kind == "between":
            moment = first + rng.randrange(span_us) * MICROSECOND
        chosen.append(moment)
    zones = [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8))]
    for index, moment in enumerate(chosen):
        response = balance_at(client, wallet, text(moment, zones[index % len(zones)]))
        assert response.status_code == 200, response.text
        expected = replayed_balance(replay, moment, inclusive=True)
        assert response.json() == {"wallet_id": wallet, "at": text(moment), "balance": expected}, moment
    assert sum(1 for moment in chosen if moment < first) >= 2
    assert sum(1 for moment in chosen if moment in times) >= 5
    now = balance_at(client, wallet, text(last + MICROSECOND)).json()["balance"]
    assert now == client.get(f"/v1/wallets/{wallet}").json()["balance"] == replay[-1].balance_after


def test_a_wallet_with_no_transactions_has_balance_zero_at_any_past_time(client: httpx.Client) -> None:
    wallet = new_wallet(client)
    for at in (
        "1970-01-01T00:00:00Z",
        "0001-01-01T00:00:00Z",
        text(datetime.now(UTC) - timedelta(seconds=1)),
    ):
        response = balance_at(client, wallet, at)
        assert response.status_code == 200, response.text
        assert response.json()["balance"] == 0


# --- statements ---------------------------------------------------------------------------------

OPERATIONS = st.lists(
    st.tuples(
        st.sampled_from(["topup", "bonus", "spend", "transfer out", "transfer in", "journal", "batch"]),
        st.integers(min_value=1, max_value=60),
    ),
    max_size=8,
)


def _apply(client: httpx.Client, wallet: str, other: str, operation: str, amount: int) -> None:
    """One movement; a spend or transfer beyond the balance is declined (409) and posts nothing."""
    base = f"/v1/wallets/{wallet}"
    if operation in ("topup", "bonus", "spend"):
        response = post(
            client, f"{base}/{operation}", {"amount": amount, "reference": f"{operation} {amount}"}
        )
    elif operation == "transfer out":
        response = post(
            client, "/v1/transfers", {"from_wallet_id": wallet, "to_wallet_id": other, "amount": amount}
        )
    elif operation == "transfer in":
        response = post(
            client, "/v1/transfers", {"from_wallet_id": other, "to_wallet_id": wallet, "amount": amount}
        )
    elif operation == "journal":  # credits the wallet, then debits part of it back
        body = {
            "asset": "GOLD",
            "postings": [
                {"from": "treasury", "to": wallet, "amount": amount},
                {"from": wallet, "to": "revenue", "amount": amount // 2 + 1},
            ],
        }
        response = post(client, "/v1/journal", body)
    else:  # two top-ups and a spend in one call of the posting core: one time for all three
        items = [
            {"op": op, "wallet_id": wallet, "amount": amount, "idempotency_key": str(uuid.uuid4())}
            for op in ("topup", "topup", "spend")
        ]
        response = client.post("/v1/batches", json={"items": items})
        assert response.status_code == 200, response.text
        return
    assert response.status_code in (201, 409), response.text


@settings(
    max_examples=12,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(operations=OPERATIONS, data=st.data())
def test_statement_identity_holds_for_any_movements_and_window(
    server: Server, operations: list[tuple[str, int]], data: st.DataObject
) -> None:
    with server.client() as client:
        wallet, other = new_wallet(client), new_wallet(client)
        assert topup(client, other, 10_000).status_code == 201
        for operation, amount in operations:
            _apply(client, wallet, other, operation, amount)
        transactions = history(client, wallet)
        replay = movements(transactions, wallet)
        times = sorted({movement.created_at for movement in replay})
        start_of_test = instant(client.get(f"/v1/wallets/{wallet}").json()["created_at"])
        candidates = [start_of_test - timedelta(hours=1), start_of_test]
        candidates += [moment + shift * MICROSECOND for moment in times for shift in (-1, 0, 1)]
        for _ in range(3):
            start, end = sorted(
                data.draw(st.lists(st.sampled_from(candidates), min_size=2, max_size=2, unique=True))
            )
            until_now = data.draw(st.booleans())
            response = statement(client, wallet, text(start), None if until_now else text(end))
            assert response.status_code == 200, response.text
            document = response.json()
            end = instant(document["to"]) if until_now else end
            inside = [movement for movement in replay if start <= movement.created_at < end]
            credits = sum(movement.amount for movement in inside if movement.direction == "credit")
            debits = sum(movement.amount for movement in inside if movement.direction == "debit")
            assert (
                document["opening_balance"] + document["total_credits"] - document["total_debits"]
                == (document["closing_balance"])
            )
            assert (document["total_credits"], document["total_debits"]) == (credits, debits)
            assert document["opening_balance"] == replayed_balance(replay, start, inclusive=False)
            assert document["closing_balance"] == replayed_balance(replay, end, inclusive=False)
            listed = [record for record in transactions if start <= instant(record["created_at"]) < end]
            assert document["transactions"] == listed  # oldest first, each once, rendered as in history
            assert (document["wallet_id"], document["asset"], document["from"]) == (
                wallet,
                "GOLD",
                text(start),
            )
            closing_at = balance_at(client, wallet, text(end - MICROSECOND))
            assert closing_at.json()["balance"] == document["closing_balance"], closing_at.text


def test_statement_to_defaults_to_now_and_closes_at_the_balance(client: httpx.Client) -> None:
    wallet, _ = varied_history(client)
    before = datetime.now(UTC) - timedelta(minutes=5)
    response = statement(client, wallet, text(before))
    assert response.status_code == 200, response.text
    document = response.json()
    assert instant(document["to"]) >= instant(history(client, wallet)[-1]["created_at"])
    assert document["opening_balance"] == 0
    assert document["closing_balance"] == client.get(f"/v1/wallets/{wallet}").json()["balance"]
    assert [record["id"] for record in document["transactions"]] == [
        record["id"] for record in history(client, wallet)
    ]
    for record in document["transactions"][:3]:
        assert client.get(f"/v1/transactions/{record['id']}").json() == record
    assert response.headers["vary"] == "Accept"


def test_a_window_with_no_transactions_opens_and_closes_at_the_balance_then(client: httpx.Client) -> None:
    wallet = new_wallet(client)
    assert topup(client, wallet, 70).status_code == 201
    later = datetime.now(UTC) + timedelta(days=30)
    response = statement(client, wallet, text(later), text(later + timedelta(days=1)))
    assert response.status_code == 200, response.text
    document = response.json()
    assert (document["opening_balance"], document["closing_balance"]) == (70, 70)
    assert (document["total_credits"], document["total_debits"], document["transactions"]) == (0, 0, [])


# --- CSV ----------------------------------------------------------------------------------------


def test_csv_parses_with_the_csv_module_and_matches_the_json(client: httpx.Client) -> None:
    wallet, other = new_wallet(client), new_wallet(client)
    assert topup(client, other, 500).status_code == 201
    base = f"/v1/wallets/{wallet}"
    references = ['a, "quoted" reference', "=HYPERLINK(1)", "plain", "naïve café ✓", '"', ","]
    for index, reference in enumerate(references):
        posted(client, f"{base}/topup", {"amount": 10 + index, "reference": reference})
    posted(client, f"{base}/spend", {"amount": 5})
    journal(client, [("treasury", wallet, 9), (wallet, other, 4)], reference="two, entries")
    start = instant(history(client, wallet)[0]["created_at"])
    end = datetime.now(UTC)
    as_json = statement(client, wallet, text(start), text(end))
    as_csv = statement(client, wallet, text(start), text(end), accept="text/csv")
    assert as_json.status_code == as_csv.status_code == 200, as_csv.text
    assert as_csv.headers["content-type"] == "text/csv; charset=utf-8"
    assert as_csv.headers["content-disposition"].startswith(f'attachment; filename="statement-{wallet}-')
    assert as_csv.headers["vary"] == "Accept"
    rows = list(csv.reader(io.StringIO(as_csv.content.decode("utf-8"), newline="")))
    assert rows[0] == CSV_HEADER
    expected = [
        [
            record["created_at"],
            record["id"],
            record["type"],
            entry["direction"],
            str(entry["amount"]),
            str(entry["balance_after"]),
            record["reference"] or "",
        ]
        for record in as_json.json()["transactions"]
        for entry in record["entries"]
        if entry["account_id"] == wallet
    ]
    assert rows[1:] == expected
    assert len(expected) == len(as_json.json()["transactions"]) + 1  # the journal's two entries
    assert [row[6] for row in rows[1 : len(references) + 1]] == references  # exact, formulas too
    assert as_csv.content.count(b"\r\n") == len(rows)  # RFC 4180 line ends
    document = as_json.json()
    credits = sum(int(row[4]) for row in rows[1:] if row[3] == "credit")
    debits = sum(int(row[4]) for row in rows[1:] if row[3] == "debit")
    assert (credits, debits) == (document["total_credits"], document["total_debits"])
    assert int(rows[-1][5]) == document["closing_balance"]


@pytest.mark.parametrize(
    ("accept", "media_type"),
    [
        (None, "application/json"),
        ("text/csv", "text/csv; charset=utf-8"),
        ("text/*", "text/csv; charset=utf-8"),
        ("text/csv, */*;q=0.8", "text/csv; charset=utf-8"),
        ("application/json;q=0.4, text/csv;q=0.9", "text/csv; charset=utf-8"),
        ("text/csv;q=0.5, application/json", "application/json"),
        ("application/json, text/csv", "application/json"),
        ("*/*", "application/json"),
        ("text/html", "application/json"),
        ("text/csv;q=0", "application/json"),
        ("text/csv;q=abc", "application/json"),
        (",,;;=", "application/json"),
    ],
)
def test_accept_chooses_csv_or_json(client: httpx.Client, accept: str | None, media_type: str) -> None:
    wallet = new_wallet(client)
    assert topup(client, wallet, 5).status_code == 201
    response = statement(client, wallet, "2000-01-01T00:00:00Z", accept=accept)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == media_type


# --- bad requests, access -----------------------------------------------------------------------

IN_AN_HOUR = "{in_an_hour}"


@pytest.mark.parametrize(
    ("params", "loc"),
    [
        ({}, ["query", "at"]),
        ({"at": ""}, ["query", "at"]),
        ({"at": "yesterday"}, ["query", "at"]),
        ({"at": "2024-01-01"}, ["query", "at"]),
        ({"at": "2024-01-01T00:00:00"}, ["query", "at"]),  # no offset
        ({"at": "2024-02-30T00:00:00Z"}, ["query", "at"]),
        ({"at": "1700000000"}, ["query", "at"]),
        ({"at": IN_AN_HOUR}, ["query", "at"]),
        ({"at": "9999-12-31T23:59:59Z"}, ["query", "at"]),
        ({"at": "0001-01-01T00:00:00+00:01"}, ["query", "at"]),  # before year 1 in UTC
    ],
)
def test_balance_at_refuses_a_missing_malformed_or_future_time(
    client: httpx.Client, params: dict[str, str], loc: list[str]
) -> None:
    wallet = new_wallet(client)
    if params.get("at") == IN_AN_HOUR:
        params = {"at": text(datetime.now(UTC) + timedelta(hours=1))}
    response = client.get(f"/v1/wallets/{wallet}/balance", params=params)
    assert_problem(response, 422, "validation_error", loc)


@pytest.mark.parametrize(
    ("params", "loc"),
    [
        ({}, ["query", "from"]),
        ({"to": "2024-01-01T00:00:00Z"}, ["query", "from"]),
        ({"from": "2024-01-01"}, ["query", "from"]),
        ({"from": "2024-01-01T00:00:00Z", "to": "soon"}, ["query", "to"]),
        ({"from": "2024-01-01T00:00:00Z", "to": "2024-01-01T00:00:00Z"}, ["query", "to"]),
        ({"from": "2024-01-01T00:00:00Z", "to": "2023-12-31T23:59:59Z"}, ["query", "to"]),
        ({"from": "2024-01-01T05:00:00+05:00", "to": "2024-01-01T00:00:00Z"}, ["query", "to"]),  # one instant
        ({"from": "9999-01-01T00:00:00Z"}, ["query", "from"]),  # after now, the default `to`
        ({"from": "2024-01-01T00:00:00Z", "to": "9999-12-31T23:59:59-00:01"}, ["query", "to"]),  # past 9999
    ],
)
def test_statement_refuses_a_missing_malformed_or_empty_window(
    client: httpx.Client, params: dict[str, str], loc: list[str]
) -> None:
    wallet = new_wallet(client)
    response = client.get(f"/v1/wallets/{wallet}/statement", params=params)
    assert_problem(response, 422, "validation_error", loc)


@pytest.mark.parametrize(
    "wallet_id",
    ["not-a-uuid", str(uuid.uuid4()), "00000000-0000-0000-0000-000000000000"],
    ids=["not-a-uuid", "unknown", "nil"],
)
def test_an_unknown_wallet_is_404(client: httpx.Client, wallet_id: str) -> None:
    at = "2024-01-01T00:00:00Z"
    assert_problem(balance_at(client, wallet_id, at), 404, "wallet_not_found")
    assert_problem(statement(client, wallet_id, at), 404, "wallet_not_found")
    assert_problem(statement(client, wallet_id, at, accept="text/csv"), 404, "wallet_not_found")


def test_a_system_account_is_no_wallet(server: Server, client: httpx.Client) -> None:
    async def treasury() -> str:
        connection = await asyncpg.connect(server.database_url)
        try:
            found = await connection.fetchval(
                "SELECT id FROM account WHERE kind = 'treasury' AND asset = 'GOLD'"
            )
        finally:
            await connection.close()
        return str(found)

    account = asyncio.run(treasury())
    assert_problem(balance_at(client, account, "2024-01-01T00:00:00Z"), 404, "wallet_not_found")
    assert_problem(statement(client, account, "2024-01-01T00:00:00Z"), 404, "wallet_not_found")


def new_key(database_url: str, scope: Scope) -> str:
    """A new API key with one scope, made as `wallet keys create` makes it (without starting
    the command)."""

    async def run() -> str:
        connection = await asyncpg.connect(database_url)
        try:
            _, secret = await create_key(connection, f"statements-{uuid.uuid4().hex[:12]}", {scope})
        finally:
            await connection.close()
        return secret

    return asyncio.run(run())


def test_reading_needs_the_read_scope(server: Server, client: httpx.Client) -> None:
    wallet = new_wallet(client)
    assert topup(client, wallet, 5).status_code == 201
    at = "2024-01-01T00:00:00Z"
    paths = [f"/v1/wallets/{wallet}/balance?at={at}", f"/v1/wallets/{wallet}/statement?from={at}"]
    keys = {scope: new_key(server.database_url, scope) for scope in (Scope.READ, Scope.WRITE)}
    with httpx.Client(base_url=server.base_url, timeout=30) as anonymous:
        for path in paths:
            assert (
                anonymous.get(path, headers={"Authorization": f"Bearer {keys[Scope.READ]}"}).status_code
                == 200
            )
            assert_problem(
                anonymous.get(path, headers={"Authorization": f"Bearer {keys[Scope.WRITE]}"}),
                403,
                "forbidden",
            )
            assert_problem(anonymous.get(path), 401, "unauthenticated")
            assert_problem(anonymous.get(path + "&at=nonsense&from=x"), 401, "unauthenticated")


# --- the limit ----------------------------------------------------------------------------------


def analyze(database_url: str) -> None:
    """Fresh statistics after a bulk load, so that the suite's later queries (verify's
    especially) are not planned for the database as it was before it."""

    async def run() -> None:
        connection = await asyncpg.connect(database_url)
        try:
            await connection.execute("ANALYZE")
        finally:
            await connection.close()

    asyncio.run(run())


def test_more_than_10000_transactions_is_statement_too_large(server: Server, client: httpx.Client) -> None:
    """One top-up, then 10,000 more in ten batches of 1,000: the window of all 10,001 is too
    large; the window from the second top-up on holds exactly 10,000."""
    assert statements.STATEMENT_TRANSACTIONS_MAX == 10_000
    wallet = new_wallet(client)
    first = posted(client, f"/v1/wallets/{wallet}/topup", {"amount": 1})
    for _ in range(10):
        items = [
            {"op": "topup", "wallet_id": wallet, "amount": 1, "idempotency_key": str(uuid.uuid4())}
            for _ in range(1000)
        ]
        response = client.post("/v1/batches", json={"items": items}, timeout=120)
        assert response.status_code == 200, response.text
        assert {result["status"] for result in response.json()["results"]} == {201}
    analyze(server.database_url)
    second = history(client, wallet)[1]
    start = instant(first["created_at"])
    assert_problem(statement(client, wallet, text(start)), 422, "statement_too_large")
    assert_problem(statement(client, wallet, text(start), accept="text/csv"), 422, "statement_too_large")
    response = statement(client, wallet, second["created_at"])
    assert response.status_code == 200, response.text
    document = response.json()
    assert len(document["transactions"]) == 10_000
    assert (document["opening_balance"], document["total_credits"], document["closing_balance"]) == (
        1,
        10_000,
        10_001,
    )
    as_csv = statement(client, wallet, second["created_at"], document["to"], accept="text/csv")
    assert len(as_csv.text.splitlines()) == 10_001


async def test_the_limit_counts_transactions_not_entries_in_chunks(
    server: Server, client: httpx.Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Journals give the wallet two entries each; read three entries at a time, a window of 3
    journals (6 entries) is within a limit of 3 transactions and beyond a limit of 2."""
    wallet = new_wallet(client)
    for amount in (10, 20, 30):
        journal(client, [("treasury", wallet, amount), (wallet, "revenue", amount // 2)])
    monkeypatch.setattr(statements, "ENTRIES_CHUNK", 3)
    start = datetime(2000, 1, 1, tzinfo=UTC)
    connection = await asyncpg.connect(server.database_url)
    try:
        monkeypatch.setattr(statements, "STATEMENT_TRANSACTIONS_MAX", 3)
        found = await statements.statement(connection, uuid.UUID(wallet), start, None)
        assert len(found.entries) == 6 and len(found.transactions) == 3
        assert (found.total_credits, found.total_debits, found.closing_balance) == (60, 30, 30)
        assert found.to_csv().count("\r\n") == 7
        monkeypatch.setattr(statements, "STATEMENT_TRANSACTIONS_MAX", 2)
        with pytest.raises(statements.StatementTooLarge):
            await statements.statement(connection, uuid.UUID(wallet), start, None)
    finally:
        await connection.close()


# --- the index ----------------------------------------------------------------------------------


def _plan_nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    nodes = [plan]
    for child in plan.get("Plans", []):
        nodes += _plan_nodes(child)
    return nodes


@pytest.mark.parametrize("plan_cache_mode", ["force_generic_plan", "force_custom_plan"])
async def test_both_reads_are_bounded_scans_of_entry_wallet_index(
    server: Server, client: httpx.Client, plan_cache_mode: str
) -> None:
    """EXPLAIN of the service's own statements, as prepared (generic plan) and with the values
    (custom plan): each reads entry_wallet_index from the wallet's entry at or before `at` (the
    window's start) and stops at its end, never the table."""
    wallet, _ = varied_history(client)
    at = datetime.now(UTC)
    start = (at - timedelta(days=1)).isoformat()
    connection = await asyncpg.connect(server.database_url)
    try:
        await connection.execute(f"SET plan_cache_mode = {plan_cache_mode}")
        await connection.execute(f"PREPARE balance_at(uuid, timestamptz) AS {statements.BALANCE_AT}")
        await connection.execute(
            f"PREPARE window_entries(uuid, timestamptz, bigint, timestamptz, integer) AS "
            f"{statements.STATEMENT_ENTRIES}"
        )
        explained = {}
        for name, execute in {
            "balance_at": f"EXECUTE balance_at('{wallet}', '{at.isoformat()}')",
            "window_entries": f"EXECUTE window_entries('{wallet}', '{start}', 0, '{at.isoformat()}', 10001)",
        }.items():
            document = json.loads(await connection.fetchval(f"EXPLAIN (FORMAT JSON) {execute}"))
            explained[name] = _plan_nodes(document[0]["Plan"])
    finally:
        await connection.close()
    for name, nodes in explained.items():
        on_entry = [node for node in nodes if node.get("Relation Name") == "entry"]
        assert len(on_entry) == 1, (name, nodes)
        assert on_entry[0]["Node Type"] in ("Index Scan", "Bitmap Heap Scan"), (name, on_entry)
        index_scans = [node for node in nodes if node.get("Index Name") == "entry_wallet_index"]
        assert len(index_scans) == 1, (name, nodes)
        condition = index_scans[0]["Index Cond"]
        assert "account_id = " in condition and "created_at" in condition, (name, condition)
    if plan_cache_mode == "force_generic_plan":  # as the service runs them once prepared
        balance_scan = next(node for node in explained["balance_at"] if node.get("Relation Name") == "entry")
        assert balance_scan["Node Type"] == "Index Scan" and balance_scan["Scan Direction"] == "Backward"
    window_scan = next(node for node in explained["window_entries"] if "Index Cond" in node)
    assert "created_at < " in window_scan["Index Cond"]  # bounded at the window's end too


# --- verify -------------------------------------------------------------------------------------


def test_verify_reports_a_statement_that_would_not_close_at_the_balance(
    server: Server, client: httpx.Client
) -> None:
    """A wallet entry's balance_after edited by hand (its transaction otherwise intact): the
    statements check names the wallet; put back, verify is ok again."""
    wallet, _ = varied_history(client)
    assert_ledger_ok(client)
    last = history(client, wallet)[-1]

    async def shift(by: int) -> None:
        connection = await asyncpg.connect(server.database_url)
        try:
            await connection.execute(
                """
                UPDATE entry SET balance_after = balance_after + $3
                WHERE transaction_id = $1 AND account_id = $2
                """,
                uuid.UUID(last["id"]),
                uuid.UUID(wallet),
                by,
            )
        finally:
            await connection.close()

    asyncio.run(shift(1))
    try:
        problems = client.get("/v1/ledger/verify").json()["problems"]
        mine = [problem for problem in problems if problem.get("check") == "statements"]
        assert [problem["detail"] for problem in mine if wallet in problem["detail"]] == [
            f"wallet {wallet}: a statement until now closes at {last['balance_after'] + 1}, "
            f"its balance is {last['balance_after']}"
        ], problems
    finally:
        asyncio.run(shift(-1))
    assert_ledger_ok(client)
