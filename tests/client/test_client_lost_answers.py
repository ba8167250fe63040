"""The client's retries against the real service, through a LossyProxy: a lost answer is retried
with the same idempotency key and moves money once (and a client that made a new key per attempt
would move it twice: the test tells them apart); 503s with Retry-After, then success; the
deadline; never a retry after a 4xx."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from client.conftest import MakeClient
from client.lossy_proxy import FORWARD, LOSE, SWALLOW, UNAVAILABLE, LossyProxy
from support import balance, new_wallet, topup
from wallet_client import (
    AsyncWalletClient,
    InsufficientFunds,
    RetryPolicy,
    SpendItem,
    TopUpItem,
    TransferItem,
    Unauthorized,
    ValidationError,
    WalletClient,
    WalletUnavailable,
)
from wallet_client._calls import Call


def _key_per_attempt(headers: dict[str, str], attempt: int) -> dict[str, str]:
    if "Idempotency-Key" in headers:
        headers["Idempotency-Key"] = f"{headers['Idempotency-Key']}-attempt-{attempt}"
    return headers


class KeyPerAttemptClient(WalletClient):
    """The mistake this library exists to prevent: a new Idempotency-Key on every attempt."""

    def _attempt_headers(self, call: Call[Any], attempt: int) -> dict[str, str]:
        return _key_per_attempt(super()._attempt_headers(call, attempt), attempt)


class AsyncKeyPerAttemptClient(AsyncWalletClient):
    def _attempt_headers(self, call: Call[Any], attempt: int) -> dict[str, str]:
        return _key_per_attempt(super()._attempt_headers(call, attempt), attempt)


class SleepRecordingClient(WalletClient):
    """Records the waits between attempts instead of sleeping them."""

    sleeps: list[float]

    def _sleep(self, seconds: float) -> None:
        self.__dict__.setdefault("sleeps", []).append(seconds)


class AsyncSleepRecordingClient(AsyncWalletClient):
    sleeps: list[float]

    async def _sleep(self, seconds: float) -> None:
        self.__dict__.setdefault("sleeps", []).append(seconds)


def funded_wallet(client: httpx.Client, amount: int = 1000) -> str:
    wallet_id = new_wallet(client)
    assert topup(client, wallet_id, amount).status_code == 201
    return wallet_id


def spends_of(client: httpx.Client, wallet_id: str) -> list[dict[str, Any]]:
    history = client.get(f"/v1/wallets/{wallet_id}/transactions", params={"limit": 200}).json()["data"]
    return [transaction for transaction in history if transaction["type"] == "spend"]


@pytest.mark.parametrize(
    ("key_per_attempt", "moves"), [(False, 1), (True, 2)], ids=["one-key-per-call", "key-per-attempt"]
)
def test_a_lost_answer_is_retried_with_the_same_key_and_moves_money_once(
    make_client: MakeClient,
    client_kind: str,
    proxy: LossyProxy,
    client: httpx.Client,
    key_per_attempt: bool,
    moves: int,
) -> None:
    """The spend reaches the service and is applied; its answer is lost; the client retries. With
    one key for the call, the retry is answered with the stored result: the money moved once.
    The variant with a new key per attempt moves it twice, so this test can tell the two apart."""
    wallet_id = funded_wallet(client)
    broken = KeyPerAttemptClient if client_kind == "sync" else AsyncKeyPerAttemptClient
    wallet = make_client(base_url=proxy.base_url, cls=broken if key_per_attempt else None)
    proxy.lose_answers(1)

    result = wallet.spend(wallet_id, 100, reference="order-lost")

    assert proxy.actions() == [LOSE, FORWARD]
    assert balance(client, wallet_id) == 1000 - 100 * moves
    assert len(spends_of(client, wallet_id)) == moves
    assert result.replayed is (moves == 1)
    assert result.balance_after == 1000 - 100 * moves
    keys = [request.idempotency_key for request in proxy.seen]
    assert len(set(keys)) == (1 if moves == 1 else 2)


def test_a_lost_answer_to_a_hold_and_its_capture_is_replayed(
    make_client: MakeClient, proxy: LossyProxy, client: httpx.Client
) -> None:
    wallet_id = funded_wallet(client)
    wallet = make_client(base_url=proxy.base_url)
    proxy.lose_answers(1)
    hold = wallet.create_hold(wallet_id, 300)
    assert hold.replayed and hold.status == "pending"
    proxy.lose_answers(1)
    capture = wallet.capture_hold(hold.id, 200)
    assert capture.replayed and capture.hold_id == hold.id
    assert proxy.actions() == [LOSE, FORWARD, LOSE, FORWARD]
    assert balance(client, wallet_id) == 800
    document = client.get(f"/v1/wallets/{wallet_id}").json()
    assert document["held"] == 0 and document["available"] == 800


def test_a_lost_answer_to_a_batch_replays_every_item(
    make_client: MakeClient, proxy: LossyProxy, client: httpx.Client
) -> None:
    source, target = funded_wallet(client), new_wallet(client)
    wallet = make_client(base_url=proxy.base_url)
    items = [TopUpItem(source, 50), SpendItem(source, 20), TransferItem(source, target, 30)]
    proxy.lose_answers(1)

    results = wallet.batch(items)

    assert proxy.actions() == [LOSE, FORWARD]
    assert [(result.status, result.replayed) for result in results] == [(201, True)] * 3
    assert balance(client, source) == 1000 + 50 - 20 - 30
    assert balance(client, target) == 30


def test_503s_with_retry_after_then_success(
    make_client: MakeClient, client_kind: str, proxy: LossyProxy, client: httpx.Client
) -> None:
    wallet_id = new_wallet(client)
    recording = SleepRecordingClient if client_kind == "sync" else AsyncSleepRecordingClient
    wallet = make_client(base_url=proxy.base_url, cls=recording)
    proxy.answer_unavailable(2, retry_after="1")

    result = wallet.topup(wallet_id, 100)

    assert proxy.actions() == [UNAVAILABLE, UNAVAILABLE, FORWARD]
    assert wallet.sleeps == [1.0, 1.0]
    assert len({request.idempotency_key for request in proxy.seen}) == 1
    assert not result.replayed and result.balance_after == 100
    assert balance(client, wallet_id) == 100


def test_503s_until_the_deadline_raise_wallet_unavailable(
    make_client: MakeClient, proxy: LossyProxy, client: httpx.Client
) -> None:
    """Retry-After 1 s, deadline 1.5 s: one wait fits, a second would end past the deadline."""
    wallet_id = new_wallet(client)
    wallet = make_client(base_url=proxy.base_url, retry=RetryPolicy(deadline_seconds=1.5))
    proxy.answer_unavailable(10, retry_after="1")

    started = time.monotonic()
    with pytest.raises(WalletUnavailable) as raised:
        wallet.topup(wallet_id, 100)
    elapsed = time.monotonic() - started

    assert proxy.actions() == [UNAVAILABLE, UNAVAILABLE]
    assert 1.0 <= elapsed < 2.0, elapsed  # a second 1 s wait would end at 2 s or later
    error = raised.value
    assert error.status == 503 and error.code == "unavailable" and error.attempts == 2
    assert error.problem["detail"].startswith("The proxy")
    assert error.idempotency_key == proxy.seen[0].idempotency_key
    assert balance(client, wallet_id) == 0


def test_answers_lost_until_the_deadline_raise_wallet_unavailable_and_the_same_key_is_safe(
    make_client: MakeClient, proxy: LossyProxy, client: httpx.Client
) -> None:
    wallet_id = funded_wallet(client)
    policy = RetryPolicy(deadline_seconds=1.0, backoff_seconds_initial=0.05, backoff_seconds_max=0.2)
    wallet = make_client(base_url=proxy.base_url, retry=policy)
    proxy.always(LOSE)

    started = time.monotonic()
    with pytest.raises(WalletUnavailable) as raised:
        wallet.spend(wallet_id, 100)
    elapsed = time.monotonic() - started

    error = raised.value
    assert elapsed < 1.0 + 1.0, elapsed
    assert error.attempts == len(proxy.seen) >= 2
    assert {request.idempotency_key for request in proxy.seen} == {error.idempotency_key}
    assert "outcome is unknown" in str(error)
    assert balance(client, wallet_id) == 900  # applied once, whatever the number of attempts

    direct = make_client()
    again = direct.spend(wallet_id, 100, idempotency_key=error.idempotency_key)
    assert again.replayed and again.balance_after == 900
    assert balance(client, wallet_id) == 900


def test_attempts_that_time_out_stop_at_the_deadline(
    make_client: MakeClient, proxy: LossyProxy, client: httpx.Client
) -> None:
    wallet_id = funded_wallet(client)
    policy = RetryPolicy(deadline_seconds=1.0, backoff_seconds_initial=0.05, backoff_seconds_max=0.1)
    wallet = make_client(base_url=proxy.base_url, retry=policy, timeout_seconds=0.3)
    proxy.always(SWALLOW)

    started = time.monotonic()
    with pytest.raises(WalletUnavailable) as raised:
        wallet.spend(wallet_id, 100)
    elapsed = time.monotonic() - started

    assert 0.9 <= elapsed < 1.0 + 1.0, elapsed  # without the deadline: 10 attempts of 0.3 s
    assert isinstance(raised.value.__cause__, httpx.TimeoutException)
    assert raised.value.status is None and raised.value.attempts == len(proxy.seen) >= 3
    assert balance(client, wallet_id) == 1000  # the requests never reached the service
    applied = make_client().spend(wallet_id, 100, idempotency_key=raised.value.idempotency_key)
    assert not applied.replayed and balance(client, wallet_id) == 900


def test_a_4xx_is_never_retried(
    make_client: MakeClient, proxy: LossyProxy, client: httpx.Client, read_key: str
) -> None:
    wallet_id = funded_wallet(client, 10)
    wallet = make_client(base_url=proxy.base_url)
    with pytest.raises(InsufficientFunds):
        wallet.spend(wallet_id, 11)
    with pytest.raises(ValidationError):
        wallet.spend(wallet_id, 0)
    with pytest.raises(Unauthorized):
        make_client(key="wk_not_a_key", base_url=proxy.base_url).get_wallet(wallet_id)
    assert proxy.actions() == [FORWARD, FORWARD, FORWARD]
    assert balance(client, wallet_id) == 10
