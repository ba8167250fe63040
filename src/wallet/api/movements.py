"""The money-moving routes: top-up, bonus, spend, transfer, journal, and batches of them.

Each builds a `posting.Movement` and hands it, with the caller's API key and Idempotency-Key and
the request's fingerprint, to the process's group commit (or, for a batch, straight to the
posting core); the outcome becomes the response. The checks run in the order the API promises:
the API key (401/403), the Idempotency-Key (400), the wallet id in the path (404), the body
(415/413/400/422), then the ledger.

These routes take only the request: no FastAPI dependencies to solve on the hottest path. The
OpenAPI schema still documents their parameters and bodies (`openapi_extra`).
"""

from __future__ import annotations

import uuid
from typing import Any

import orjson
from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, ValidationError

from wallet import metrics
from wallet.api import schemas
from wallet.api.body import BODY_SIZE_MAX_BATCH, read_json, validate, validation_problem
from wallet.api.deps import authorise, connection, idempotency_key_of, wallet_id_of
from wallet.api.problems import PROBLEM_MEDIA_TYPE, Problem, problem_document, status_of
from wallet.idempotency import canonical_json, check_key, fingerprint
from wallet.keys import ApiKey, Scope
from wallet.ledger import posting
from wallet.ledger.group_commit import GroupCommit, post_each_on_failure
from wallet.ledger.limits import BATCH_SIZE_MAX, GROUP_SIZE_MAX

router = APIRouter(prefix="/v1")

JSON_MEDIA_TYPE = "application/json"
REPLAYED_HEADERS = {"Idempotent-Replayed": "true"}
# A batch goes to the posting core in chunks of this many items, each its own transaction: a
# chunk holds its wallets' locks until it commits.
BATCH_CHUNK_SIZE = 250
REUSED_DETAIL = "This Idempotency-Key was used for a different request."


def problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {
        status: {"model": schemas.ProblemDocument, "content": {PROBLEM_MEDIA_TYPE: {}}} for status in statuses
    }


# Documented here rather than read by a dependency, whose own checks answer 400 as API.md asks
# (a declared constraint would make FastAPI answer 422).
IDEMPOTENCY_KEY_PARAMETER = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": True,
    "description": "1-255 printable ASCII characters; a retry with the same key replays. "
    "Missing: 400 idempotency_key_missing; malformed: 400 idempotency_key_invalid.",
    "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[\\x20-\\x7e]+$"},
}
MOVEMENT_PROBLEMS = problems(400, 401, 403, 404, 409, 413, 415, 422, 503)


def movement_route(model: type[BaseModel], *, idempotent: bool = True) -> dict[str, Any]:
    reference = {"$ref": f"#/components/schemas/{model.__name__}"}
    extra: dict[str, Any] = {
        "requestBody": {"required": True, "content": {JSON_MEDIA_TYPE: {"schema": reference}}}
    }
    if idempotent:
        extra["parameters"] = [IDEMPOTENCY_KEY_PARAMETER]
    return {
        "status_code": 201,
        "response_model": schemas.Transaction,
        "responses": {200: {"model": schemas.Transaction, "description": "Never sent."}, **MOVEMENT_PROBLEMS},
        "openapi_extra": extra,
    }


def metadata_json(metadata: dict[str, Any] | None) -> str | None:
    return None if metadata is None else canonical_json(metadata).decode()


def _committer(request: Request) -> GroupCommit:
    committer = request.app.state.group_commit
    assert isinstance(committer, GroupCommit)
    return committer


def outcome_response(outcome: posting.Outcome) -> tuple[int, bytes]:
    """The status and body of a posting's outcome."""
    if outcome.result is posting.Result.POSTED:
        assert outcome.transaction is not None
        return 201, outcome.transaction.to_json()
    if outcome.result is posting.Result.DECLINED:
        assert outcome.decline is not None
        status = status_of(outcome.decline.code)
        return status, problem_document(status, outcome.decline.code, outcome.decline.detail)
    if outcome.result is posting.Result.REUSED:
        return 422, problem_document(422, "idempotency_key_reused", REUSED_DETAIL)
    assert outcome.stored_status is not None and outcome.stored_body is not None
    return outcome.stored_status, outcome.stored_body.encode()


def _record(movement_type: str, outcome: posting.Outcome, status: int) -> None:
    if outcome.result is posting.Result.DECLINED:
        assert outcome.decline is not None
        label = outcome.decline.code
    elif outcome.result is posting.Result.REUSED:
        label = "idempotency_key_reused"
    else:
        label = "created"
    metrics.record_posting(movement_type, label, outcome.replayed, status)


