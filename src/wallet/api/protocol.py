"""The HTTP/1.1 protocol `wallet serve` runs: uvicorn's httptools protocol plus limits on the size
of a request head and on how long each part of a connection's life may take, none of which
uvicorn and httptools bound.

- A head larger than REQUEST_HEAD_SIZE_MAX bytes, or with more than REQUEST_HEADER_COUNT_MAX
  header fields: 431 `headers_too_large`, and the connection is closed.
- Time, one timer per connection, re-armed for each phase:
  - the head (request line and header fields) must be complete WALLET_TIMEOUT_MS_REQUEST_HEAD
    after its first byte, else 408 `request_timeout`; a new connection that sends nothing at all
    is closed after the same time;
  - the body must be complete WALLET_TIMEOUT_MS_REQUEST_BODY after the head, however it trickles
    in, else 408 `request_timeout` (or, when the application has answered already, as it does
    a request without a valid key, the connection is closed);
  - between a response and the next request, a kept-alive connection may stay silent for
    WALLET_TIMEOUT_MS_KEEP_ALIVE, then it is closed (this replaces uvicorn's keep-alive timer,
    which any byte, even one of an unwanted body, cancels);
  - while the application works on a request, no timer runs: the database timeouts bound it.
- A request the HTTP parser refuses: 400 `malformed_request`, and the connection is closed.

Every answer sent here is problem JSON with an X-Request-ID, like the application's: the one the
request middleware chose when the application has the request already, otherwise the client's
own when sane, otherwise a new one. When the application is waiting for the body of the request
being refused, it is told the client is gone (the body will not come), with the status sent here
in its request state, so that its access line and metrics record that status.

The head is measured twice, so that neither way can be fooled: the sizes the parser reports
(request target, header names and values) and, while a head is still incomplete, the raw bytes
received for it after the chunk it began in. A header value is handed over only once complete,
so the raw count is what stops one endless header; the parsed count stops many headers that
arrive in a single chunk. Memory per connection stays below the limit plus two read chunks.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from wallet.api.middleware import REQUEST_ID, REQUEST_STATUS_SENT_BY_PROTOCOL, request_id_of
from wallet.api.problems import problem_document
from wallet.config import load_settings

REQUEST_HEAD_SIZE_MAX = 16 * 1024
REQUEST_HEADER_COUNT_MAX = 100
# After an answer sent here the rest of what the client sends is read and dropped for this long
# before the connection closes, so that the client, still sending, gets to read the answer
# instead of a connection reset.
LINGER_SECONDS = 2.0

_REASONS = {400: b"Bad Request", 408: b"Request Timeout", 431: b"Request Header Fields Too Large"}

access_log = structlog.get_logger("wallet.access")


@dataclass(frozen=True, slots=True)
class Timeouts:
    head_seconds: float
    body_seconds: float
    keep_alive_seconds: float


@functools.cache
def _timeouts() -> Timeouts:
    """The settings, read once per process (the app factory has already checked them)."""
    settings = load_settings()
    return Timeouts(
        head_seconds=settings.timeout_ms_request_head / 1000,
        body_seconds=settings.timeout_ms_request_body / 1000,
        keep_alive_seconds=settings.timeout_ms_keep_alive / 1000,
    )


class _HeadTooLarge(Exception):
    """Raised from a parser callback; httptools turns it into HttpParserCallbackError."""


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_bytes_parsed = 0
        self._head_bytes_received = 0
        self._header_count = 0
        self._reading_head = False
        self._reading_body = False
        self._head_too_large = False
        self._timer: asyncio.TimerHandle | None = None
        self._discarding = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm(_timeouts().head_seconds, self._head_timed_out)

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._discarding:
            return
        head_began_earlier = self._reading_head
        super().data_received(data)
        if self._discarding or self.transport.is_closing():
            return
        if head_began_earlier and self._reading_head:
            # The head is still incomplete, so every byte of this chunk belongs to it.
            self._head_bytes_received += len(data)
            if self._head_bytes_received > REQUEST_HEAD_SIZE_MAX:
                self._head_too_large = True
                self.send_400_response("")

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_bytes_parsed = self._head_bytes_received = self._header_count = 0
        self._reading_head = True
        self._arm(_timeouts().head_seconds, self._head_timed_out)

    def on_url(self, url: bytes) -> None:
        self._count_head(len(url), 0)
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count_head(len(name) + len(value), 1)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._reading_head = False
        self._reading_body = True
        self._arm(_timeouts().body_seconds, self._body_timed_out)
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        self._reading_body = False
        super().on_message_complete()
        if self.cycle is not None and self.cycle.response_complete:
            self._arm(_timeouts().keep_alive_seconds, self._idle_timed_out)
        else:
            self._disarm()  # the application's turn

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if self.transport.is_closing():
            return
        self._unset_keepalive_if_required()  # uvicorn's keep-alive timer: this class keeps its own
        answered = self.cycle is None or self.cycle.response_complete
        if answered and not self._reading_head and not self._reading_body:
            self._arm(_timeouts().keep_alive_seconds, self._idle_timed_out)

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to a request the parser refused; a head over the limits gets 431."""
        if self._head_too_large:
            detail = (
                f"The request line and headers are limited to {REQUEST_HEAD_SIZE_MAX} bytes "
                f"and {REQUEST_HEADER_COUNT_MAX} header fields."
            )
            self._refuse(431, "headers_too_large", detail)
        else:
            self._refuse(400, "malformed_request", "The request is not valid HTTP/1.1.")

    def _count_head(self, size: int, headers: int) -> None:
        self._head_bytes_parsed += size
        self._header_count += headers
        if self._head_bytes_parsed > REQUEST_HEAD_SIZE_MAX or self._header_count > REQUEST_HEADER_COUNT_MAX:
            self._head_too_large = True
            raise _HeadTooLarge

    def _arm(self, seconds: float, callback: Callable[[], None]) -> None:
        self._disarm()
        self._timer = self.loop.call_later(seconds, callback)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _head_timed_out(self) -> None:
        self._timer = None
        if self.transport.is_closing():
            return
        if not self._reading_head:  # nothing was ever sent on this connection
            self.transport.close()
            return
        detail = f"The request line and headers must arrive within {_timeouts().head_seconds:g} s."
        self._refuse(408, "request_timeout", detail)

    def _body_timed_out(self) -> None:
        self._timer = None
        if self.transport.is_closing():
            return
        if self.cycle is not None and self.cycle.response_started:
            self.transport.close()  # answered already; the rest of the body is not wanted
            return
        detail = f"The request body must arrive within {_timeouts().body_seconds:g} s of its headers."
        self._refuse(408, "request_timeout", detail)

    def _idle_timed_out(self) -> None:
        self._timer = None
        if not self.transport.is_closing():
            self.transport.close()

    def _refuse(self, status: int, code: str, detail: str) -> None:
        """Answer `status` and close. When the application has this request (its head was
        complete), it is told the client is gone, and which status and id were sent, and logs
        the request itself; otherwise the request is logged here."""
        cycle = self.cycle
        if cycle is None or cycle.response_complete:
            request_id = request_id_of(self.headers or [])
            client = self.client[0] if self.client else None
            access_log.info("request", status=status, code=code, client=client, request_id=request_id)
        elif cycle.response_started:
            self.transport.close()  # half an answer is out: nothing can follow it
            return
        else:
            state: dict[str, Any] = cycle.scope.setdefault("state", {})
            request_id = state.setdefault(REQUEST_ID, request_id_of(self.headers or []))
            state[REQUEST_STATUS_SENT_BY_PROTOCOL] = status
            cycle.disconnected = True
            cycle.message_event.set()
        self._send_problem_and_close(status, code, detail, request_id)

    def _send_problem_and_close(self, status: int, code: str, detail: str, request_id: str) -> None:
        assert status in _REASONS, status
        assert request_id.isascii() and request_id.isprintable(), request_id
        body = problem_document(status, code, detail)
        head = b"HTTP/1.1 %d %s\r\n" % (status, _REASONS[status])
        for name, value in self.server_state.default_headers:
            head += name + b": " + value + b"\r\n"
        head += b"content-type: application/problem+json\r\ncontent-length: %d\r\n" % len(body)
        head += b"x-request-id: " + request_id.encode("ascii") + b"\r\n"
        self.transport.write(head + b"connection: close\r\n\r\n" + body)
        self._discarding = True
        self._disarm()
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(LINGER_SECONDS, self.transport.close)
