"""The HTTP routes of API v1. Thin: parse, call the ledger, render."""

from __future__ import annotations

import json
import uuid
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel

from wallet import metrics
from wallet.api import schemas
from wallet.api.body import JsonBody, read_json, validate
from wallet.api.deps import Admin, IdempotencyKey, Reader, WalletId, Writer, connection
from wallet.api.problems import PROBLEM_MEDIA_TYPE, Problem
from wallet.idempotency import canonical_json, fingerprint
from wallet.keys import ApiKey
from wallet.ledger import accounts, balances, history, posting, verify
from wallet.ledger.errors import LedgerError
from wallet.ledger.limits import PAGE_SIZE_DEFAULT, PAGE_SIZE_MAX

router = APIRouter(prefix="/v1")

JSON_MEDIA_TYPE = "application/json"


def _problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {
        status: {"model": schemas.ProblemDocument, "content": {PROBLEM_MEDIA_TYPE: {}}} for status in statuses
    }


def _json(document: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(document), status_code=status, media_type=JSON_MEDIA_TYPE)


def _body_schema(model: type[BaseModel]) -> dict[str, Any]:
    reference = {"$ref": f"#/components/schemas/{model.__name__}"}
    return {"requestBody": {"required": True, "content": {JSON_MEDIA_TYPE: {"schema": reference}}}}


READ_PROBLEMS = _problems(401, 403, 422, 503)
WRITE_PROBLEMS = _problems(400, 401, 403, 413, 415, 422, 503)
MOVEMENT_PROBLEMS = _problems(400, 401, 403, 404, 409, 413, 415, 422, 503)


@router.get("/assets", response_model=schemas.AssetList, responses=READ_PROBLEMS)
async def list_assets(request: Request, _: Reader) -> Response:
    async with connection(request) as database:
        assets = await accounts.list_assets(database)
    return _json({"data": [asset.to_document() for asset in assets]})


@router.post(
    "/assets",
    status_code=201,
    response_model=schemas.Asset,
    responses={200: {"model": schemas.Asset}, **_problems(409), **WRITE_PROBLEMS},
    openapi_extra=_body_schema(schemas.AssetCreate),
)
async def create_asset(request: Request, _: Admin) -> Response:
    body = validate(schemas.AssetCreate, (await read_json(request)).value)
    async with connection(request) as database:
        asset, created = await accounts.create_asset(database, body.code, body.name)
    return _json(asset.to_document(), 201 if created else 200)


@router.post(
    "/wallets",
    status_code=201,
    response_model=schemas.Wallet,
    responses={200: {"model": schemas.Wallet}, **_problems(404), **WRITE_PROBLEMS},
    openapi_extra=_body_schema(schemas.WalletCreate),
)
async def create_wallet(request: Request, _: Writer) -> Response:
    body = validate(schemas.WalletCreate, (await read_json(request)).value)
    async with connection(request) as database:
        wallet, created = await accounts.create_wallet(database, body.owner_id, body.asset)
    return _json(wallet.to_document(), 201 if created else 200)


@router.get("/wallets", response_model=schemas.WalletList, responses=READ_PROBLEMS)
async def list_wallets(
    request: Request,
    _: Reader,
    owner_id: Annotated[str, Query(min_length=1, max_length=128, pattern=schemas.TEXT_PATTERN)],
) -> Response:
    async with connection(request) as database:
        wallets = await accounts.list_wallets(database, owner_id)
    return _json({"data": [wallet.to_document() for wallet in wallets]})


@router.get(
    "/wallets/{wallet_id}", response_model=schemas.Wallet, responses={**_problems(404), **READ_PROBLEMS}
)
async def get_wallet(request: Request, _: Reader, wallet_id: WalletId) -> Response:
    async with connection(request) as database:
        wallet = await accounts.get_wallet(database, wallet_id)
    return _json(wallet.to_document())


async def _move(
    request: Request, api_key_id: uuid.UUID, key: str, movement: posting.Movement, body: JsonBody
) -> Response:
    request_fingerprint = fingerprint(request.method, request.url.path, body.canonical)
    async with connection(request) as database:
        try:
            outcome = await posting.post(database, movement, api_key_id, key, request_fingerprint)
        except LedgerError as error:
            metrics.record_ledger_operation(movement.kind.value, error.code)
            raise
    metrics.record_posting(movement.kind.value, outcome)
    headers = {"Idempotent-Replayed": "true"} if outcome.replayed else None
    media_type = JSON_MEDIA_TYPE if outcome.status < 400 else PROBLEM_MEDIA_TYPE
    return Response(outcome.body, status_code=outcome.status, media_type=media_type, headers=headers)


def _metadata_json(metadata: dict[str, Any] | None) -> str | None:
    return None if metadata is None else canonical_json(metadata).decode()


async def _wallet_movement(
    request: Request, caller: ApiKey, key: str, wallet_id: uuid.UUID, kind: posting.Kind
) -> Response:
    raw = await read_json(request)
    body = validate(schemas.MovementRequest, raw.value)
    credited = kind is not posting.Kind.SPEND
    movement = posting.Movement(
        kind=kind,
        source_wallet_id=None if credited else wallet_id,
        target_wallet_id=wallet_id if credited else None,
        amount=body.amount,
        reference=body.reference,
        metadata_json=_metadata_json(body.metadata),
    )
    return await _move(request, caller.id, key, movement, raw)


