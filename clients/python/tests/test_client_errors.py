"""Problem documents become typed errors: a class per code under a class per status, unknown
codes and bodies that are not problem documents by their status; the event follower's cursor;
Retry-After parsing."""

from __future__ import annotations

from datetime import UTC, datetime

import httpx
import pytest
from client_fakes import WALLET_ID, FakeClock, FakeTimeClient, Script, problem, transaction_document

import wallet_client
from wallet_client import errors
from wallet_client.retry import parse_retry_after

# Every code of the API (shared/API.md and docs/api.md) with its status and class.
CODES = [
    (400, "malformed_json", errors.MalformedJson, errors.BadRequest),
    (400, "malformed_request", errors.MalformedRequest, errors.BadRequest),
    (400, "idempotency_key_missing", errors.IdempotencyKeyMissing, errors.BadRequest),
    (400, "idempotency_key_invalid", errors.IdempotencyKeyInvalid, errors.BadRequest),
    (401, "unauthenticated", errors.Unauthorized, errors.Unauthorized),
    (403, "forbidden", errors.Forbidden, errors.Forbidden),
    (404, "wallet_not_found", errors.WalletNotFound, errors.NotFound),
    (404, "asset_not_found", errors.AssetNotFound, errors.NotFound),
    (404, "transaction_not_found", errors.TransactionNotFound, errors.NotFound),
    (404, "hold_not_found", errors.HoldNotFound, errors.NotFound),
    (404, "not_found", errors.RouteNotFound, errors.NotFound),
    (405, "method_not_allowed", errors.MethodNotAllowed, errors.MethodNotAllowed),
    (408, "request_timeout", errors.RequestTimeout, errors.RequestTimeout),
    (409, "insufficient_funds", errors.InsufficientFunds, errors.Conflict),
    (409, "asset_conflict", errors.AssetConflict, errors.Conflict),
    (409, "hold_not_pending", errors.HoldNotPending, errors.Conflict),
    (409, "reversal_exceeds_original", errors.ReversalExceedsOriginal, errors.Conflict),
    (413, "payload_too_large", errors.PayloadTooLarge, errors.PayloadTooLarge),
    (415, "unsupported_media_type", errors.UnsupportedMediaType, errors.UnsupportedMediaType),
    (422, "validation_error", errors.ValidationError, errors.UnprocessableRequest),
    (422, "same_wallet", errors.SameWallet, errors.UnprocessableRequest),
    (422, "same_account", errors.SameAccount, errors.UnprocessableRequest),
    (422, "asset_mismatch", errors.AssetMismatch, errors.UnprocessableRequest),
    (422, "balance_limit_exceeded", errors.BalanceLimitExceeded, errors.UnprocessableRequest),
    (422, "idempotency_key_reused", errors.IdempotencyKeyReused, errors.UnprocessableRequest),
    (422, "capture_exceeds_hold", errors.CaptureExceedsHold, errors.UnprocessableRequest),
    (422, "not_reversible", errors.NotReversible, errors.UnprocessableRequest),
    (422, "statement_too_large", errors.StatementTooLarge, errors.UnprocessableRequest),
    (431, "headers_too_large", errors.HeadersTooLarge, errors.HeadersTooLarge),
    (500, "internal_error", errors.InternalError, errors.ServerError),
]


@pytest.mark.parametrize(("status", "code", "error_class", "status_class"), CODES)
def test_each_code_has_its_class_under_its_status(
    status: int, code: str, error_class: type[errors.WalletError], status_class: type[errors.WalletError]
) -> None:
    response = problem(status, code, **{"Idempotent-Replayed": "true", "X-Request-ID": "r-1"})
    error = errors.error_from_response(response, idempotency_key="k-1")
    assert type(error) is error_class
    assert isinstance(error, status_class) and isinstance(error, errors.WalletError)
    assert (error.status, error.code, error.title, error.detail) == (status, code, code, code)
    assert error.problem["type"] == f"urn:wallet:problem:{code}"
    assert error.idempotency_key == "k-1" and error.replayed and error.request_id == "r-1"
    assert getattr(wallet_client, error_class.__name__) is error_class


