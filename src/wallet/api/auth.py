"""Who is calling: the API key of a request, looked up through a per-process cache.

Looking the key up in the database on every request cost a pooled connection and a round trip
each time. Each serving process keeps the keys it has seen, by hash, and drops them all when the
database says an API key changed: a trigger on `api_key` (ledger/sql/guards.sql) sends NOTIFY
`wallet_api_key` on every insert, update or delete, which a dedicated connection LISTENs for. So
a revocation reaches every worker as soon as the notification does (milliseconds); entries also
expire after CACHE_SECONDS_MAX.

When the listening connection is down (the database restarted, the network broke), the cache
is emptied and bypassed, every request looks its key up, and the connection is made again every
LISTEN_RETRY_SECONDS. A lookup that was in flight when a notification arrived is not cached (the
generation it started in is gone), so a key revoked meanwhile cannot linger. Unknown keys are
never cached. Behind a pooler that does not keep a session (PgBouncer in transaction mode)
LISTEN does not work, so with WALLET_DATABASE_POOLER=pgbouncer there is no cache (and
WALLET_API_KEY_CACHE=false turns it off anywhere). With Patroni routing the listening connection
goes to the primary, and is closed (emptying the cache) when another node becomes primary.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import asyncpg
import structlog

from wallet import keys
from wallet.config import Settings
from wallet.types import Connection

CHANNEL = "wallet_api_key"
CACHE_SECONDS_MAX = 60.0
CACHE_ENTRIES_MAX = 10_000
LISTEN_RETRY_SECONDS = 0.5

log = structlog.get_logger("wallet.auth")


@dataclass(frozen=True, slots=True)
class _Entry:
    api_key: keys.ApiKey
    expires: float  # time.monotonic()


Connect = Callable[..., Awaitable["asyncpg.Connection[Any]"]]


class KeyCache:
    def __init__(self, settings: Settings, database_url: str, connect: Connect = asyncpg.connect) -> None:
        """`connect` opens the listening connection: the pool's own (to the primary Patroni
        names, which also closes it when the primary changes), or asyncpg.connect."""
        self._settings = settings
        self._database_url = database_url
        self._connect = connect
        self._entries: dict[bytes, _Entry] = {}
        self._generation = 0
        self._listening = False
        self._connection: asyncpg.Connection | None = None
        self._task: asyncio.Task[None] | None = None
        self._lost = asyncio.Event()

    @property
    def listening(self) -> bool:
        return self._listening

    async def start(self) -> None:
        """Listen in the background (a failure to connect now only means no cache until later)."""
        self._task = asyncio.create_task(self._listen_forever(), name="api-key-listener")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._connection is not None and not self._connection.is_closed():
            self._connection.terminate()

    async def authenticate(self, connection: Connection, secret: str) -> keys.ApiKey | None:
        """The live key of this secret, else None; from the cache when it can be trusted."""
        key_hash = keys.hash_key(secret)
        if self._listening:
            entry = self._entries.get(key_hash)
            if entry is not None and entry.expires > time.monotonic():
                return entry.api_key
        generation = self._generation
        api_key = await keys.authenticate(connection, secret)
        if api_key is not None and self._listening and generation == self._generation:
            if len(self._entries) >= CACHE_ENTRIES_MAX:
                self._entries.clear()
            self._entries[key_hash] = _Entry(api_key, time.monotonic() + CACHE_SECONDS_MAX)
        return api_key

    def cached(self, secret: str) -> keys.ApiKey | None:
        """The cached key of this secret, without a lookup (None: not cached, or no cache now)."""
        if not self._listening:
            return None
        entry = self._entries.get(keys.hash_key(secret))
        if entry is None or entry.expires <= time.monotonic():
            return None
        return entry.api_key

    def _forget_all(self) -> None:
        self._generation += 1
        self._entries.clear()

    def _changed(self, *_: object) -> None:
        self._forget_all()

    def _terminated(self, *_: object) -> None:
        self._listening = False
        self._forget_all()
        self._lost.set()

    async def _listen_forever(self) -> None:
        while True:
            self._lost.clear()
            try:
                self._connection = await self._connect(
                    self._database_url,
                    timeout=self._settings.timeout_ms_connect / 1000,
                    statement_cache_size=0,
                    server_settings={"application_name": "wallet-api-key-listener"},
                )
                self._connection.add_termination_listener(self._terminated)
                await self._connection.add_listener(CHANNEL, self._changed)
                self._forget_all()
                self._listening = True
                await self._lost.wait()
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as error:
                log.warning("api_key_listener_down", error=type(error).__name__)
            self._terminated()
            if self._connection is not None and not self._connection.is_closed():
                self._connection.terminate()
            await asyncio.sleep(LISTEN_RETRY_SECONDS)
