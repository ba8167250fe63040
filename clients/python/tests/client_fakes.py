"""A scripted service for the client's own tests: httpx transports that answer each request with
the next step of a script (a response or an exception) and keep every request, and clients whose
clock and sleep are fake, so that waits and deadlines are checked exactly and take no time."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

import httpx

from wallet_client import AsyncWalletClient, RetryPolicy, WalletClient

BASE_URL = "http://wallet.test"
WALLET_ID = "0190a5a0-0000-7000-8000-000000000001"
Step = httpx.Response | Exception | Callable[[httpx.Request], httpx.Response]


def transaction_document(amount: int = 100, balance_after: int = 100, **changes: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "id": "0190a5a0-0000-7000-8000-0000000000aa",
        "type": "topup",
        "asset": "GOLD",
        "amount": amount,
        "wallet_id": WALLET_ID,
        "balance_after": balance_after,
        "reference": None,
        "metadata": None,
        "created_at": "2030-01-02T03:04:05.123456Z",
        "reverses": None,
        "hold_id": None,
        "entries": [
            {
                "account_id": "0190a5a0-0000-7000-8000-0000000000bb",
                "account": "treasury:GOLD",
                "direction": "debit",
                "amount": amount,
                "balance_after": None,
            },
            {
                "account_id": WALLET_ID,
                "account": WALLET_ID,
                "direction": "credit",
                "amount": amount,
                "balance_after": balance_after,
            },
        ],
    }
    document.update(changes)
    return document


def problem(status: int, code: str, **headers: str) -> httpx.Response:
    document = {
        "type": f"urn:wallet:problem:{code}",
        "title": code,
        "status": status,
        "detail": code,
        "code": code,
    }
    return httpx.Response(
        status,
        content=json.dumps(document).encode(),
        headers={"Content-Type": "application/problem+json", **headers},
    )


def created(document: dict[str, Any], replayed: bool = False) -> httpx.Response:
    headers = {"Idempotent-Replayed": "true"} if replayed else {}
    return httpx.Response(201, json=document, headers=headers)


class Script:
    """Answers request n with step n (an exception is raised, a callable is called); keeps the
    requests. `clock` is advanced by `seconds_per_request` for each request (time spent on it)."""

    def __init__(
        self, steps: Iterable[Step], clock: FakeClock | None = None, seconds_per_request: float = 0.0
    ):
        self.steps = list(steps)
        self.requests: list[httpx.Request] = []
        self.clock = clock
        self.seconds_per_request = seconds_per_request

    def answer(self, request: httpx.Request) -> httpx.Response:
        request.read()
        self.requests.append(request)
        if self.clock is not None:
            self.clock.now += self.seconds_per_request
        assert self.requests and len(self.requests) <= len(self.steps), f"unscripted request {request.url}"
        step = self.steps[len(self.requests) - 1]
        if isinstance(step, Exception):
            raise step
        if isinstance(step, httpx.Response):
            # A fresh copy: a response object, once sent through a client, is bound to it.
            return httpx.Response(step.status_code, headers=step.headers, content=step.content)
        return step(request)

    async def answer_async(self, request: httpx.Request) -> httpx.Response:
        await request.aread()
        return self.answer(request)

    def keys(self) -> list[str | None]:
        return [request.headers.get("Idempotency-Key") for request in self.requests]


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []


class FakeTimeClient(WalletClient):
    """A WalletClient on a fake clock: sleeping advances it, and is recorded."""

    def __init__(
        self, script: Script, clock: FakeClock, retry: RetryPolicy | None = None, fraction: float = 0.5
    ):
        super().__init__(BASE_URL, "wk_test", retry=retry, transport=httpx.MockTransport(script.answer))
        self.clock = clock
        self.fraction = fraction

    def _now(self) -> float:
        return self.clock.now

    def _sleep(self, seconds: float) -> None:
        self.clock.sleeps.append(seconds)
        self.clock.now += seconds

    def _random(self) -> float:
        return self.fraction


class FakeTimeAsyncClient(AsyncWalletClient):
    """An AsyncWalletClient on a fake clock, as FakeTimeClient."""

    def __init__(
        self, script: Script, clock: FakeClock, retry: RetryPolicy | None = None, fraction: float = 0.5
    ):
        super().__init__(BASE_URL, "wk_test", retry=retry, transport=httpx.MockTransport(script.answer_async))
        self.clock = clock
        self.fraction = fraction

    def _now(self) -> float:
        return self.clock.now

    async def _sleep(self, seconds: float) -> None:
        self.clock.sleeps.append(seconds)
        self.clock.now += seconds

    def _random(self) -> float:
        return self.fraction