# Documented here rather than by the dependency that reads it (deps.idempotency_key), whose own
# checks answer 400 as API.md asks (a declared constraint would make FastAPI answer 422).
IDEMPOTENCY_KEY_PARAMETER = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": True,
    "description": "1-255 printable ASCII characters; a retry with the same key replays. "
    "Missing: 400 idempotency_key_missing; malformed: 400 idempotency_key_invalid.",
    "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[\\x20-\\x7e]+$"},
}


def _movement_extra(model: type[BaseModel]) -> dict[str, Any]:
    return {**_body_schema(model), "parameters": [IDEMPOTENCY_KEY_PARAMETER]}


MOVEMENT_ROUTE: dict[str, Any] = {
    "status_code": 201,
    "response_model": schemas.Transaction,
    "responses": {200: {"model": schemas.Transaction, "description": "Never sent."}, **MOVEMENT_PROBLEMS},
    "openapi_extra": _movement_extra(schemas.MovementRequest),
}


@router.post("/wallets/{wallet_id}/topup", **MOVEMENT_ROUTE)
async def topup(request: Request, caller: Writer, key: IdempotencyKey, wallet_id: WalletId) -> Response:
    """Credit the wallet, debit the asset's treasury account."""
    return await _wallet_movement(request, caller, key, wallet_id, posting.Kind.TOPUP)


@router.post("/wallets/{wallet_id}/bonus", **MOVEMENT_ROUTE)
async def bonus(request: Request, caller: Writer, key: IdempotencyKey, wallet_id: WalletId) -> Response:
    """Credit the wallet, debit the asset's bonus account."""
    return await _wallet_movement(request, caller, key, wallet_id, posting.Kind.BONUS)


@router.post("/wallets/{wallet_id}/spend", **MOVEMENT_ROUTE)
async def spend(request: Request, caller: Writer, key: IdempotencyKey, wallet_id: WalletId) -> Response:
    """Debit the wallet, credit the asset's revenue account; 409 when the balance is short."""
    return await _wallet_movement(request, caller, key, wallet_id, posting.Kind.SPEND)


@router.post("/transfers", **{**MOVEMENT_ROUTE, "openapi_extra": _movement_extra(schemas.TransferRequest)})
async def transfer(request: Request, caller: Writer, key: IdempotencyKey) -> Response:
    """Move an amount between two wallets of the same asset."""
    raw = await read_json(request)
    body = validate(schemas.TransferRequest, raw.value)
    if body.from_wallet_id == body.to_wallet_id:
        raise Problem(422, "same_wallet", "A transfer needs two different wallets.")
    movement = posting.Movement(
        kind=posting.Kind.TRANSFER,
        source_wallet_id=body.from_wallet_id,
        target_wallet_id=body.to_wallet_id,
        amount=body.amount,
        reference=body.reference,
        metadata_json=_metadata_json(body.metadata),
    )
    return await _move(request, caller.id, key, movement, raw)


@router.get(
    "/wallets/{wallet_id}/transactions",
    response_model=schemas.TransactionPage,
    responses={**_problems(404), **READ_PROBLEMS},
)
async def wallet_transactions(
    request: Request,
    _: Reader,
    wallet_id: WalletId,
    limit: Annotated[int, Query(ge=1, le=PAGE_SIZE_MAX)] = PAGE_SIZE_DEFAULT,
    cursor: Annotated[str | None, Query(min_length=1, max_length=history.CURSOR_LENGTH_MAX)] = None,
) -> Response:
    if cursor is not None:
        try:
            history.decode_cursor(cursor)
        except history.CursorInvalid as error:
            raise Problem(
                422,
                "validation_error",
                "The request is not valid.",
                errors=[{"loc": ["query", "cursor"], "msg": str(error)}],
            ) from None
    async with connection(request) as database:
        page = await history.wallet_history(database, wallet_id, limit, cursor)
    next_cursor = orjson.dumps(page.next_cursor)
    body = b'{"data":[' + ",".join(page.documents).encode() + b'],"next_cursor":' + next_cursor + b"}"
    return Response(body, media_type=JSON_MEDIA_TYPE)


@router.get(
    "/transactions/{transaction_id}",
    response_model=schemas.Transaction,
    responses={**_problems(404), **READ_PROBLEMS},
)
async def get_transaction(request: Request, _: Reader, transaction_id: str) -> Response:
    try:
        parsed = uuid.UUID(transaction_id)
    except ValueError:
        raise Problem(
            404, "transaction_not_found", f"Transaction {transaction_id[:64]!r} does not exist."
        ) from None
    async with connection(request) as database:
        document = await history.get_transaction(database, parsed)
    return Response(document, media_type=JSON_MEDIA_TYPE)


@router.get("/ledger/verify", response_model=schemas.Verification, responses=READ_PROBLEMS)
async def ledger_verify(request: Request, _: Admin) -> Response:
    async with connection(request) as database:
        result = await verify.verify(database)
    return _json(result.to_document())


@router.get("/ledger/balances", response_model=schemas.LedgerBalances, responses=READ_PROBLEMS)
async def ledger_balances(request: Request, _: Admin) -> Response:
    """Per asset: the user wallets' total and the treasury, bonus and revenue balances."""
    async with connection(request) as database:
        totals = await balances.asset_balances(database)
    # The standard library's encoder: a sum of many wallets may pass orjson's 64-bit integer limit.
    document = {"data": [item.to_document() for item in totals]}
    return Response(json.dumps(document, separators=(",", ":")), media_type=JSON_MEDIA_TYPE)
