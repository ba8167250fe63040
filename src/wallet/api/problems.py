"""RFC 9457 problem responses: the one shape of every error this API returns."""

from __future__ import annotations

from typing import Any

import orjson
from fastapi import Response

PROBLEM_MEDIA_TYPE = "application/problem+json"
RETRY_AFTER_SECONDS = 1

# Every problem code this API answers with: its status (None where it varies) and title. The
# codes the ledger raises (wallet.ledger.errors) and stores (ledger/sql/post.sql) are here too;
# tests/api/test_problems.py checks that none is missing.
PROBLEM_TYPES: dict[str, tuple[int | None, str]] = {
    "validation_error": (422, "Validation error"),
    "malformed_json": (400, "Malformed JSON"),
    "malformed_request": (400, "Malformed request"),
    "payload_too_large": (413, "Payload too large"),
    "unsupported_media_type": (415, "Unsupported media type"),
    "unauthenticated": (401, "Unauthenticated"),
    "forbidden": (403, "Forbidden"),
    "idempotency_key_missing": (400, "Idempotency key missing"),
    "idempotency_key_invalid": (400, "Idempotency key invalid"),
    "idempotency_key_reused": (422, "Idempotency key reused"),
    "asset_not_found": (404, "Asset not found"),
    "asset_conflict": (409, "Asset conflict"),
    "wallet_not_found": (404, "Wallet not found"),
    "transaction_not_found": (404, "Transaction not found"),
    "insufficient_funds": (409, "Insufficient funds"),
    "balance_limit_exceeded": (422, "Balance limit exceeded"),
    "asset_mismatch": (422, "Asset mismatch"),
    "same_wallet": (422, "Same wallet"),
    "same_account": (422, "Same account"),
    "hold_not_found": (404, "Hold not found"),
    "hold_not_pending": (409, "Hold not pending"),
    "capture_exceeds_hold": (422, "Capture exceeds hold"),
    "reversal_exceeds_original": (409, "Reversal exceeds original"),
    "not_reversible": (422, "Not reversible"),
    "statement_too_large": (422, "Statement too large"),
    "not_found": (404, "Not found"),
    "method_not_allowed": (405, "Method not allowed"),
    "headers_too_large": (431, "Request header fields too large"),
    "request_timeout": (408, "Request timeout"),
    "unavailable": (503, "Service unavailable"),
    "http_error": (None, "HTTP error"),
    "internal_error": (500, "Internal server error"),
}
TITLES: dict[str, str] = {code: title for code, (_, title) in PROBLEM_TYPES.items()}


def status_of(code: str) -> int:
    """The status of a problem code whose status is fixed."""
    status = PROBLEM_TYPES[code][0]
    assert status is not None, code
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
        assert code in PROBLEM_TYPES, code
        assert status == (PROBLEM_TYPES[code][0] or status) and 400 <= status <= 599, (status, code)
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
