"""What RequestMiddleware (request id, metrics, access log line) adds to a request: a trivial ASGI
app called in-process with and without it, logs written to stderr at info level.

    .venv/bin/python bench/perf/middleware_overhead.py 2>/dev/null
    PROMETHEUS_MULTIPROC_DIR=$(mktemp -d) .venv/bin/python bench/perf/middleware_overhead.py 2>/dev/null

The second form measures prometheus_client's multiprocess mode (`wallet serve --workers N`).
Prints microseconds per request, three rounds. Not part of the test suite.
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

from wallet import logs
from wallet.api.middleware import RequestMiddleware

REQUESTS_PER_ROUND = 50_000
HEADERS = [
    (b"host", b"127.0.0.1:8000"),
    (b"authorization", b"Bearer wk_x"),
    (b"content-type", b"application/json"),
    (b"idempotency-key", b"k-1"),
    (b"content-length", b"12"),
]


class Route:
    path_format = "/v1/wallets/{wallet_id}/topup"


async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    scope["route"] = Route
    await send(
        {"type": "http.response.start", "status": 201, "headers": [(b"content-type", b"application/json")]}
    )
    await send({"type": "http.response.body", "body": b"{}"})


async def receive() -> dict[str, Any]:
    return {"type": "http.request", "body": b"", "more_body": False}


async def send(message: dict[str, Any]) -> None:
    pass


async def seconds_per_request(target: Any) -> float:
    started = time.perf_counter()
    for _ in range(REQUESTS_PER_ROUND):
        scope = {"type": "http", "method": "POST", "path": "/v1/wallets/x/topup", "headers": HEADERS}
        await target({**scope, "client": ("127.0.0.1", 50000)}, receive, send)
    return (time.perf_counter() - started) / REQUESTS_PER_ROUND


async def main() -> None:
    logs.configure("info")
    wrapped = RequestMiddleware(application, {})
    for _ in range(3):
        bare = await seconds_per_request(application)
        full = await seconds_per_request(wrapped)
        print(
            f"without {bare * 1e6:.1f} us, with {full * 1e6:.1f} us: +{(full - bare) * 1e6:.1f} us",
            file=sys.stdout,
        )


if __name__ == "__main__":
    asyncio.run(main())