async def post_movement(
    request: Request, movement: posting.Movement, caller: ApiKey, key: str, canonical: bytes
) -> Response:
    request_fingerprint = fingerprint(request.method, request.url.path, canonical)
    outcome = await _committer(request).post(posting.Request(caller.id, key, request_fingerprint, movement))
    status, body = outcome_response(outcome)
    _record(movement.type.value, outcome, status)
    return Response(
        body,
        status_code=status,
        media_type=JSON_MEDIA_TYPE if status < 400 else PROBLEM_MEDIA_TYPE,
        headers=REPLAYED_HEADERS if outcome.replayed else None,
    )


def _wallet_movement_of(op: str, wallet_id: uuid.UUID, fields: schemas.MovementRequest) -> posting.Movement:
    """The movement of a top-up, bonus or spend request (single or batch item)."""
    reference, metadata = fields.reference, metadata_json(fields.metadata)
    if op == "spend":
        return posting.spend(wallet_id, fields.amount, reference, metadata)
    assert isinstance(fields, schemas.CreditRequest)
    build = posting.topup if op == "topup" else posting.bonus
    return build(wallet_id, fields.amount, reference, metadata, fields.expires_at)


async def _wallet_movement(request: Request, wallet_id: str, op: str) -> Response:
    caller = await authorise(request, Scope.WRITE)
    key = idempotency_key_of(request)
    wallet = wallet_id_of(wallet_id)
    body = await read_json(request)
    model = schemas.MovementRequest if op == "spend" else schemas.CreditRequest
    movement = _wallet_movement_of(op, wallet, validate(model, body.value))
    return await post_movement(request, movement, caller, key, body.canonical)


@router.post("/wallets/{wallet_id}/topup", **movement_route(schemas.CreditRequest))
async def topup(request: Request, wallet_id: str) -> Response:
    """Credit the wallet, debit the asset's treasury account; with `expires_at`, the credit
    becomes a lot that expires then."""
    return await _wallet_movement(request, wallet_id, "topup")


@router.post("/wallets/{wallet_id}/bonus", **movement_route(schemas.CreditRequest))
async def bonus(request: Request, wallet_id: str) -> Response:
    """Credit the wallet, debit the asset's bonus account; with `expires_at`, the credit becomes
    a lot that expires then."""
    return await _wallet_movement(request, wallet_id, "bonus")


@router.post("/wallets/{wallet_id}/spend", **movement_route(schemas.MovementRequest))
async def spend(request: Request, wallet_id: str) -> Response:
    """Debit the wallet (its soonest-expiring lots first), credit the asset's revenue account;
    409 when it has too little available."""
    return await _wallet_movement(request, wallet_id, "spend")


def _transfer(fields: schemas.TransferRequest) -> posting.Movement:
    if fields.from_wallet_id == fields.to_wallet_id:
        raise Problem(422, "same_wallet", "A transfer needs two different wallets.")
    return posting.transfer(
        fields.from_wallet_id,
        fields.to_wallet_id,
        fields.amount,
        fields.reference,
        metadata_json(fields.metadata),
    )


@router.post("/transfers", **movement_route(schemas.TransferRequest))
async def transfer(request: Request) -> Response:
    """Move an amount between two wallets of the same asset."""
    caller = await authorise(request, Scope.WRITE)
    key = idempotency_key_of(request)
    body = await read_json(request)
    movement = _transfer(validate(schemas.TransferRequest, body.value))
    return await post_movement(request, movement, caller, key, body.canonical)


def _account(side: uuid.UUID | str) -> posting.Account:
    return side if isinstance(side, uuid.UUID) else posting.SystemAccount(side)


def _journal(fields: schemas.JournalRequest) -> posting.Movement:
    postings = [posting.Posting(_account(p.from_), _account(p.to), p.amount) for p in fields.postings]
    return posting.journal(fields.asset, postings, fields.reference, metadata_json(fields.metadata))


@router.post("/journal", **movement_route(schemas.JournalRequest))
async def journal(request: Request) -> Response:
    """Post many postings of one asset as one transaction: all of them, or none."""
    caller = await authorise(request, Scope.WRITE)
    key = idempotency_key_of(request)
    body = await read_json(request)
    movement = _journal(validate(schemas.JournalRequest, body.value))
    return await post_movement(request, movement, caller, key, body.canonical)


# --- batches -----------------------------------------------------------------------------


def _item_problem(
    index: int, error: ValidationError | Exception | str, location: tuple[Any, ...] = ()
) -> Problem:
    """The batch's 422 for its item `index`, with every error located under ["body","items",index]."""
    if isinstance(error, ValidationError):
        problem = validation_problem(error, "body")
        assert problem.errors is not None
        errors = [
            {"loc": ["body", "items", index, *item["loc"][1:]], "msg": item["msg"]} for item in problem.errors
        ]
    else:
        errors = [{"loc": ["body", "items", index, *location], "msg": str(error)}]
    return Problem(422, "validation_error", "The request is not valid.", errors=errors)


