"""RFC 9457 problem responses: the one shape of every error this API returns."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import Response

PROBLEM_MEDIA_TYPE = "application/problem+json"
RETRY_AFTER_SECONDS = 1

TITLES: dict[str, str] = {
    "validation_error": "Validation error",
    "malformed_json": "Malformed JSON",
    "malformed_request": "Malformed request",
    "payload_too_large": "Payload too large",
    "unsupported_media_type": "Unsupported media type",
    "unauthenticated": "Unauthenticated",
    "forbidden": "Forbidden",
    "idempotency_key_missing": "Idempotency key missing",
    "idempotency_key_invalid": "Idempotency key invalid",
    "idempotency_key_reused": "Idempotency key reused",
    "asset_not_found": "Asset not found",
    "asset_conflict": "Asset conflict",
    "wallet_not_found": "Wallet not found",
    "transaction_not_found": "Transaction not found",
    "insufficient_funds": "Insufficient funds",
    "balance_limit_exceeded": "Balance limit exceeded",
    "asset_mismatch": "Asset mismatch",
    "same_wallet": "Same wallet",
    "not_found": "Not found",
    "method_not_allowed": "Method not allowed",
    "headers_too_large": "Request header fields too large",
    "request_timeout": "Request timeout",
    "unavailable": "Service unavailable",
    "http_error": "HTTP error",
    "internal_error": "Internal server error",
}


# The status of each business decline the posting core can store (ledger/sql/post.sql).
DECLINE_STATUS: dict[str, int] = {
    "asset_not_found": 404,
    "wallet_not_found": 404,
    "asset_mismatch": 422,
    "insufficient_funds": 409,
    "balance_limit_exceeded": 422,
}


def decline_status(code: str) -> int:
    status = DECLINE_STATUS[code]
    assert code in TITLES
    return status


class Problem(Exception):
    """Raised by routes and dependencies; rendered by the app's exception handler."""

    def __init__(
        self,
        status: int,
        code: str,
        detail: str,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        assert code in TITLES, code
        assert 400 <= status <= 599, status
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.errors = errors
        self.headers = headers

    def to_response(self) -> Response:
        return Response(
            problem_document(self.status, self.code, self.detail, self.errors),
            status_code=self.status,
            media_type=PROBLEM_MEDIA_TYPE,
            headers=self.headers,
        )


def problem_document(
    status: int, code: str, detail: str, errors: list[dict[str, Any]] | None = None
) -> bytes:
    """The problem JSON of an error, as bytes."""
    assert code in TITLES, code
    document: dict[str, Any] = {
        "type": f"urn:wallet:problem:{code}",
        "title": TITLES[code],
        "status": status,
        "detail": detail,
        "code": code,
    }
    if errors is not None:
        document["errors"] = errors
    return orjson.dumps(document)


def unavailable(detail: str) -> Problem:
    return Problem(503, "unavailable", detail, headers={"Retry-After": str(RETRY_AFTER_SECONDS)})
