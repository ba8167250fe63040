"""GET /v1/events: the event feed, in commit order, by cursor (ledger/events.py)."""

from __future__ import annotations

from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Query, Request, Response

from wallet.api import schemas
from wallet.api.deps import Admin, connection
from wallet.api.problems import PROBLEM_MEDIA_TYPE, Problem
from wallet.ledger import events

router = APIRouter(prefix="/v1")

PAGE_SIZE_DEFAULT = 100


def _problems(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {
        status: {"model": schemas.ProblemDocument, "content": {PROBLEM_MEDIA_TYPE: {}}} for status in statuses
    }


@router.get("/events", response_model=schemas.EventPage, responses=_problems(401, 403, 422, 503))
async def list_events(
    request: Request,
    _: Admin,
    after: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=events.CURSOR_LENGTH_MAX,
            description="A next_cursor this feed returned; none: from the oldest event kept.",
        ),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=events.PAGE_SIZE_MAX)] = PAGE_SIZE_DEFAULT,
) -> Response:
    """Every posted transaction and every change of a hold's status, in commit order. A feed
    has no end: follow next_cursor (never null) to see each event once."""
    position = 0
    if after is not None:
        try:
            position = events.decode_cursor(after)
        except events.CursorInvalid as error:
            raise Problem(
                422,
                "validation_error",
                "The request is not valid.",
                errors=[{"loc": ["query", "after"], "msg": str(error)}],
            ) from None
    async with connection(request) as database:
        found = await events.events_after(database, position, limit)
    next_position = found[-1].position if found else position
    data = [orjson.Fragment(event.to_json()) for event in found]
    body = orjson.dumps({"data": data, "next_cursor": events.encode_cursor(next_position)})
    return Response(body, media_type="application/json")
