"""Every error the client raises.

One base, `WalletError`, carries the service's problem document (RFC 9457: `status`, `code`,
`title`, `detail`, and the whole document as `problem`). Each problem code the API names has its
own class (`InsufficientFunds`, `HoldNotPending`, ...), under a class per status (`NotFound`,
`Conflict`, `UnprocessableRequest`, ...), so a caller catches as narrowly as it likes. A code
this client does not know becomes the class of its status, or `WalletError` itself.

`WalletUnavailable` is different: no usable answer came before the call's deadline (connection
errors, timeouts, 503s). For a money movement its outcome is unknown, and retrying it with the
same idempotency key, which the error carries, is safe.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import httpx

PROBLEM_MEDIA_TYPE = "application/problem+json"
# The code of an error answer that carries no problem document (an HTML page of a proxy).
CODE_WITHOUT_DOCUMENT = "http_error"


class WalletError(Exception):
    """An error answer of the wallet service, or no answer at all (`WalletUnavailable`).

    `status` is the HTTP status (None only when no answer came); `problem` is the problem
    document as sent (empty when there was none); `idempotency_key` is the key the call sent
    (None for a call without one); `replayed` is true when the answer was the stored answer of
    an earlier request with that key (a decline is stored and replayed like a success);
    `request_id` is the answer's `X-Request-ID`, which names the request in the service's logs.
    """

    def __init__(
        self,
        problem: Mapping[str, Any],
        *,
        status: int | None,
        idempotency_key: str | None = None,
        replayed: bool = False,
        request_id: str | None = None,
    ) -> None:
        self.problem: dict[str, Any] = dict(problem)
        self.status = status
        self.code = _text(problem.get("code")) or CODE_WITHOUT_DOCUMENT
        self.title = _text(problem.get("title")) or ""
        self.detail = _text(problem.get("detail")) or ""
        self.idempotency_key = idempotency_key
        self.replayed = replayed
        self.request_id = request_id
        super().__init__(self._message())

    def _message(self) -> str:
        status = "no answer" if self.status is None else str(self.status)
        return f"{status} {self.code}: {self.detail or self.title}"

    @property
    def errors(self) -> list[dict[str, Any]]:
        """The `errors` of a validation problem (`[{"loc": [...], "msg": "..."}]`), else []."""
        found = self.problem.get("errors")
        return [item for item in found if isinstance(item, dict)] if isinstance(found, list) else []


# --- one class per status -------------------------------------------------------------------


class BadRequest(WalletError):
    """400: the request could not be read (JSON, HTTP, the Idempotency-Key)."""


class Unauthorized(WalletError):
    """401 `unauthenticated`: no API key, or an unknown or revoked one."""


class Forbidden(WalletError):
    """403 `forbidden`: the API key lacks the scope."""


class NotFound(WalletError):
    """404: the thing named does not exist."""


class MethodNotAllowed(WalletError):
    """405 `method_not_allowed`."""


class RequestTimeout(WalletError):
    """408 `request_timeout`: the request did not reach the service in time."""


class Conflict(WalletError):
    """409: the ledger's state does not allow the request now."""


class PayloadTooLarge(WalletError):
    """413 `payload_too_large`: a body over the service's limit."""


class UnsupportedMediaType(WalletError):
    """415 `unsupported_media_type`."""


class UnprocessableRequest(WalletError):
    """422: the request is well-formed but not acceptable."""


class HeadersTooLarge(WalletError):
    """431 `headers_too_large`."""


class ServerError(WalletError):
    """5xx: the service failed. A 500 is a bug of the service and is never retried."""


# --- one class per code ---------------------------------------------------------------------


class MalformedJson(BadRequest):
    """400 `malformed_json`."""


class MalformedRequest(BadRequest):
    """400 `malformed_request`."""


class IdempotencyKeyMissing(BadRequest):
    """400 `idempotency_key_missing`."""


class IdempotencyKeyInvalid(BadRequest):
    """400 `idempotency_key_invalid`: empty, longer than 255 or not printable ASCII."""


class WalletNotFound(NotFound):
    """404 `wallet_not_found`."""


class AssetNotFound(NotFound):
    """404 `asset_not_found`."""


class TransactionNotFound(NotFound):
    """404 `transaction_not_found`."""


class HoldNotFound(NotFound):
    """404 `hold_not_found`."""


class RouteNotFound(NotFound):
    """404 `not_found`: no such path (a base URL that is not the service's?)."""


class InsufficientFunds(Conflict):
    """409 `insufficient_funds`: the wallet's available balance is less than the amount."""


class AssetConflict(Conflict):
    """409 `asset_conflict`: the asset exists with another name."""


class HoldNotPending(Conflict):
    """409 `hold_not_pending`: the hold was captured, voided or has expired."""


class ReversalExceedsOriginal(Conflict):
    """409 `reversal_exceeds_original`: more than is left to reverse."""


class ValidationError(UnprocessableRequest):
    """422 `validation_error`; `errors` lists each problem with its location."""


class SameWallet(UnprocessableRequest):
    """422 `same_wallet`: a transfer to the sending wallet."""


class SameAccount(UnprocessableRequest):
    """422 `same_account`."""


class AssetMismatch(UnprocessableRequest):
    """422 `asset_mismatch`: wallets of different assets."""


class BalanceLimitExceeded(UnprocessableRequest):
    """422 `balance_limit_exceeded`: a credit would take a balance past 9 * 10^18."""


class IdempotencyKeyReused(UnprocessableRequest):
    """422 `idempotency_key_reused`: the key was used for a different request."""


class CaptureExceedsHold(UnprocessableRequest):
    """422 `capture_exceeds_hold`."""


