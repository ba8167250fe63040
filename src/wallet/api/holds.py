"""Holds and reversals over HTTP: place, capture, void, read and list holds; reverse a
transaction. Captures and reversals are postings (the group commit posts them); placing and
voiding a hold are ledger.place_hold and ledger.void_hold. Every state-changing request takes an
Idempotency-Key, as the money movements do."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel

from wallet import metrics
from wallet.api import schemas
from wallet.api.body import read_json, validate
from wallet.api.deps import authorise, connection, idempotency_key_of, wallet_id_of
from wallet.api.movements import (
    JSON_MEDIA_TYPE,
    REPLAYED_HEADERS,
    REUSED_DETAIL,
    metadata_json,
    movement_route,
    post_movement,
    problems,
)
from wallet.api.problems import PROBLEM_MEDIA_TYPE, Problem, problem_document, status_of
from wallet.idempotency import fingerprint
from wallet.keys import Scope
from wallet.ledger import holds, posting, transactions
from wallet.ledger.errors import TransactionNotFound
from wallet.ledger.limits import PAGE_SIZE_DEFAULT, PAGE_SIZE_MAX

router = APIRouter(prefix="/v1")

HOLD_PROBLEMS = problems(400, 401, 403, 404, 409, 413, 415, 422, 503)
NOT_REVERSIBLE = frozenset({"reversal", "expiry"})


def _id_of(text: str, what: str, code: str) -> uuid.UUID:
    """An id in the path; anything that is not a UUID names nothing (404)."""
    try:
        return uuid.UUID(text)
    except ValueError:
        raise Problem(404, code, f"{what} {text[:64]!r} does not exist.") from None


def _hold_response(outcome: holds.HoldOutcome) -> Response:
    if outcome.result is holds.Result.DONE:
        assert outcome.hold is not None and outcome.at is not None and outcome.status is not None
        status, body = outcome.status, outcome.hold.to_json(outcome.at)
        label = "created"
    elif outcome.result is holds.Result.DECLINED:
        assert outcome.decline is not None
        status = status_of(outcome.decline.code)
        body = problem_document(status, outcome.decline.code, outcome.decline.detail)
        label = outcome.decline.code
    else:
        status, body = 422, problem_document(422, "idempotency_key_reused", REUSED_DETAIL)
        label = "idempotency_key_reused"
    metrics.record_posting("hold", label, outcome.replayed, status)
    return Response(
        body,
        status_code=status,
        media_type=JSON_MEDIA_TYPE if status < 400 else PROBLEM_MEDIA_TYPE,
        headers=REPLAYED_HEADERS if outcome.replayed else None,
    )


def _hold_route(model: type[BaseModel], status: int) -> dict[str, object]:
    route = movement_route(model)
    return {**route, "status_code": status, "response_model": schemas.Hold, "responses": HOLD_PROBLEMS}


@router.post("/wallets/{wallet_id}/holds", **_hold_route(schemas.HoldCreate, 201))  # type: ignore[arg-type]
async def place_hold(request: Request, wallet_id: str) -> Response:
    """Reserve part of the wallet's funds: it lowers `available` until captured, voided or expired."""
    caller = await authorise(request, Scope.WRITE)
    key = idempotency_key_of(request)
    wallet = wallet_id_of(wallet_id)
    body = await read_json(request)
    fields = validate(schemas.HoldCreate, body.value)
    request_fingerprint = fingerprint(request.method, request.url.path, body.canonical)
    async with connection(request) as database:
        outcome = await holds.place(
            database, caller.id, key, request_fingerprint, wallet, fields.amount, fields.expires_in_seconds,
            fields.reference, metadata_json(fields.metadata), uuid.uuid4(),
        )  # fmt: skip
    return _hold_response(outcome)


@router.post("/holds/{hold_id}/capture", **movement_route(schemas.HoldCapture))
async def capture_hold(request: Request, hold_id: str) -> Response:
    """Spend (part of) what the hold reserved; the rest is released."""
    caller = await authorise(request, Scope.WRITE)
    key = idempotency_key_of(request)
    hold_uuid = _id_of(hold_id, "Hold", "hold_not_found")
    body = await read_json(request)
    fields = validate(schemas.HoldCapture, body.value)
    async with connection(request) as database:
        hold = await holds.find_hold(database, hold_uuid)
    reference, metadata = fields.reference, metadata_json(fields.metadata)
    if hold is None:
        movement = posting.declined(
            posting.TransactionType.SPEND, "hold_not_found", f"Hold {hold_uuid} does not exist."
        )
    elif fields.amount is not None and fields.amount > hold.amount:
        detail = f"Hold {hold.id} is of {hold.amount}, less than {fields.amount}."
        movement = posting.declined(posting.TransactionType.SPEND, "capture_exceeds_hold", detail)
    else:
        amount = hold.amount if fields.amount is None else fields.amount
        movement = posting.capture(hold.id, hold.wallet_id, amount, reference, metadata)
    return await post_movement(request, movement, caller, key, body.canonical)


