"""The HTTP/1.1 protocol `wallet serve` runs: uvicorn's httptools protocol plus limits on the
request head (request line and header fields), which uvicorn and httptools do not bound.

- A head larger than REQUEST_HEAD_SIZE_MAX bytes, or with more than REQUEST_HEADER_COUNT_MAX
  header fields: 431 `headers_too_large`, and the connection is closed.
- A head not complete WALLET_TIMEOUT_MS_REQUEST_HEAD after its first byte: 408
  `request_timeout`, and the connection is closed. A new connection that sends nothing at all is
  closed after the same time.

The head is measured twice, so that neither way can be fooled: the sizes the parser reports
(request target, header names and values) and, while a head is still incomplete, the raw bytes
received for it after the chunk it began in. A header value is handed over only once complete,
so the raw count is what stops one endless header; the parsed count stops many headers that
arrive in a single chunk. Memory per connection stays below the limit plus two read chunks.
"""

from __future__ import annotations

import asyncio
import functools
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from wallet.api.problems import problem_document
from wallet.config import load_settings

REQUEST_HEAD_SIZE_MAX = 16 * 1024
REQUEST_HEADER_COUNT_MAX = 100
# After a 408 or 431 the rest of what the client sends is read and dropped for this long before
# the connection closes, so that the client, still sending, gets to read the answer instead of
# a connection reset.
LINGER_SECONDS = 2.0

_REASONS = {408: b"Request Timeout", 431: b"Request Header Fields Too Large"}


@functools.cache
def _head_timeout_seconds() -> float:
    """The setting, read once per process (the app factory has already checked the settings)."""
    return load_settings().timeout_ms_request_head / 1000


class _HeadTooLarge(Exception):
    """Raised from a parser callback; httptools turns it into HttpParserCallbackError."""


class LimitedHttpToolsProtocol(HttpToolsProtocol):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._head_bytes_parsed = 0
        self._head_bytes_received = 0
        self._header_count = 0
        self._reading_head = False
        self._head_too_large = False
        self._head_timer: asyncio.TimerHandle | None = None
        self._discarding = False

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_timer()
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
        self._arm_head_timer()

    def on_url(self, url: bytes) -> None:
        self._count_head(len(url), 0)
        super().on_url(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._count_head(len(name) + len(value), 1)
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._reading_head = False
        self._disarm_head_timer()
        super().on_headers_complete()

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to a request the parser refused; a head over the limits gets 431."""
        if not self._head_too_large:
            super().send_400_response(msg)
            return
        detail = (
            f"The request line and headers are limited to {REQUEST_HEAD_SIZE_MAX} bytes "
            f"and {REQUEST_HEADER_COUNT_MAX} header fields."
        )
        self._send_problem_and_close(431, "headers_too_large", detail)

    def _count_head(self, size: int, headers: int) -> None:
        self._head_bytes_parsed += size
        self._header_count += headers
        if self._head_bytes_parsed > REQUEST_HEAD_SIZE_MAX or self._header_count > REQUEST_HEADER_COUNT_MAX:
            self._head_too_large = True
            raise _HeadTooLarge

    def _arm_head_timer(self) -> None:
        self._disarm_head_timer()
        self._head_timer = self.loop.call_later(_head_timeout_seconds(), self._head_timed_out)

    def _disarm_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing():
            return
        if not self._reading_head:
            if self.cycle is None:  # nothing was ever sent on this connection
                self.transport.close()
            return
        detail = f"The request line and headers must arrive within {_head_timeout_seconds():g} s."
        self._send_problem_and_close(408, "request_timeout", detail)

    def _send_problem_and_close(self, status: int, code: str, detail: str) -> None:
        assert status in _REASONS, status
        body = problem_document(status, code, detail)
        head = b"HTTP/1.1 %d %s\r\n" % (status, _REASONS[status])
        for name, value in self.server_state.default_headers:
            head += name + b": " + value + b"\r\n"
        head += b"content-type: application/problem+json\r\ncontent-length: %d\r\n" % len(body)
        self.transport.write(head + b"connection: close\r\n\r\n" + body)
        self._discarding = True
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.loop.call_later(LINGER_SECONDS, self.transport.close)
