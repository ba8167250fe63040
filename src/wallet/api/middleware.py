"""The outermost layer of every HTTP request: its request id, its metrics and its access log line.

A plain ASGI middleware (no BaseHTTPMiddleware: no extra task, no body buffering), placed
outside Starlette's error middleware, so 500 responses carry the request id and are counted too.
"""

from __future__ import annotations

import random
import re
import time
import uuid
from typing import Any

import structlog
from fastapi import FastAPI
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from wallet import metrics

REQUEST_ID_HEADER = b"x-request-id"
# A client's request id is kept when it is 1-128 printable ASCII characters; otherwise a new one.
REQUEST_ID_PATTERN = re.compile(rb"[\x20-\x7e]{1,128}")
UNMATCHED_ROUTE = "unmatched"
# Keys of the request's `scope["state"]` (Starlette's `request.state`) shared with the HTTP
# protocol (wallet.api.protocol): the request's id, chosen by whichever of the two sees it first,
# so that an answer the protocol sends itself carries the id this middleware logs; and the status
# the protocol answered with in the application's place (408 when the body did not arrive in
# time), which is what the access line and the metrics record.
REQUEST_ID = "wallet_request_id"
REQUEST_STATUS_SENT_BY_PROTOCOL = "wallet_request_status_sent_by_protocol"

access_log = structlog.get_logger("wallet.access")


def request_id_of(headers: list[tuple[bytes, bytes]]) -> str:
    """The client's X-Request-ID when it is sane, else a new random (version 4) UUID in hex. Its
    bits come from `random`, not the operating system: an id must be unique, not secret, and
    that spares a system call per request."""
    for name, value in headers:
        if name == REQUEST_ID_HEADER:
            if REQUEST_ID_PATTERN.fullmatch(value) is not None:
                return value.decode("ascii")
            break
    return uuid.UUID(int=random.getrandbits(128), version=4).hex


def route_template(scope: Scope, templates: dict[Any, str]) -> str:
    """The matched route's path template (`/v1/wallets/{wallet_id}/spend`), never the raw path:
    from the route the router put in the scope, else from the endpoint it put there (plain
    Starlette routes such as /openapi.json), else the prefix a mounted app (static files) added
    to the root path."""
    template = getattr(scope.get("route"), "path_format", None)
    if isinstance(template, str):
        return template
    endpoint = scope.get("endpoint")
    if endpoint is not None and endpoint in templates:
        return templates[endpoint]
    mount_prefix = scope.get("root_path", "").removeprefix(scope.get("app_root_path", ""))
    return f"{mount_prefix}/{{path}}" if mount_prefix else UNMATCHED_ROUTE


class RequestMiddleware:
    def __init__(self, app: ASGIApp, templates: dict[Any, str]) -> None:
        self.app = app
        self.templates = templates  # endpoint -> path template

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        state = scope.setdefault("state", {})
        # The protocol chose the id already when it answered before this task began.
        request_id = state.get(REQUEST_ID) or request_id_of(scope["headers"])
        state[REQUEST_ID] = request_id
        # Each request runs in its own task, hence its own copy of the context: the binding
        # ends with the request, and is still there when an error is logged further out.
        structlog.contextvars.bind_contextvars(request_id=request_id)
        header = (REQUEST_ID_HEADER, request_id.encode("ascii"))
        status = 500  # unless a response starts

        async def send_with_request_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        try:
            await self.app(scope, receive, send_with_request_id)
        finally:
            # What the client got, when the protocol answered in the application's place.
            status = state.get(REQUEST_STATUS_SENT_BY_PROTOCOL, status)
            self._finish(scope, status, time.perf_counter() - started)

    def _finish(self, scope: Scope, status: int, duration_seconds: float) -> None:
        method: str = scope["method"]
        route = route_template(scope, self.templates)
        metrics.record_request(method, route, status, duration_seconds)
        client = scope.get("client")
        access_log.info(
            "request",
            method=method,
            route=route,
            status=status,
            duration_ms=round(duration_seconds * 1000, 3),
            client=client[0] if client else None,
        )


class InstrumentedFastAPI(FastAPI):
    """FastAPI with RequestMiddleware around its whole middleware stack, error handling included
    (`add_middleware` would place it inside the error middleware)."""

    def build_middleware_stack(self) -> ASGIApp:
        templates = {route.endpoint: route.path_format for route in self.routes if isinstance(route, Route)}
        return RequestMiddleware(super().build_middleware_stack(), templates)