class NotReversible(UnprocessableRequest):
    """422 `not_reversible`: a reversal or an expiry cannot be reversed."""


class StatementTooLarge(UnprocessableRequest):
    """422 `statement_too_large`: more than 10,000 transactions; ask for a shorter period."""


class InternalError(ServerError):
    """500 `internal_error`: a bug of the service. Never retried."""


class WalletUnavailable(ServerError):
    """No usable answer came before the call's deadline: every attempt failed to connect, timed
    out, lost its connection, or was answered 503 (`unavailable`, also a 502 or 504 of a proxy).

    For a money movement the outcome is unknown: the service may have applied it and the answer
    been lost. Retrying the call with the same `idempotency_key` is safe: the service replays
    the stored answer if it was applied, and applies it if not. `attempts` is how many requests
    were sent; `status` and `problem` are those of the last answer, if any came.
    """

    def __init__(
        self,
        problem: Mapping[str, Any],
        *,
        status: int | None,
        idempotency_key: str | None = None,
        replayed: bool = False,
        request_id: str | None = None,
        attempts: int = 1,
        cause: str = "",
    ) -> None:
        self.attempts = attempts
        self.cause = cause
        super().__init__(
            problem, status=status, idempotency_key=idempotency_key, replayed=replayed, request_id=request_id
        )
        if not self.problem:
            self.code = "unavailable"

    def _message(self) -> str:
        last = self.cause or f"{self.status} {self.detail or self.title}".strip()
        message = f"the wallet service gave no usable answer after {self.attempts} attempt(s); last: {last}."
        if self.idempotency_key is None:
            return message
        return (
            f"{message} The outcome is unknown: it may or may not have been applied. Retrying with "
            f"the same idempotency key ({self.idempotency_key!r}) is safe: it replays the stored "
            "answer if it was applied, and applies it if not."
        )


CODE_CLASSES: dict[str, type[WalletError]] = {
    "malformed_json": MalformedJson,
    "malformed_request": MalformedRequest,
    "idempotency_key_missing": IdempotencyKeyMissing,
    "idempotency_key_invalid": IdempotencyKeyInvalid,
    "unauthenticated": Unauthorized,
    "forbidden": Forbidden,
    "wallet_not_found": WalletNotFound,
    "asset_not_found": AssetNotFound,
    "transaction_not_found": TransactionNotFound,
    "hold_not_found": HoldNotFound,
    "not_found": RouteNotFound,
    "method_not_allowed": MethodNotAllowed,
    "request_timeout": RequestTimeout,
    "insufficient_funds": InsufficientFunds,
    "asset_conflict": AssetConflict,
    "hold_not_pending": HoldNotPending,
    "reversal_exceeds_original": ReversalExceedsOriginal,
    "payload_too_large": PayloadTooLarge,
    "unsupported_media_type": UnsupportedMediaType,
    "validation_error": ValidationError,
    "same_wallet": SameWallet,
    "same_account": SameAccount,
    "asset_mismatch": AssetMismatch,
    "balance_limit_exceeded": BalanceLimitExceeded,
    "idempotency_key_reused": IdempotencyKeyReused,
    "capture_exceeds_hold": CaptureExceedsHold,
    "not_reversible": NotReversible,
    "statement_too_large": StatementTooLarge,
    "headers_too_large": HeadersTooLarge,
    "internal_error": InternalError,
    "unavailable": WalletUnavailable,
}

STATUS_CLASSES: dict[int, type[WalletError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    405: MethodNotAllowed,
    408: RequestTimeout,
    409: Conflict,
    413: PayloadTooLarge,
    415: UnsupportedMediaType,
    422: UnprocessableRequest,
    431: HeadersTooLarge,
    500: InternalError,
}


def error_class(status: int, code: str | None) -> type[WalletError]:
    """The class of an error answer: its code's, when the code belongs to this status; else its
    status's; else ServerError for any 5xx, WalletError for anything else."""
    by_code = CODE_CLASSES.get(code) if code is not None else None
    by_status = STATUS_CLASSES.get(status)
    if by_code is not None and (by_status is None or issubclass(by_code, by_status)):
        return by_code
    if by_status is not None:
        return by_status
    return ServerError if status >= 500 else WalletError


def problem_of(response: httpx.Response) -> dict[str, Any]:
    """The problem document of an error answer; {} when its body is not a JSON object."""
    try:
        document = json.loads(response.content)
    except ValueError:
        return {}
    return document if isinstance(document, dict) else {}


def error_from_response(response: httpx.Response, idempotency_key: str | None = None) -> WalletError:
    """The error an error answer (status 400 or more) stands for."""
    assert response.status_code >= 400, response.status_code
    problem = problem_of(response)
    code = problem.get("code")
    cls = error_class(response.status_code, code if isinstance(code, str) else None)
    return cls(
        problem,
        status=response.status_code,
        idempotency_key=idempotency_key,
        replayed=response.headers.get("Idempotent-Replayed") == "true",
        request_id=response.headers.get("X-Request-ID"),
    )


def _text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def unavailable_error(
    failure: httpx.Response | Exception, idempotency_key: str | None, attempts: int
) -> WalletUnavailable:
    """The error of a call that ran out of attempts or time; `failure` is its last attempt's
    answer (a 503, 502 or 504) or exception."""
    if isinstance(failure, httpx.Response):
        return WalletUnavailable(
            problem_of(failure),
            status=failure.status_code,
            idempotency_key=idempotency_key,
            request_id=failure.headers.get("X-Request-ID"),
            attempts=attempts,
        )
    cause = f"{type(failure).__name__}: {failure}" if str(failure) else type(failure).__name__
    return WalletUnavailable({}, status=None, idempotency_key=idempotency_key, attempts=attempts, cause=cause)