def _batch_item(index: int, item: Any, caller: ApiKey) -> tuple[posting.Request | None, Problem | None]:
    """The posting request a batch item stands for, as its single request would make it (same
    path, same canonical body, same fingerprint), or the answer its single request gets before
    the ledger (422 same_wallet). Raises the batch's 422 when the item is malformed."""
    if not isinstance(item, dict):
        raise _item_problem(index, "an item must be a JSON object")
    op = item.get("op")
    model = schemas.BATCH_ITEM_MODELS.get(op) if isinstance(op, str) else None
    if model is None:
        raise _item_problem(index, f"op must be one of {', '.join(schemas.BATCH_ITEM_MODELS)}", ("op",))
    try:
        fields: Any = model.model_validate(item)
        key = check_key(fields.idempotency_key)
    except ValidationError as error:
        raise _item_problem(index, error) from None
    except ValueError as error:
        raise _item_problem(index, error, ("idempotency_key",)) from None
    single = {
        name: value for name, value in item.items() if name not in ("op", "idempotency_key", "wallet_id")
    }
    canonical = canonical_json(single)
    if isinstance(fields, schemas.BatchCreditItem | schemas.BatchSpendItem):
        path = f"/v1/wallets/{item['wallet_id']}/{fields.op}"
        movement = _wallet_movement_of(fields.op, fields.wallet_id, fields)
    elif isinstance(fields, schemas.BatchTransferItem):
        path = "/v1/transfers"
        try:
            movement = _transfer(fields)
        except Problem as problem:
            return None, problem
    else:
        path = "/v1/journal"
        movement = _journal(fields)
    return posting.Request(caller.id, key, fingerprint("POST", path, canonical), movement), None


def _batch_requests(value: Any, caller: ApiKey) -> list[tuple[posting.Request | None, Problem | None]]:
    if not isinstance(value, dict) or set(value) != {"items"} or not isinstance(value["items"], list):
        raise Problem(
            422,
            "validation_error",
            "The request is not valid.",
            errors=[{"loc": ["body"], "msg": 'the body must be {"items": [...]}'}],
        )
    items = value["items"]
    if not 1 <= len(items) <= BATCH_SIZE_MAX:
        raise Problem(
            422,
            "validation_error",
            "The request is not valid.",
            errors=[{"loc": ["body", "items"], "msg": f"a batch has 1 to {BATCH_SIZE_MAX} items"}],
        )
    parsed = [_batch_item(index, item, caller) for index, item in enumerate(items)]
    seen: set[str] = set()
    for index, (request, _) in enumerate(parsed):
        key = request.idempotency_key if request is not None else check_key(items[index]["idempotency_key"])
        if key in seen:
            raise _item_problem(
                index, "another item of the batch has this idempotency_key", ("idempotency_key",)
            )
        seen.add(key)
    return parsed


@router.post(
    "/batches",
    status_code=200,
    response_model=schemas.BatchResponse,
    responses=problems(400, 401, 403, 413, 415, 422, 503),
    openapi_extra=movement_route(schemas.BatchRequest, idempotent=False)["openapi_extra"],
)
async def batches(request: Request) -> Response:
    """Many independent movements in one request; each item carries its own idempotency key."""
    caller = await authorise(request, Scope.WRITE)
    body = await read_json(request, BODY_SIZE_MAX_BATCH)
    parsed = _batch_requests(body.value, caller)
    requests = [item for item, _ in parsed if item is not None]
    outcomes: list[posting.Outcome | BaseException] = []
    async with connection(request) as database:
        for first in range(0, len(requests), BATCH_CHUNK_SIZE):
            chunk = requests[first : first + BATCH_CHUNK_SIZE]
            assert len(chunk) <= GROUP_SIZE_MAX
            outcomes += await post_each_on_failure(database, chunk, wait_for_locks=True)
    for outcome in outcomes:
        if isinstance(outcome, BaseException):
            raise outcome
    results = iter(outcomes)
    parts: list[bytes] = []
    for item, refused in parsed:
        if refused is not None:
            status, document = refused.status, problem_document(refused.status, refused.code, refused.detail)
            replayed = False
        else:
            assert item is not None
            outcome = next(results)
            assert isinstance(outcome, posting.Outcome)
            status, document = outcome_response(outcome)
            replayed = outcome.replayed
            _record(item.movement.type.value, outcome, status)
        parts.append(
            orjson.dumps({"status": status, "replayed": replayed, "body": orjson.Fragment(document)})
        )
    return Response(b'{"results":[' + b",".join(parts) + b"]}", media_type=JSON_MEDIA_TYPE)
