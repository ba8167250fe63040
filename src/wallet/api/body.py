"""Reading a JSON request body: media type, size limit, strict parsing, then the pydantic model."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, TypeVar

from fastapi import Request
from pydantic import BaseModel, ValidationError

from wallet.api.problems import Problem
from wallet.idempotency import canonical_json

BODY_SIZE_MAX = 64 * 1024
# POST /v1/batches: up to BATCH_SIZE_MAX items, which do not fit in 64 KiB (a spend item takes
# about 120 bytes); 1 MiB holds a thousand items of about 1 KiB each.
BODY_SIZE_MAX_BATCH = 1024 * 1024
ModelT = TypeVar("ModelT", bound=BaseModel)


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


async def read_body(request: Request, size_max: int = BODY_SIZE_MAX) -> bytes:
    too_large = Problem(413, "payload_too_large", f"Request bodies are limited to {size_max} bytes.")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > size_max:
        raise too_large
    chunks = bytearray()
    async for chunk in request.stream():
        chunks += chunk
        if len(chunks) > size_max:
            raise too_large
    return bytes(chunks)


@dataclass(frozen=True, slots=True)
class JsonBody:
    value: Any
    canonical: bytes  # canonical_json(value): what an idempotency fingerprint hashes


async def read_json(request: Request, size_max: int = BODY_SIZE_MAX) -> JsonBody:
    """The parsed JSON body. Rejects other media types (415), big bodies (413) and anything that
    is not strict UTF-8 JSON (400): NaN, Infinity, lone surrogates, nesting too deep."""
    if _media_type(request) != "application/json":
        raise Problem(415, "unsupported_media_type", "Send the request body as application/json.")
    raw = await read_body(request, size_max)
    try:
        value = json.loads(raw.decode("utf-8"), parse_constant=_reject_constant)
        canonical = canonical_json(value)  # also: every string must encode as UTF-8
    except (ValueError, UnicodeError, RecursionError) as error:
        raise Problem(400, "malformed_json", f"The request body is not valid JSON: {error}") from None
    return JsonBody(value, canonical)


def validate(model: type[ModelT], value: Any) -> ModelT:
    try:
        return model.model_validate(value)
    except ValidationError as error:
        raise validation_problem(error) from None


def validation_problem(error: ValidationError, location: str = "body") -> Problem:
    errors = [
        {"loc": [location, *error_detail["loc"]], "msg": error_detail["msg"]}
        for error_detail in error.errors(include_url=False, include_input=False)
    ]
    return Problem(422, "validation_error", "The request is not valid.", errors=errors)
