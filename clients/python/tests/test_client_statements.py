"""Balance at a time and statements, as API.md (v1.1) describes them, against a scripted service:
the request each method sends and how it reads the answer."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import httpx
import pytest
from client_fakes import (
    WALLET_ID,
    FakeClock,
    FakeTimeAsyncClient,
    FakeTimeClient,
    Script,
    problem,
    transaction_document,
)

from wallet_client import StatementTooLarge

AT = datetime(2030, 1, 2, 3, 4, 5, 123456, tzinfo=timezone(timedelta(hours=2)))


def test_balance_at_asks_for_the_instant_in_utc() -> None:
    clock = FakeClock()
    answer = {"wallet_id": WALLET_ID, "at": "2030-01-02T01:04:05.123456Z", "balance": 1500}
    script = Script([httpx.Response(200, json=answer)])
    with FakeTimeClient(script, clock) as client:
        found = client.balance_at(WALLET_ID, AT)
    (request,) = script.requests
    assert request.method == "GET" and request.url.path == f"/v1/wallets/{WALLET_ID}/balance"
    assert request.url.params["at"] == "2030-01-02T01:04:05.123456Z"
    assert (found.wallet_id, found.balance, found.at) == (WALLET_ID, 1500, AT)


def statement_document() -> dict[str, object]:
    return {
        "wallet_id": WALLET_ID,
        "asset": "GOLD",
        "from": "2030-01-01T00:00:00.000000Z",
        "to": "2030-01-02T00:00:00.000000Z",
        "opening_balance": 10,
        "closing_balance": 110,
        "total_credits": 100,
        "total_debits": 0,
        "transactions": [transaction_document(amount=100, balance_after=110)],
    }


async def test_a_statement_is_read_with_its_transactions() -> None:
    clock = FakeClock()
    script = Script([httpx.Response(200, json=statement_document())])
    start, end = datetime(2030, 1, 1, tzinfo=UTC), datetime(2030, 1, 2, tzinfo=UTC)
    async with FakeTimeAsyncClient(script, clock) as client:
        statement = await client.statement(WALLET_ID, start, end)
    (request,) = script.requests
    assert request.url.path == f"/v1/wallets/{WALLET_ID}/statement"
    assert dict(request.url.params) == {
        "from": "2030-01-01T00:00:00.000000Z",
        "to": "2030-01-02T00:00:00.000000Z",
    }
    assert request.headers["Accept"] == "application/json"
    assert (statement.start, statement.end) == (start, end)
    assert (
        statement.opening_balance + statement.total_credits - statement.total_debits
        == statement.closing_balance
    )
    assert [transaction.amount for transaction in statement.transactions] == [100]


def test_a_statement_as_csv_asks_for_text_csv_and_to_defaults_to_now() -> None:
    clock = FakeClock()
    csv = "created_at,transaction_id,type,direction,amount,balance_after,reference\r\n"
    script = Script([httpx.Response(200, text=csv, headers={"Content-Type": "text/csv; charset=utf-8"})])
    with FakeTimeClient(script, clock) as client:
        assert client.statement_csv(WALLET_ID, datetime(2030, 1, 1, tzinfo=UTC)) == csv
    (request,) = script.requests
    assert request.headers["Accept"] == "text/csv"
    assert dict(request.url.params) == {"from": "2030-01-01T00:00:00.000000Z"}


def test_a_statement_too_large_is_its_own_error() -> None:
    clock = FakeClock()
    script = Script([problem(422, "statement_too_large")])
    with FakeTimeClient(script, clock) as client, pytest.raises(StatementTooLarge):
        client.statement(WALLET_ID, datetime(2030, 1, 1, tzinfo=UTC))
    assert len(script.requests) == 1
