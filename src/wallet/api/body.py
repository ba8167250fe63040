"""Reading a JSON request body: media type, size limit, strict parsing, then the pydantic model."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar

from fastapi import Request
from pydantic import BaseModel, ValidationError

from wallet import _json
from wallet.api.problems import Problem
from wallet.idempotency import canonical_json

BODY_SIZE_MAX = 64 * 1024
# POST /v1/batches: up to BATCH_SIZE_MAX items, which do not fit in 64 KiB (a spend item takes
# about 120 bytes); 1 MiB holds a thousand items of about 1 KiB each.
BODY_SIZE_MAX_BATCH = 1024 * 1024
# A body nested deeper than this is not written out canonically (the standard library's encoder
# recurses once per level); no request schema accepts one, so validation refuses it first.
BODY_DEPTH_CANONICAL_MAX = 64
ModelT = TypeVar("ModelT", bound=BaseModel)


def _media_type_problem(request: Request) -> Problem | None:
    """415 unless there is exactly one Content-Type, application/json, with no charset or utf-8."""
    values = request.headers.getlist("content-type")
    if len(values) != 1:
        return Problem(415, "unsupported_media_type", "Send the request body as application/json.")
    media_type, *parameters = values[0].split(";")
    if media_type.strip().lower() != "application/json":
        return Problem(415, "unsupported_media_type", "Send the request body as application/json.")
    for parameter in parameters:
        name, _, value = parameter.partition("=")
        if name.strip().lower() == "charset" and value.strip().strip('"').lower() != "utf-8":
            return Problem(415, "unsupported_media_type", "Send JSON in UTF-8: charset=utf-8, or no charset.")
    return None


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
    # canonical_json(value), what an idempotency fingerprint hashes; None for a value nested
    # deeper than BODY_DEPTH_CANONICAL_MAX, which no schema accepts.
    canonical_or_none: bytes | None

    @property
    def canonical(self) -> bytes:
        assert self.canonical_or_none is not None, "a body nested too deep passed validation"
        return self.canonical_or_none


async def read_json(request: Request, size_max: int = BODY_SIZE_MAX) -> JsonBody:
    """The parsed JSON body. Rejects other media types and charsets (415), big bodies (413) and
    anything that is not strict UTF-8 JSON (400): NaN, Infinity, lone surrogates, an object with
    a repeated key. Nesting of any depth parses; the schemas refuse what is too deep (422)."""
    problem = _media_type_problem(request)
    if problem is not None:
        raise problem
    raw = await read_body(request, size_max)
    try:
        value = _json.loads(raw.decode("utf-8"))
        canonical = canonical_json(value) if _json.depth(value) <= BODY_DEPTH_CANONICAL_MAX else None
    except ValueError as error:  # JsonInvalid, UnicodeDecodeError; UnicodeEncodeError: a lone surrogate
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
