"""Where the primary is, by Patroni's REST API (WALLET_PATRONI_URLS).

A multi-host URL with `target_session_attrs=read-write` finds a node that accepts writes, but
not the right one in every failure: when only Patroni dies on the primary's machine (and no
watchdog fences it), its PostgreSQL keeps running read-write. Once the other node is promoted,
commits there wait forever for a synchronous standby that is gone, and a new connection may
still pick it, being read-write. Patroni's leader key says which node is the primary; a node's
REST API answers GET /primary with 200 only while it holds that key and runs as the primary
(what HAProxy checks in Patroni's own examples).

The router asks every node's GET /primary (concurrently, each within the connect timeout) at
start and every WALLET_PATRONI_CHECK_INTERVAL_MS, and:
- opens new connections to the node that answered 200 (its address from its GET /cluster);
- when no node answers 200 (a failover is under way, or the primary's Patroni is dead but its
  PostgreSQL still serves), keeps to the last primary: connections to a dead node fail fast
  (503), and an orphaned primary still commits correctly until the other node is promoted;
- when another node answers 200, terminates every connection to the former primary, those in
  use included: a request waiting there gets a connection error (503, outcome unknown; the
  client retries with the same key). That is what frees requests stuck on an orphaned primary.
The database URL's user, password, database and options (target_session_attrs too) still
apply; only the host and port come from Patroni. With no node known at all: NoPrimaryFound.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import urllib.parse
import weakref
from typing import Any

import asyncpg
import structlog

log = structlog.get_logger("wallet.db")

Address = tuple[str, int]
RESPONSE_BYTES_MAX = 1 << 20


class NoPrimaryFound(Exception):
    """No Patroni node answered GET /primary with 200 and none ever did: nothing to connect to."""


class PrimaryRouter:
    def __init__(
        self, rest_urls: tuple[str, ...], check_interval_seconds: float, timeout_seconds: float
    ) -> None:
        assert rest_urls, "no Patroni REST URL"
        assert check_interval_seconds > 0 and timeout_seconds > 0
        self.rest_urls = rest_urls
        self.check_interval_seconds = check_interval_seconds
        self.timeout_seconds = timeout_seconds
        self.primary: Address | None = None
        self._addresses: dict[str, Address] = {}  # REST URL -> its PostgreSQL host and port
        self._connections: weakref.WeakKeyDictionary[asyncpg.Connection[Any], Address] = (
            weakref.WeakKeyDictionary()
        )
        self._watcher: asyncio.Task[None] | None = None

    async def connect(self, dsn: str, **options: Any) -> asyncpg.Connection[Any]:
        """The pool's `connect`: asyncpg.connect, to the primary."""
        address = self.primary or await self.check()
        if address is None:
            raise NoPrimaryFound(f"no node of {', '.join(self.rest_urls)} answers GET /primary with 200")
        connection: asyncpg.Connection[Any] = await asyncpg.connect(
            dsn, host=address[0], port=address[1], **options
        )
        if address != self.primary:  # the primary changed while this one was connecting
            connection.terminate()
            raise asyncpg.exceptions.ConnectionDoesNotExistError(f"{address} is no longer the primary")
        self._connections[connection] = address
        return connection

    async def check(self) -> Address | None:
        """Ask every node; follow a new primary. Returns the primary to use (maybe the last one)."""
        found = await self._find_primary()
        if found is not None and found != self.primary:
            former, self.primary = self.primary, found
            log.warning("database_primary_changed", former=_text(former), primary=_text(found))
            self._terminate_all_but(found)
        return self.primary

    def start_watching(self) -> None:
        assert self._watcher is None
        self._watcher = asyncio.get_running_loop().create_task(self._watch(), name="patroni-router")

    def cancel_watching(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()

    async def stop_watching(self) -> None:
        if self._watcher is None:
            return
        self._watcher.cancel()
        try:
            await self._watcher
        except asyncio.CancelledError:
            pass
        self._watcher = None

    async def _watch(self) -> None:
        while True:
            await asyncio.sleep(self.check_interval_seconds)
            try:
                await self.check()
            except Exception:  # a bug here must not end the watching; it is logged
                log.exception("patroni_check_failed")

    def _terminate_all_but(self, primary: Address) -> None:
        stale = [connection for connection, address in self._connections.items() if address != primary]
        for connection in stale:
            if not connection.is_closed():
                connection.terminate()
        if stale:
            log.warning("database_connections_terminated", count=len(stale), primary=_text(primary))

    async def _find_primary(self) -> Address | None:
        answers = await asyncio.gather(*(self._is_primary(url) for url in self.rest_urls))
        leaders = [url for url, answer in zip(self.rest_urls, answers, strict=True) if answer]
        if len(leaders) > 1:
            log.warning("patroni_two_primaries", urls=leaders)  # stale answers; ask again next time
            return None
        if not leaders:
            return None
        url = leaders[0]
        if url not in self._addresses:
            address = await self._leader_address(url)
            if address is None:
                return None
            self._addresses[url] = address
        return self._addresses[url]

    async def _is_primary(self, url: str) -> bool:
        try:
            status, _ = await http_get(f"{url}/primary", self.timeout_seconds)
        except (OSError, TimeoutError, ValueError):
            return False
        return status == 200

    async def _leader_address(self, url: str) -> Address | None:
        """The PostgreSQL address of the leader in this node's GET /cluster (the node itself,
        as it just answered GET /primary with 200)."""
        try:
            status, body = await http_get(f"{url}/cluster", self.timeout_seconds)
            members = json.loads(body)["members"] if status == 200 else []
        except (OSError, TimeoutError, ValueError, KeyError, TypeError):
            return None
        for member in members:
            if member.get("role") == "leader" and member.get("host") and member.get("port"):
                return str(member["host"]), int(member["port"])
        return None


async def http_get(url: str, timeout_seconds: float) -> tuple[int, bytes]:
    """GET over HTTP/1.0 (the connection closes after the answer): (status, body). Enough for
    Patroni's REST API, without an HTTP client library in the service."""
    parts = urllib.parse.urlsplit(url)
    assert parts.scheme in ("http", "https") and parts.hostname, url
    port = parts.port or (443 if parts.scheme == "https" else 80)
    context = ssl.create_default_context() if parts.scheme == "https" else None
    async with asyncio.timeout(timeout_seconds):
        reader, writer = await asyncio.open_connection(parts.hostname, port, ssl=context)
        try:
            target = parts.path or "/"
            writer.write(f"GET {target} HTTP/1.0\r\nHost: {parts.netloc}\r\nAccept: */*\r\n\r\n".encode())
            await writer.drain()
            response = await reader.read(RESPONSE_BYTES_MAX)
            while chunk := await reader.read(RESPONSE_BYTES_MAX):
                response += chunk
                if len(response) > RESPONSE_BYTES_MAX:
                    raise ValueError(f"{url}: answer larger than {RESPONSE_BYTES_MAX} bytes")
        finally:
            writer.close()
    head, _, body = response.partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0].split()
    if len(status_line) < 2 or not status_line[0].startswith(b"HTTP/"):
        raise ValueError(f"{url}: not an HTTP answer")
    return int(status_line[1]), body


def _text(address: Address | None) -> str | None:
    return None if address is None else f"{address[0]}:{address[1]}"
