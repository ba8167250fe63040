"""A small HTTP/1.1 proxy on 127.0.0.1 in front of a `wallet serve`, for the client's tests: it
can lose answers, answer 503 itself, or swallow requests, one request at a time.

It runs an asyncio server on its own event loop in a thread, so that synchronous and async
clients alike can talk through it. It reads each request whole (head and Content-Length body),
records it, and then, by the next planned action (default: forward):
- forward: sends it to the service with `Connection: close`, reads the whole answer until the
  service closes, and passes it on;
- lose: the same, but once the service has answered (so the request was applied and committed),
  it drops the answer and closes the client's connection: the client sees the connection end
  with no answer, as when a network or a proxy dies at the wrong moment;
- unavailable: answers 503 `unavailable` with `Retry-After` itself; the service never sees it;
- swallow: sends nothing anywhere and answers nothing, until the client gives up.
"""

from __future__ import annotations

import asyncio
import collections
import json
import threading
from dataclasses import dataclass

HEAD_SIZE_MAX = 65536
FORWARD, LOSE, UNAVAILABLE, SWALLOW = "forward", "lose", "unavailable", "swallow"


@dataclass(frozen=True)
class SeenRequest:
    method: str
    path: str
    idempotency_key: str | None
    action: str


def _parse_head(head: bytes) -> tuple[str, str, dict[str, str], list[bytes]]:
    lines = head.split(b"\r\n")
    method, path, _ = lines[0].decode("latin-1").split(" ", 2)
    headers: dict[str, str] = {}
    kept: list[bytes] = []
    for line in lines[1:]:
        if not line:
            continue
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
        if name.strip().lower() != "connection":
            kept.append(line)
    return method, path, headers, kept


def _unavailable_answer(retry_after: str) -> bytes:
    body = json.dumps(
        {
            "type": "urn:wallet:problem:unavailable",
            "title": "Service unavailable",
            "status": 503,
            "detail": "The proxy in front of the service says: try again later.",
            "code": "unavailable",
        }
    ).encode()
    head = (
        "HTTP/1.1 503 Service Unavailable\r\n"
        "Content-Type: application/problem+json\r\n"
        f"Content-Length: {len(body)}\r\n"
        f"Retry-After: {retry_after}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode() + body


async def _close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    try:
        await writer.wait_closed()
    except ConnectionError:
        pass


class LossyProxy:
    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = 0
        self.seen: list[SeenRequest] = []
        self._plan: collections.deque[str] = collections.deque()
        self._default = FORWARD
        self._retry_after = "1"
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="lossy-proxy", daemon=True)
        self._server: asyncio.Server | None = None
        self._handlers: set[asyncio.Task[None]] = set()

    # --- control, from the test's thread ------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def lose_answers(self, count: int = 1) -> None:
        """The next `count` requests reach the service; their answers are lost."""
        with self._lock:
            self._plan.extend([LOSE] * count)

    def answer_unavailable(self, count: int, retry_after: str = "1") -> None:
        """The next `count` requests are answered 503 with this Retry-After by the proxy."""
        with self._lock:
            self._plan.extend([UNAVAILABLE] * count)
            self._retry_after = retry_after

    def always(self, action: str) -> None:
        """What every request gets once the plan is spent (FORWARD unless told otherwise)."""
        with self._lock:
            self._default = action

    def actions(self) -> list[str]:
        with self._lock:
            return [request.action for request in self.seen]

    def _next_action(self) -> str:
        with self._lock:
            return self._plan.popleft() if self._plan else self._default

    # --- the server, on the proxy's loop ------------------------------------------------------

    def start(self) -> LossyProxy:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._listen(), self._loop).result(timeout=10)
        return self

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(timeout=10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _close(self) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._handlers):
            task.cancel()
        await asyncio.gather(*self._handlers, return_exceptions=True)
        await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._handlers.add(task)
        try:
            await self._serve(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            self._handlers.discard(task)
            await _close(writer)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One request per connection: every answer passed on says `Connection: close`."""
        head = await reader.readuntil(b"\r\n\r\n")
        assert len(head) <= HEAD_SIZE_MAX
        method, path, headers, kept = _parse_head(head[:-4])
        body = await reader.readexactly(int(headers.get("content-length", "0")))
        action = self._next_action()
        with self._lock:
            self.seen.append(SeenRequest(method, path, headers.get("idempotency-key"), action))
        if action == UNAVAILABLE:
            writer.write(_unavailable_answer(self._retry_after))
            await writer.drain()
            return
        if action == SWALLOW:
            await reader.read()  # until the client gives up and closes
            return
        request_line = head.split(b"\r\n", 1)[0]
        forwarded = b"\r\n".join([request_line, *kept, b"Connection: close", b"", b""]) + body
        answer = await self._exchange(forwarded)
        if action == LOSE:
            return  # the service answered; the client gets nothing, and the connection closes
        writer.write(answer)
        await writer.drain()

    async def _exchange(self, request: bytes) -> bytes:
        upstream_reader, upstream_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        try:
            upstream_writer.write(request)
            await upstream_writer.drain()
            answer = await upstream_reader.read()  # the service closes after its answer
        finally:
            await _close(upstream_writer)
        assert answer.startswith(b"HTTP/1.1 "), answer[:80]
        return answer
