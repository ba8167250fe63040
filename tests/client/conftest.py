"""Fixtures of the client's tests against the real service (the suite's `wallet serve`): both
clients, the second (AsyncWalletClient) driven from the same synchronous test bodies through
`Blocking`, keys of each scope, and a LossyProxy in front of the server."""

from __future__ import annotations

import asyncio
import inspect
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import asyncpg
import pytest

from client.lossy_proxy import LossyProxy
from support import Server
from wallet import keys
from wallet_client import AsyncEventFollower, AsyncEvents, AsyncWalletClient, RetryPolicy, WalletClient

# Short waits, so that retries in these tests take milliseconds, not seconds.
FAST_RETRIES = RetryPolicy(deadline_seconds=10.0, backoff_seconds_initial=0.01, backoff_seconds_max=0.05)


class _BlockingIterator:
    def __init__(self, target: AsyncIterator[Any], runner: asyncio.Runner) -> None:
        self._target = target
        self._runner = runner

    def __iter__(self) -> _BlockingIterator:
        return self

    def __next__(self) -> Any:
        async def step() -> Any:
            return await anext(self._target)

        try:
            return self._runner.run(step())
        except StopAsyncIteration:
            raise StopIteration from None

    def __getattr__(self, name: str) -> Any:  # a follower's `cursor`
        return getattr(self._target, name)


class Blocking:
    """The async client seen as the sync one: every coroutine it returns is run to the end on one
    private event loop, every async iterator becomes an iterator. So one test body checks both."""

    def __init__(self, target: Any, runner: asyncio.Runner) -> None:
        self._target = target
        self._runner = runner

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._target, name)
        if isinstance(value, AsyncEvents):
            return Blocking(value, self._runner)
        if not callable(value):
            return value

        def call(*args: Any, **kwargs: Any) -> Any:
            result = value(*args, **kwargs)
            if inspect.iscoroutine(result):
                return self._runner.run(result)
            if inspect.isasyncgen(result) or isinstance(result, AsyncEventFollower):
                return _BlockingIterator(result, self._runner)
            return result

        return call


MakeClient = Callable[..., Any]


@pytest.fixture(params=["sync", "async"])
def make_client(request: pytest.FixtureRequest, server: Server) -> Iterator[MakeClient]:
    """make_client(key=None, base_url=None, cls=None, **options): a WalletClient, or an
    AsyncWalletClient behind Blocking; closed at the end of the test."""
    runner = asyncio.Runner()
    made: list[Any] = []

    def make(
        key: str | None = None, base_url: str | None = None, cls: type[Any] | None = None, **options: Any
    ) -> Any:
        options.setdefault("retry", FAST_RETRIES)
        url, api_key = base_url or server.base_url, key or server.admin_key
        if request.param == "sync":
            client = (cls or WalletClient)(url, api_key, **options)
            made.append(client)
            return client
        async_client = (cls or AsyncWalletClient)(url, api_key, **options)
        made.append(async_client)
        return Blocking(async_client, runner)

    try:
        yield make
    finally:
        for client in made:
            if isinstance(client, AsyncWalletClient):
                runner.run(client.close())
            else:
                client.close()
        runner.close()


@pytest.fixture
def wallet(make_client: MakeClient) -> Any:
    """The test's client (sync or async), with the admin key."""
    return make_client()


@pytest.fixture
def client_kind(make_client: MakeClient, request: pytest.FixtureRequest) -> str:
    kind: str = request.node.callspec.params["make_client"]
    return kind


@pytest.fixture(scope="session")
def scoped_keys(server: Server) -> dict[str, str]:
    """A `wallets:read` key and a `wallets:write` key (made in the database: faster than the CLI)."""

    async def create() -> dict[str, str]:
        connection = await asyncpg.connect(server.database_url, timeout=10)
        try:
            made: dict[str, str] = {}
            for name, scope in (("read", keys.Scope.READ), ("write", keys.Scope.WRITE)):
                _, made[name] = await keys.create(
                    connection, f"client-{name}-{uuid.uuid4().hex[:12]}", {scope}
                )
            return made
        finally:
            await connection.close()

    return asyncio.run(create())


@pytest.fixture
def read_key(scoped_keys: dict[str, str]) -> str:
    return scoped_keys["read"]


@pytest.fixture
def write_key(scoped_keys: dict[str, str]) -> str:
    return scoped_keys["write"]


@pytest.fixture
def proxy(server: Server) -> Iterator[LossyProxy]:
    running = LossyProxy(server.port).start()
    try:
        yield running
    finally:
        running.stop()
