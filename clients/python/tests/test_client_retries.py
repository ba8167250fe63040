"""The retry loop of both clients against a scripted service: one idempotency key per call for
all its attempts, which answers are retried and which never are, Retry-After, full-jitter
backoff and the deadline. Time is fake (client_fakes.FakeClock): waits are checked exactly."""

from __future__ import annotations

import httpx
import pytest
from client_fakes import (
    WALLET_ID,
    FakeClock,
    FakeTimeAsyncClient,
    FakeTimeClient,
    Script,
    Step,
    created,
    problem,
    transaction_document,
)

from wallet_client import (
    BatchItem,
    InsufficientFunds,
    InternalError,
    RetryPolicy,
    SpendItem,
    TopUpItem,
    ValidationError,
    WalletError,
    WalletUnavailable,
)

TRANSIENT: list[Step] = [
    httpx.ConnectError("connection refused"),
    httpx.ReadTimeout("timed out"),
    httpx.RemoteProtocolError("Server disconnected without sending a response."),
    problem(503, "unavailable", **{"Retry-After": "1"}),
    httpx.Response(502, text="<html>Bad Gateway</html>"),
    httpx.Response(504, text="<html>Gateway Timeout</html>"),
]


def test_every_attempt_of_a_spend_sends_the_same_key_and_body() -> None:
    clock = FakeClock()
    script = Script([*TRANSIENT, created(transaction_document(), replayed=True)])
    with FakeTimeClient(script, clock) as client:
        result = client.spend(WALLET_ID, 100, reference="order-1")
    keys = script.keys()
    assert len(keys) == len(TRANSIENT) + 1
    assert keys[0] is not None and len(set(keys)) == 1
    assert len({request.content for request in script.requests}) == 1
    assert script.requests[0].content == b'{"amount":100,"reference":"order-1"}'
    assert result.replayed and result.amount == 100


async def test_the_async_client_sends_the_same_key_on_every_attempt() -> None:
    clock = FakeClock()
    script = Script([*TRANSIENT, created(transaction_document())])
    async with FakeTimeAsyncClient(script, clock) as client:
        result = await client.topup(WALLET_ID, 100)
    keys = script.keys()
    assert len(keys) == len(TRANSIENT) + 1 and keys[0] is not None and len(set(keys)) == 1
    assert not result.replayed


def test_each_call_makes_its_own_key_and_a_given_key_is_sent_as_it_is() -> None:
    clock = FakeClock()
    script = Script([created(transaction_document())] * 3)
    with FakeTimeClient(script, clock) as client:
        client.spend(WALLET_ID, 1)
        client.spend(WALLET_ID, 1)
        client.spend(WALLET_ID, 1, idempotency_key="order-17")
    first, second, given = script.keys()
    assert first and second and first != second
    assert given == "order-17"


@pytest.mark.parametrize(
    ("answer", "error_class"),
    [
        (problem(400, "idempotency_key_invalid"), WalletError),
        (problem(401, "unauthenticated"), WalletError),
        (problem(403, "forbidden"), WalletError),
        (problem(404, "wallet_not_found"), WalletError),
        (problem(408, "request_timeout"), WalletError),
        (problem(409, "insufficient_funds"), InsufficientFunds),
        (problem(422, "validation_error"), ValidationError),
        (problem(429, "too_many_requests", **{"Retry-After": "1"}), WalletError),
        (problem(500, "internal_error"), InternalError),
    ],
)
def test_a_4xx_or_a_500_is_never_retried(answer: httpx.Response, error_class: type[WalletError]) -> None:
    clock = FakeClock()
    script = Script([answer, created(transaction_document())])
    with FakeTimeClient(script, clock) as client, pytest.raises(error_class) as raised:
        client.spend(WALLET_ID, 100)
    assert len(script.requests) == 1
    assert clock.sleeps == []
    assert raised.value.status == answer.status_code
    assert raised.value.idempotency_key == script.keys()[0]


def test_retry_after_is_honoured_instead_of_the_backoff() -> None:
    clock = FakeClock()
    busy = [
        problem(503, "unavailable", **{"Retry-After": "2"}),
        problem(503, "unavailable", **{"Retry-After": "0"}),
    ]
    script = Script([*busy, created(transaction_document())])
    with FakeTimeClient(script, clock) as client:
        client.topup(WALLET_ID, 100)
    assert clock.sleeps == [2.0, 0.0]


def test_a_retry_after_past_the_deadline_gives_up_at_once() -> None:
    clock = FakeClock()
    script = Script([problem(503, "unavailable", **{"Retry-After": "120"})])
    policy = RetryPolicy(deadline_seconds=30.0, retry_after_seconds_max=300.0)
    with FakeTimeClient(script, clock, policy) as client, pytest.raises(WalletUnavailable) as raised:
        client.topup(WALLET_ID, 100)
    assert clock.sleeps == []
    assert raised.value.status == 503 and raised.value.attempts == 1


def test_the_backoff_is_full_jitter_under_a_capped_exponential() -> None:
    clock = FakeClock()
    policy = RetryPolicy(
        deadline_seconds=1000.0, attempts_max=8, backoff_seconds_initial=0.5, backoff_seconds_max=4.0
    )
    script = Script([httpx.ConnectError("refused")] * 7 + [created(transaction_document())])
    with FakeTimeClient(script, clock, policy, fraction=0.5) as client:
        client.topup(WALLET_ID, 100)
    # The cap doubles from 0.5 to 4.0 and stays there; the wait is fraction * cap.
    assert clock.sleeps == [0.25, 0.5, 1.0, 2.0, 2.0, 2.0, 2.0]
    for retry in range(1, 12):
        assert policy.backoff_seconds(retry, 0.0) == 0.0
        assert policy.backoff_seconds(retry, 1.0) == min(4.0, 0.5 * 2 ** (retry - 1))