def test_an_unknown_code_is_its_status_class_or_the_base() -> None:
    assert type(errors.error_from_response(problem(409, "something_new"))) is errors.Conflict
    assert type(errors.error_from_response(problem(404, "something_new"))) is errors.NotFound
    assert type(errors.error_from_response(problem(418, "teapot"))) is errors.WalletError
    assert type(errors.error_from_response(problem(507, "disk_full"))) is errors.ServerError
    # A known code under another status than its own is read by its status.
    assert type(errors.error_from_response(problem(400, "insufficient_funds"))) is errors.BadRequest


def test_an_answer_that_is_no_problem_document_is_read_by_its_status() -> None:
    error = errors.error_from_response(httpx.Response(404, text="<html>not here</html>"))
    assert type(error) is errors.NotFound
    assert error.code == "http_error" and error.problem == {} and error.status == 404
    listed = errors.error_from_response(httpx.Response(422, json=[1, 2]))
    assert type(listed) is errors.UnprocessableRequest and listed.problem == {}


def test_a_validation_error_lists_its_errors() -> None:
    document = {
        "type": "urn:wallet:problem:validation_error",
        "title": "Validation error",
        "status": 422,
        "detail": "The request is not valid.",
        "code": "validation_error",
        "errors": [{"loc": ["body", "amount"], "msg": "must be an integer"}],
    }
    error = errors.error_from_response(httpx.Response(422, json=document))
    assert isinstance(error, errors.ValidationError)
    assert error.errors == [{"loc": ["body", "amount"], "msg": "must be an integer"}]
    assert "422 validation_error: The request is not valid." in str(error)


def test_the_client_raises_the_typed_error_with_the_calls_key() -> None:
    clock = FakeClock()
    script = Script([problem(409, "insufficient_funds", **{"Idempotent-Replayed": "true"})])
    with FakeTimeClient(script, clock) as client, pytest.raises(wallet_client.InsufficientFunds) as raised:
        client.spend(WALLET_ID, 100)
    assert raised.value.idempotency_key == script.keys()[0] and raised.value.replayed


def test_retry_after_is_read_as_seconds_or_as_a_date() -> None:
    now = datetime(2030, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert parse_retry_after("1", now) == 1.0
    assert parse_retry_after(" 2.5 ", now) == 2.5
    assert parse_retry_after("Tue, 01 Jan 2030 12:00:30 GMT", now) == 30.0
    assert parse_retry_after("Tue, 01 Jan 2030 11:00:00 GMT", now) == 0.0
    for unreadable in (None, "", "soon", "-1", "nan", "inf"):
        assert parse_retry_after(unreadable, now) is None


def event_page(count: int, first: int, cursor: str) -> httpx.Response:
    events = [
        {
            "id": f"0190a5a0-0000-7000-8000-{first + index:012d}",
            "type": "transaction.posted",
            "created_at": "2030-01-02T03:04:05.000001Z",
            "data": transaction_document(amount=first + index),
        }
        for index in range(count)
    ]
    return httpx.Response(200, json={"data": events, "next_cursor": cursor})


def test_the_follower_polls_when_idle_and_its_cursor_never_skips_an_event_not_yielded() -> None:
    clock = FakeClock()
    pages = [
        event_page(2, 1, "c2"),
        event_page(0, 0, "c2"),
        event_page(0, 0, "c2"),
        event_page(1, 3, "c3"),
    ]
    script = Script(pages)
    with FakeTimeClient(script, clock) as client:
        follower = client.events.follow(after="c0", page_size=2, poll_interval_seconds=0.25)
        assert follower.cursor == "c0"
        seen: list[tuple[int, str | None]] = []
        for event in follower:
            assert event.transaction is not None and event.hold is None
            seen.append((event.transaction.amount, follower.cursor))
            if len(seen) == 3:
                break
    # Mid-page the cursor is the page's start; after a page's last event, the page's end.
    assert seen == [(1, "c0"), (2, "c2"), (3, "c3")]
    assert [request.url.params.get("after") for request in script.requests] == ["c0", "c2", "c2", "c2"]
    assert {request.url.params.get("limit") for request in script.requests} == {"2"}
    assert clock.sleeps == [0.25, 0.25]