@router.post("/holds/{hold_id}/void", **_hold_route(schemas.HoldVoid, 200))  # type: ignore[arg-type]
async def void_hold(request: Request, hold_id: str) -> Response:
    """End a pending hold without spending: what it held is available again."""
    caller = await authorise(request, Scope.WRITE)
    key = idempotency_key_of(request)
    hold_uuid = _id_of(hold_id, "Hold", "hold_not_found")
    body = await read_json(request)
    validate(schemas.HoldVoid, body.value)
    request_fingerprint = fingerprint(request.method, request.url.path, body.canonical)
    async with connection(request) as database:
        outcome = await holds.void(database, caller.id, key, request_fingerprint, hold_uuid)
    return _hold_response(outcome)


@router.get("/holds/{hold_id}", response_model=schemas.Hold, responses=problems(401, 403, 404, 503))
async def get_hold(request: Request, hold_id: str) -> Response:
    await authorise(request, Scope.READ)
    hold_uuid = _id_of(hold_id, "Hold", "hold_not_found")
    async with connection(request) as database:
        hold, at = await holds.get_hold(database, hold_uuid)
    return Response(hold.to_json(at), media_type=JSON_MEDIA_TYPE)


@router.get(
    "/wallets/{wallet_id}/holds", response_model=schemas.HoldPage, responses=problems(401, 403, 404, 422, 503)
)
async def wallet_holds(
    request: Request,
    wallet_id: str,
    status: holds.HoldStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=PAGE_SIZE_MAX)] = PAGE_SIZE_DEFAULT,
    cursor: Annotated[str | None, Query(min_length=1, max_length=holds.CURSOR_LENGTH_MAX)] = None,
) -> Response:
    """The wallet's holds, newest first; `status` as the holds read now (a pending hold past its
    expiry is expired)."""
    await authorise(request, Scope.READ)
    wallet = wallet_id_of(wallet_id)
    if cursor is not None:
        try:
            holds.decode_cursor(cursor)
        except holds.CursorInvalid as error:
            errors = [{"loc": ["query", "cursor"], "msg": str(error)}]
            raise Problem(422, "validation_error", "The request is not valid.", errors=errors) from None
    async with connection(request) as database:
        page = await holds.wallet_holds(database, wallet, status, limit, cursor)
    data = b",".join(hold.to_json(page.at) for hold in page.holds)
    next_cursor = b"null" if page.next_cursor is None else b'"' + page.next_cursor.encode() + b'"'
    return Response(
        b'{"data":[' + data + b'],"next_cursor":' + next_cursor + b"}", media_type=JSON_MEDIA_TYPE
    )


@router.post("/transactions/{transaction_id}/reverse", **movement_route(schemas.Reverse))
async def reverse(request: Request, transaction_id: str) -> Response:
    """A transaction that mirrors another (each debit a credit and back), for what is left of it
    or a part: a refund, a chargeback. A journal is reversed whole only."""
    caller = await authorise(request, Scope.WRITE)
    key = idempotency_key_of(request)
    original_id = _id_of(transaction_id, "Transaction", "transaction_not_found")
    body = await read_json(request)
    fields = validate(schemas.Reverse, body.value)
    async with connection(request) as database:
        try:
            original = await transactions.get_transaction(database, original_id)
        except TransactionNotFound:
            original = None
        reversed_amount = 0 if original is None else await transactions.reversed_amount(database, original.id)
    movement = _reversal(original, original_id, reversed_amount, fields)
    return await post_movement(request, movement, caller, key, body.canonical)


def _reversal(
    original: transactions.TransactionRecord | None,
    original_id: uuid.UUID,
    reversed_amount: int,
    fields: schemas.Reverse,
) -> posting.Movement:
    reversal = posting.TransactionType.REVERSAL
    if original is None:
        return posting.declined(
            reversal, "transaction_not_found", f"Transaction {original_id} does not exist."
        )
    if original.type in NOT_REVERSIBLE:
        return posting.declined(reversal, "not_reversible", f"A {original.type} cannot be reversed.")
    if original.type == posting.TransactionType.JOURNAL and fields.amount not in (None, original.amount):
        errors = [{"loc": ["body", "amount"], "msg": f"a journal is reversed whole only: {original.amount}"}]
        raise Problem(422, "validation_error", "The request is not valid.", errors=errors)
    left = original.amount - reversed_amount
    if left == 0:
        detail = f"Transaction {original.id} has nothing left to reverse."
        return posting.declined(reversal, "reversal_exceeds_original", detail)
    # More than is left (or a part of the left a concurrent reversal takes first) is declined by
    # the posting core, which counts the reversals under the original's lock.
    amount = left if fields.amount is None else fields.amount
    return posting.reversal(original, amount, fields.reference, metadata_json(fields.metadata))