def test_attempts_max_bounds_the_requests_of_a_call() -> None:
    clock = FakeClock()
    script = Script([httpx.ConnectError("refused")] * 3)
    with FakeTimeClient(script, clock, RetryPolicy(attempts_max=3)) as client:
        with pytest.raises(WalletUnavailable) as raised:
            client.spend(WALLET_ID, 100)
    assert len(script.requests) == 3
    assert raised.value.attempts == 3 and raised.value.status is None
    assert "ConnectError" in str(raised.value)


def test_the_deadline_bounds_the_attempts_and_the_error_says_a_retry_with_the_key_is_safe() -> None:
    clock = FakeClock()

    def hang(request: httpx.Request) -> httpx.Response:
        """No answer: the attempt ends at its timeout, or after 4 s."""
        clock.now += min(4.0, request.extensions["timeout"]["read"])
        raise httpx.ReadTimeout("timed out", request=request)

    script = Script([hang] * 10)
    policy = RetryPolicy(deadline_seconds=10.0, attempts_max=10, backoff_seconds_initial=1.0)
    with FakeTimeClient(script, clock, policy, fraction=0.5) as client:
        with pytest.raises(WalletUnavailable) as raised:
            client.spend(WALLET_ID, 100, idempotency_key="spend-42")
    # 4 s, wait 0.5, 4 s, wait 1.0, then an attempt cut to the 0.5 s left; a wait of 2.0 would
    # end past the deadline: no fourth attempt.
    assert len(script.requests) == 3 and clock.sleeps == [0.5, 1.0]
    assert clock.now - 1000.0 == pytest.approx(10.0)
    error = raised.value
    assert error.idempotency_key == "spend-42" and error.code == "unavailable" and error.attempts == 3
    assert "outcome is unknown" in str(error) and "'spend-42'" in str(error)
    assert isinstance(error.__cause__, httpx.ReadTimeout)


def test_each_attempt_timeout_is_cut_to_what_is_left_of_the_deadline() -> None:
    clock = FakeClock()
    timeouts: list[float] = []

    def slow(request: httpx.Request) -> httpx.Response:
        timeouts.append(request.extensions["timeout"]["read"])
        clock.now += 7.0
        raise httpx.ReadTimeout("timed out", request=request)

    script = Script([slow, slow])
    policy = RetryPolicy(deadline_seconds=10.0, backoff_seconds_initial=1.0)
    with FakeTimeClient(script, clock, policy, fraction=0.0) as client, pytest.raises(WalletUnavailable):
        client.get_wallet(WALLET_ID)
    assert timeouts == [pytest.approx(10.0), pytest.approx(3.0)]


def test_a_read_that_runs_out_of_time_says_nothing_of_keys() -> None:
    clock = FakeClock()
    script = Script([httpx.ConnectError("refused")])
    with FakeTimeClient(script, clock, RetryPolicy(attempts_max=1)) as client:
        with pytest.raises(WalletUnavailable) as raised:
            client.get_wallet(WALLET_ID)
    assert raised.value.idempotency_key is None
    assert "idempotency" not in str(raised.value)


def test_a_retried_batch_sends_every_item_with_the_key_it_had() -> None:
    clock = FakeClock()
    results = {
        "results": [
            {"status": 201, "replayed": True, "body": transaction_document()},
            {
                "status": 409,
                "replayed": False,
                "body": {
                    "type": "urn:wallet:problem:insufficient_funds",
                    "title": "Insufficient funds",
                    "status": 409,
                    "detail": "short",
                    "code": "insufficient_funds",
                },
            },
        ]
    }
    script = Script([httpx.RemoteProtocolError("lost"), httpx.Response(200, json=results)])
    items: list[BatchItem] = [TopUpItem(WALLET_ID, 100), SpendItem(WALLET_ID, 5000, idempotency_key="mine")]
    with FakeTimeClient(script, clock) as client:
        outcome = client.batch(items)
    first, second = (request.content for request in script.requests)
    assert first == second
    sent = httpx.Response(200, content=first).json()["items"]
    assert sent[1]["idempotency_key"] == "mine" and sent[0]["idempotency_key"] not in ("", "mine")
    assert "Idempotency-Key" not in script.requests[0].headers
    assert outcome[0].ok and outcome[0].replayed and outcome[0].idempotency_key == sent[0]["idempotency_key"]
    assert not outcome[1].ok and isinstance(outcome[1].error, InsufficientFunds)
    assert outcome[1].error.idempotency_key == "mine"


def test_money_is_an_int() -> None:
    clock = FakeClock()
    script = Script([])
    with FakeTimeClient(script, clock) as client:
        for amount in (10.5, 10.0, "10", True, None):
            with pytest.raises(TypeError):
                client.spend(WALLET_ID, amount)  # type: ignore[arg-type]
    assert script.requests == []


def test_a_naive_datetime_is_refused_before_sending() -> None:
    from datetime import datetime

    clock = FakeClock()
    script = Script([])
    with FakeTimeClient(script, clock) as client, pytest.raises(ValueError, match="timezone-aware"):
        client.topup(WALLET_ID, 100, expires_at=datetime(2030, 1, 1))
    assert script.requests == []


def test_a_policy_cannot_retry_a_4xx_or_a_500() -> None:
    for statuses in ({409}, {500}, {503, 422}):
        with pytest.raises(ValueError):
            RetryPolicy(retry_statuses=frozenset(statuses))
