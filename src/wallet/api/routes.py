"""The HTTP routes of API v1 that move no money (those are in api/movements.py). Thin: parse,
call the ledger, render."""

from __future__ import annotations

import json
import uuid
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel

from wallet.api import schemas
from wallet.api.body import read_json, validate
from wallet.api.deps import Admin, Reader, WalletId, Writer, connection
from wallet.api.problems import PROBLEM_MEDIA_TYPE, Problem
from wallet.ledger import accounts, balances, history, lots, transactions, verify
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


@router.get(
    "/wallets/{wallet_id}/lots", response_model=schemas.LotList, responses={**_problems(404), **READ_PROBLEMS}
)
async def wallet_lots(
    request: Request,
    _: Reader,
    wallet_id: WalletId,
    limit: Annotated[
        int, Query(ge=1, le=lots.LOTS_MAX, description="The soonest this many.")
    ] = lots.LOTS_MAX,
) -> Response:
    """The wallet's unexpired credit lots with something remaining (neither spent nor held),
    soonest-expiring first: the order debits take from them."""
    async with connection(request) as database:
        found = await lots.wallet_lots(database, wallet_id, limit)
    return _json({"data": [lot.to_document() for lot in found]})


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
    data = [orjson.Fragment(record.to_json()) for record in page.transactions]
    return _json({"data": data, "next_cursor": page.next_cursor})


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
        record = await transactions.get_transaction(database, parsed)
    return Response(record.to_json(), media_type=JSON_MEDIA_TYPE)


@router.get("/ledger/verify", response_model=schemas.Verification, responses=READ_PROBLEMS)
async def ledger_verify(
    request: Request,
    _: Admin,
    deep: Annotated[
        bool, Query(description="Also recompute every account's hash chain (reads every entry).")
    ] = False,
) -> Response:
    """The ledger's invariants and its own bookkeeping, on one snapshot."""
    async with connection(request) as database:
        result = await verify.verify(database, deep=deep)
    return _json(result.to_document())


@router.get("/ledger/balances", response_model=schemas.LedgerBalances, responses=READ_PROBLEMS)
async def ledger_balances(request: Request, _: Admin) -> Response:
    """Per asset: the user wallets' total and the treasury, bonus and revenue balances."""
    async with connection(request) as database:
        totals = await balances.asset_balances(database)
    # The standard library's encoder: a sum of many wallets may pass orjson's 64-bit integer limit.
    document = {"data": [item.to_document() for item in totals]}
    return Response(json.dumps(document, separators=(",", ":")), media_type=JSON_MEDIA_TYPE)
