"""Balance at a time and statements over HTTP: GET /v1/wallets/{id}/balance?at= and
GET /v1/wallets/{id}/statement?from=&to= (JSON, or CSV with `Accept: text/csv`)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query, Request, Response

from wallet.api import schemas
from wallet.api.deps import Reader, WalletId, connection
from wallet.api.problems import PROBLEM_MEDIA_TYPE, Problem
from wallet.ledger import statements
from wallet.ledger.transactions import timestamp_text

router = APIRouter(prefix="/v1")

JSON_MEDIA_TYPE = "application/json"
CSV_MEDIA_TYPE = "text/csv"
VARY = {"Vary": "Accept"}  # a statement's representation depends on the Accept header
PROBLEMS: dict[int | str, dict[str, Any]] = {
    status: {"model": schemas.ProblemDocument, "content": {PROBLEM_MEDIA_TYPE: {}}}
    for status in (401, 403, 404, 422, 503)
}


def _invalid(name: str, message: str) -> Problem:
    errors = [{"loc": ["query", name], "msg": message}]
    return Problem(422, "validation_error", "The request is not valid.", errors=errors)


def _media_ranges(accept: str) -> list[tuple[str, float]]:
    """The media ranges of an Accept header with their weights; a range with a malformed weight
    is left out."""
    ranges = []
    for part in accept.split(","):
        media_range, *parameters = part.split(";")
        weight = 1.0
        for parameter in parameters:
            name, _, value = parameter.partition("=")
            if name.strip().lower() == "q":
                try:
                    weight = float(value.strip())
                except ValueError:
                    weight = -1.0
        if media_range.strip() and 0.0 <= weight <= 1.0:
            ranges.append((media_range.strip().lower(), weight))
    return ranges


def _preference(ranges: list[tuple[str, float]], media_type: str) -> tuple[float, int]:
    """How much the client wants `media_type`: the weight of the most specific range that
    matches it (RFC 9110 12.5.1), and that specificity (2 the type itself, 1 `type/*`, 0 `*/*`);
    (0, -1) when none matches."""
    kind = media_type.split("/")[0]
    best = (0.0, -1)
    for media_range, weight in ranges:
        specificity = {media_type: 2, f"{kind}/*": 1, "*/*": 0}.get(media_range)
        if specificity is not None and specificity > best[1]:
            best = (weight, specificity)
    return best


def wants_csv(accept: str | None) -> bool:
    """Whether the Accept header prefers text/csv to application/json. JSON when it does not say
    (no header, `*/*`, a tie, or types this API does not serve: no 406)."""
    if not accept:
        return False
    ranges = _media_ranges(accept)
    csv_weight, csv_specificity = _preference(ranges, CSV_MEDIA_TYPE)
    json_weight, json_specificity = _preference(ranges, JSON_MEDIA_TYPE)
    return csv_weight > 0 and (csv_weight, csv_specificity) > (json_weight, json_specificity)


@router.get(
    "/wallets/{wallet_id}/balance",
    response_model=schemas.BalanceAt,
    responses=PROBLEMS,
)
async def wallet_balance_at(
    request: Request,
    _: Reader,
    wallet_id: WalletId,
    at: Annotated[schemas.Instant, Query(description="RFC 3339 with an offset; not in the future.")],
) -> Response:
    """The wallet's ledger balance after every transaction at or before `at` (0 before the
    first): one index lookup, whatever the depth of the wallet's history."""
    async with connection(request) as database:
        try:
            found = await statements.balance_at(database, wallet_id, at)
        except statements.TimeInFuture:
            raise _invalid("at", "must not be in the future") from None
    return Response(orjson.dumps(found.to_document()), media_type=JSON_MEDIA_TYPE)


@router.get(
    "/wallets/{wallet_id}/statement",
    response_model=schemas.Statement,
    responses={
        200: {"content": {CSV_MEDIA_TYPE: {"schema": {"type": "string"}}}},
        **PROBLEMS,
    },
)
async def wallet_statement(
    request: Request,
    _: Reader,
    wallet_id: WalletId,
    from_: Annotated[
        schemas.Instant,
        Query(alias="from", description="RFC 3339 with an offset: transactions at or after it."),
    ],
    to: Annotated[
        schemas.Instant | None,
        Query(description="RFC 3339 with an offset, later than `from`: before it (default: now)."),
    ] = None,
) -> Response:
    """The wallet's transactions at or after `from` and before `to`, oldest first, with the
    balance before them (`opening_balance`), after them (`closing_balance`) and the sums of the
    wallet's credit and debit entries among them: `opening + credits - debits = closing`. At
    most 10,000 transactions (more: 422 `statement_too_large`). With `Accept: text/csv`, a CSV of
    one row per entry of the wallet: `created_at,transaction_id,type,direction,amount,
    balance_after,reference`, under a header row."""
    if to is not None and to <= from_:
        raise _invalid("to", "must be later than from")
    async with connection(request) as database:
        try:
            found = await statements.statement(database, wallet_id, from_, to)
        except statements.WindowInvalid:
            raise _invalid("from", "must be earlier than now (the default to)") from None
    if wants_csv(request.headers.get("accept")):
        return Response(
            found.to_csv().encode(),
            media_type=f"{CSV_MEDIA_TYPE}; charset=utf-8",
            headers={**VARY, "Content-Disposition": f'attachment; filename="{_file_name(found)}"'},
        )
    return Response(found.to_json(), media_type=JSON_MEDIA_TYPE, headers=VARY)


def _file_name(found: statements.Statement) -> str:
    """statement-<wallet id>-<from>-<to>.csv, the times in UTC to the second (no colons)."""

    def compact(moment: datetime) -> str:
        return timestamp_text(moment)[:19].replace("-", "").replace(":", "") + "Z"

    return f"statement-{found.wallet_id}-{compact(found.start)}-{compact(found.end)}.csv"
