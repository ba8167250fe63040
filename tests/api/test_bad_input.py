"""Malformed and invalid requests: each gets its documented status and problem `code`, never a 500,
and leaves the ledger exactly as it was (balances, transactions, stored idempotency keys).

Money-moving requests rejected as malformed (400/413/415/422 validation) are not stored: a retry
with the same Idempotency-Key and a fixed body goes through."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from support import (
    Server,
    assert_ledger_ok,
    balance,
    fund_wallet,
    new_wallet,
    start_server,
    topup,
    wallet_command,
)
from wallet.ledger.limits import AMOUNT_MAX, BALANCE_MAX

PROBLEM_MEDIA_TYPE = "application/problem+json"
BODY_SIZE_MAX = 64 * 1024
FUNDED = 1000


# --- helpers -------------------------------------------------------------------------------------


def sql_value(database_url: str, query: str, *args: Any) -> Any:
    async def run() -> Any:
        connection = await asyncpg.connect(database_url, timeout=10)
        try:
            return await connection.fetchval(query, *args)
        finally:
            await connection.close()

    return asyncio.run(run())


@dataclass(frozen=True)
class LedgerSnapshot:
    balances: tuple[int, ...]
    wallet_transactions: int  # rows of `transaction` naming one of the wallets
    wallet_entries: int  # rows of `entry` on one of the wallets
    all_transactions: int  # tests run one at a time against the shared server
    idempotency_keys: int  # stored keys with the value the test sent


def snapshot(server: Server, client: httpx.Client, wallet_ids: tuple[str, ...], key: str) -> LedgerSnapshot:
    async def counts() -> tuple[int, int, int, int]:
        connection = await asyncpg.connect(server.database_url, timeout=10)
        try:
            ids = [uuid.UUID(wallet_id) for wallet_id in wallet_ids]
            row = await connection.fetchrow(
                """
                SELECT
                    (SELECT count(*) FROM transaction WHERE wallet_id = ANY($1::uuid[])) AS transactions,
                    (SELECT count(*) FROM entry WHERE account_id = ANY($1::uuid[])) AS wallet_entries,
                    (SELECT count(*) FROM transaction) AS all_transactions,
                    (SELECT count(*) FROM idempotency_key WHERE key = $2) AS idempotency_keys
                """,
                ids,
                key,
            )
            assert row is not None
            return row[0], row[1], row[2], row[3]
        finally:
            await connection.close()

    wallet_transactions, wallet_entries, all_transactions, idempotency_keys = asyncio.run(counts())
    return LedgerSnapshot(
        balances=tuple(balance(client, wallet_id) for wallet_id in wallet_ids),
        wallet_transactions=wallet_transactions,
        wallet_entries=wallet_entries,
        all_transactions=all_transactions,
        idempotency_keys=idempotency_keys,
    )


@contextmanager
def ledger_unchanged(
    server: Server, client: httpx.Client, *wallet_ids: str, key: str = ""
) -> Iterator[LedgerSnapshot]:
    before = snapshot(server, client, wallet_ids, key)
    yield before
    assert snapshot(server, client, wallet_ids, key) == before


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code < 500, response.text
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM_MEDIA_TYPE
    document: dict[str, Any] = response.json()
    assert document["code"] == code, document
    assert document["status"] == status
    assert {"type", "title", "detail"} <= document.keys()
    return document


def assert_validation_error(response: httpx.Response) -> list[dict[str, Any]]:
    document = assert_problem(response, 422, "validation_error")
    errors: list[dict[str, Any]] = document["errors"]
    assert isinstance(errors, list) and errors, document
    for error in errors:
        assert isinstance(error["loc"], list) and error["loc"], error
        assert isinstance(error["msg"], str) and error["msg"], error
    return errors


@dataclass(frozen=True)
class Wallets:
    """A GOLD wallet holding FUNDED and an empty GOLD wallet, made for one test."""

    funded: str
    empty: str


@pytest.fixture
def wallets(client: httpx.Client) -> Wallets:
    funded = new_wallet(client)
    assert topup(client, funded, FUNDED).status_code == 201
    return Wallets(funded=funded, empty=new_wallet(client))


MOVEMENT_KINDS = ["topup", "bonus", "spend", "transfer"]


def movement(kind: str, wallets: Wallets) -> tuple[str, dict[str, Any]]:
    """The path of a money movement on the test's wallets and the body fields besides `amount`."""
    if kind == "transfer":
        return "/v1/transfers", {"from_wallet_id": wallets.funded, "to_wallet_id": wallets.empty}
    return f"/v1/wallets/{wallets.funded}/{kind}", {}


def with_amount(fields: dict[str, Any], amount_json: str | None) -> bytes:
    """A JSON object of `fields` plus `"amount": <amount_json>` written verbatim (None: no amount)."""
    members = [json.dumps(fields)[1:-1]] if fields else []
    if amount_json is not None:
        members.append(f'"amount": {amount_json}')
    return ("{" + ", ".join(members) + "}").encode()


def post_json(
    client: httpx.Client, path: str, content: bytes, key: str | bytes | None, **headers: str
) -> httpx.Response:
    all_headers: dict[str, str | bytes] = {"Content-Type": "application/json", **headers}
    if key is not None:
        all_headers["Idempotency-Key"] = key
    encoded = [
        (name.encode(), value if isinstance(value, bytes) else value.encode())
        for name, value in all_headers.items()
    ]
    return client.post(path, content=content, headers=encoded)


def assert_fixed_retry_goes_through(client: httpx.Client, kind: str, wallets: Wallets, key: str) -> None:
    """The rejected request was not stored: the same key with a valid body posts once."""
    path, fields = movement(kind, wallets)
    retried = client.post(path, json={**fields, "amount": 7}, headers={"Idempotency-Key": key})
    assert retried.status_code == 201, retried.text
    assert "Idempotent-Replayed" not in retried.headers
    assert retried.json()["amount"] == 7


# --- amounts -------------------------------------------------------------------------------------

REJECTED_AMOUNTS = [
    pytest.param("10.5", id="fraction-10.5"),
    pytest.param("10.0", id="float-10.0"),
    pytest.param('"10"', id="string-10"),
    pytest.param("true", id="true"),
    pytest.param("null", id="null"),
    pytest.param("0", id="zero"),
    pytest.param("-5", id="negative-5"),
    pytest.param("1e30", id="exponent-1e30"),
    pytest.param("1e2", id="exponent-1e2"),
    pytest.param(None, id="missing"),
    pytest.param(str(AMOUNT_MAX + 1), id="10^15+1"),
    pytest.param("1" + "0" * 39, id="40-digits"),
    pytest.param("[10]", id="list"),
    pytest.param('{"value": 10}', id="object"),
]


@pytest.mark.parametrize("kind", MOVEMENT_KINDS)
@pytest.mark.parametrize("amount_json", REJECTED_AMOUNTS)
def test_rejected_amount_is_validation_error(
    server: Server, client: httpx.Client, wallets: Wallets, kind: str, amount_json: str | None
) -> None:
    path, fields = movement(kind, wallets)
    key = str(uuid.uuid4())
    with ledger_unchanged(server, client, wallets.funded, wallets.empty, key=key):
        response = post_json(client, path, with_amount(fields, amount_json), key)
        errors = assert_validation_error(response)
        assert ["body", "amount"] in [error["loc"] for error in errors]
    assert_fixed_retry_goes_through(client, kind, wallets, key)


@pytest.mark.parametrize("amount", [pytest.param(1, id="one"), pytest.param(AMOUNT_MAX, id="10^15")])
def test_amount_bounds_are_accepted(client: httpx.Client, wallets: Wallets, amount: int) -> None:
    response = topup(client, wallets.empty, amount)
    assert response.status_code == 201, response.text
    assert response.json()["amount"] == amount
    assert balance(client, wallets.empty) == amount


# --- JSON syntax and shape ----------------------------------------------------------------------

MALFORMED_BODIES = [
    pytest.param(b'{"amount": 1', id="truncated"),
    pytest.param(b'{"amount": NaN}', id="NaN"),
    pytest.param(b'{"amount": Infinity}', id="Infinity"),
    pytest.param(b'{"amount": 1} garbage', id="trailing-garbage"),
    pytest.param(b'{"amount": 1}{}', id="two-documents"),
    pytest.param(b'{"amount": 1, "reference": "\xff\xfe"}', id="invalid-utf8"),
    pytest.param(b'{"amount": 1, "reference": "\\ud800"}', id="lone-surrogate"),
    pytest.param(b"hello", id="bare-word"),
    pytest.param(b"", id="empty-body"),
    pytest.param(b"{'amount': 1}", id="single-quotes"),
    pytest.param(b"[" * 30_000 + b"]" * 29_999, id="deep-unclosed"),
    pytest.param(b"[" * 30_000 + b"1 2" + b"]" * 30_000, id="deep-syntax-error"),
    pytest.param(
        b'{"amount": 1, "metadata": {"a": ' + b"[" * 20_000 + b"NaN" + b"]" * 20_000 + b"}}", id="deep-NaN"
    ),
    pytest.param(b'{"amount": 1, "amount": 1000}', id="duplicate-key"),
    pytest.param(b'{"amount": 1000, "reference": "r", "amount": 1}', id="duplicate-key-apart"),
    pytest.param(b'{"amount": 1, "metadata": {"a": 1, "a": 2}}', id="duplicate-key-in-metadata"),
    pytest.param(
        b'{"amount": 1, "metadata": {"a": ' + b"[" * 100 + b'{"k": 1, "k": 1}' + b"]" * 100 + b"}}",
        id="duplicate-key-deep",
    ),
]


@pytest.mark.parametrize("kind", MOVEMENT_KINDS)
@pytest.mark.parametrize("content", MALFORMED_BODIES)
def test_malformed_json_is_400(
    server: Server, client: httpx.Client, wallets: Wallets, kind: str, content: bytes
) -> None:
    path, _ = movement(kind, wallets)
    key = str(uuid.uuid4())
    with ledger_unchanged(server, client, wallets.funded, wallets.empty, key=key):
        assert_problem(post_json(client, path, content, key), 400, "malformed_json")
    assert_fixed_retry_goes_through(client, kind, wallets, key)


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(b"[]", id="empty-list"),
        pytest.param(b'[{"amount": 1}]', id="list-of-object"),
        pytest.param(b'"x"', id="string"),
        pytest.param(b"10", id="number"),
        pytest.param(b"null", id="null"),
        pytest.param(b"true", id="true"),
        pytest.param(b"[" * 32_000 + b"]" * 32_000, id="list-nested-32000-levels"),
    ],
)
@pytest.mark.parametrize("kind", MOVEMENT_KINDS)
def test_json_that_is_not_an_object_is_validation_error(
    server: Server, client: httpx.Client, wallets: Wallets, kind: str, content: bytes
) -> None:
    path, _ = movement(kind, wallets)
    key = str(uuid.uuid4())
    with ledger_unchanged(server, client, wallets.funded, wallets.empty, key=key):
        errors = assert_validation_error(post_json(client, path, content, key))
        assert errors[0]["loc"][0] == "body"
    assert_fixed_retry_goes_through(client, kind, wallets, key)


@pytest.mark.parametrize(
    "template",
    [
        pytest.param(b'{"owner_id": "OWNER", "asset": "GOLD"', id="truncated"),
        pytest.param(b'{"owner_id": "OWNER", "asset": "GOLD", "asset": "POINTS"}', id="duplicate-key"),
        pytest.param(
            b'{"owner_id": "other", "asset": "GOLD", "owner_id": "OWNER"}', id="duplicate-key-apart"
        ),
    ],
)
def test_malformed_wallet_creation_body_is_400_and_creates_nothing(
    client: httpx.Client, template: bytes
) -> None:
    owner_id = f"user-{uuid.uuid4()}"
    content = template.replace(b"OWNER", owner_id.encode())
    response = client.post("/v1/wallets", content=content, headers={"Content-Type": "application/json"})
    assert_problem(response, 400, "malformed_json")
    assert client.get("/v1/wallets", params={"owner_id": owner_id}).json() == {"data": []}


def test_asset_creation_with_a_duplicate_key_is_400_and_creates_nothing(client: httpx.Client) -> None:
    code = "DUP" + uuid.uuid4().hex[:8].upper()
    content = b'{"code": "' + code.encode() + b'", "name": "One", "name": "Two"}'
    response = client.post("/v1/assets", content=content, headers={"Content-Type": "application/json"})
    assert_problem(response, 400, "malformed_json")
    assert code not in [asset["code"] for asset in client.get("/v1/assets").json()["data"]]


# --- nesting -------------------------------------------------------------------------------------


def deep(levels: int, shape: str) -> bytes:
    """A JSON value nested `levels` deep: lists `[[...]]`, or objects `{"a":{"a":...}}`."""
    if shape == "lists":
        return b"[" * levels + b"]" * levels
    return b'{"a":' * (levels - 1) + b"{}" + b"}" * (levels - 1)


def deepest(shape: str) -> int:
    """The most levels of `shape` a movement body of 64 KiB can hold, with room for the rest."""
    return (BODY_SIZE_MAX - 300) // (len(deep(3, shape)) - len(deep(2, shape)))


DEEP_VALUES = [
    *[
        pytest.param("metadata", b'{"a": ' + deep(levels, shape) + b"}", id=f"metadata-{shape}-{label}")
        for shape in ("lists", "dicts")
        for levels, label in ((320, "320-levels"), (deepest(shape) - 2, "64KiB-body"))
    ],
    pytest.param(
        "metadata", b'{"a": [[[[[[[[1]]]]]]]], "b": ' + deep(2000, "dicts") + b"}", id="metadata-wide"
    ),
    pytest.param("amount", deep(deepest("lists") - 2, "lists"), id="amount-64KiB-body"),
    pytest.param("reference", deep(5000, "dicts"), id="reference-5000-levels"),
    pytest.param("colour", deep(5000, "lists"), id="unknown-field-5000-levels"),
]


@pytest.mark.parametrize("kind", MOVEMENT_KINDS)
@pytest.mark.parametrize(("field", "value"), DEEP_VALUES)
def test_deeply_nested_value_is_validation_error(
    server: Server, client: httpx.Client, wallets: Wallets, kind: str, field: str, value: bytes
) -> None:
    """Nested as deep as the body allows, in any field: 422 like any other limit of the schema,
    never the 500 of a RecursionError."""
    path, fields = movement(kind, wallets)
    members = with_amount(fields, "5" if field != "amount" else None)[:-1]
    content = members + (b", " if members != b"{" else b"") + f'"{field}": '.encode() + value + b"}"
    assert len(content) <= BODY_SIZE_MAX, len(content)
    key = str(uuid.uuid4())
    with ledger_unchanged(server, client, wallets.funded, wallets.empty, key=key):
        errors = assert_validation_error(post_json(client, path, content, key))
        assert ["body", field] in [error["loc"][:2] for error in errors], errors
    assert_fixed_retry_goes_through(client, kind, wallets, key)


# --- media type ----------------------------------------------------------------------------------

WRONG_MEDIA_TYPES = [
    pytest.param("text/plain", b'{"amount": 5}', id="text-plain"),
    pytest.param("application/x-www-form-urlencoded", b"amount=5", id="form-encoded"),
    pytest.param("multipart/form-data; boundary=x", b'--x\r\n\r\n{"amount": 5}\r\n--x--\r\n', id="multipart"),
    pytest.param("application/xml", b"<amount>5</amount>", id="xml"),
    pytest.param(None, b'{"amount": 5}', id="no-content-type"),
    pytest.param("application/json; charset=latin-1", b'{"amount": 5}', id="charset-latin-1"),
    pytest.param("application/json; charset=utf-16", b'{"amount": 5}', id="charset-utf-16"),
    pytest.param('application/json; charset="iso-8859-1"', b'{"amount": 5}', id="charset-quoted-latin-1"),
    pytest.param("application/json; charset=utf-8; charset=latin-1", b'{"amount": 5}', id="two-charsets"),
]


@pytest.mark.parametrize("kind", MOVEMENT_KINDS)
@pytest.mark.parametrize(("content_type", "content"), WRONG_MEDIA_TYPES)
def test_wrong_content_type_is_415(
    server: Server,
    client: httpx.Client,
    wallets: Wallets,
    kind: str,
    content_type: str | None,
    content: bytes,
) -> None:
    path, fields = movement(kind, wallets)
    if fields and content.startswith(b"{"):
        content = with_amount(fields, "5")
    key = str(uuid.uuid4())
    headers = {"Idempotency-Key": key}
    if content_type is not None:
        headers["Content-Type"] = content_type
    with ledger_unchanged(server, client, wallets.funded, wallets.empty, key=key):
        response = client.post(path, content=content, headers=headers)
        if content_type is None:
            assert "content-type" not in response.request.headers
        assert_problem(response, 415, "unsupported_media_type")
    assert_fixed_retry_goes_through(client, kind, wallets, key)


@pytest.mark.parametrize("kind", MOVEMENT_KINDS)
def test_two_content_types_are_415(server: Server, client: httpx.Client, wallets: Wallets, kind: str) -> None:
    path, fields = movement(kind, wallets)
    key = str(uuid.uuid4())
    headers = [("Content-Type", "application/json"), ("Content-Type", "text/plain"), ("Idempotency-Key", key)]
    with ledger_unchanged(server, client, wallets.funded, wallets.empty, key=key):
        response = client.post(path, content=with_amount(fields, "5"), headers=headers)
        assert_problem(response, 415, "unsupported_media_type")


def test_wrong_content_type_on_wallet_creation_is_415(client: httpx.Client) -> None:
    owner_id = f"user-{uuid.uuid4()}"
    body = json.dumps({"owner_id": owner_id, "asset": "GOLD"}).encode()
    response = client.post("/v1/wallets", content=body, headers={"Content-Type": "text/plain"})
    assert_problem(response, 415, "unsupported_media_type")
    assert client.get("/v1/wallets", params={"owner_id": owner_id}).json() == {"data": []}


@pytest.mark.parametrize(
    "content_type",
    [
        pytest.param("application/json; charset=utf-8", id="charset-parameter"),
        pytest.param('application/json;charset="UTF-8"', id="charset-quoted-upper-case"),
        pytest.param("application/json; version=1", id="other-parameter"),
        pytest.param("Application/JSON", id="upper-case"),
    ],
)
def test_json_media_type_variants_are_accepted(
    client: httpx.Client, wallets: Wallets, content_type: str
) -> None:
    response = post_json(
        client,
        f"/v1/wallets/{wallets.empty}/topup",
        b'{"amount": 5}',
        str(uuid.uuid4()),
        **{"Content-Type": content_type},
    )
    assert response.status_code == 201, response.text
    assert balance(client, wallets.empty) == 5


# --- body size -----------------------------------------------------------------------------------


def padded_body(size: int) -> bytes:
    """A topup body of exactly `size` bytes, its reference padded with `x`."""
    skeleton = b'{"amount": 5, "reference": ""}'
    assert size >= len(skeleton)
    return skeleton[:-2] + b"x" * (size - len(skeleton)) + skeleton[-2:]


def whitespace_padded_body(size: int) -> bytes:
    """A valid topup body of exactly `size` bytes: JSON followed by insignificant spaces."""
    skeleton = b'{"amount": 5}'
    return skeleton + b" " * (size - len(skeleton))


def chunks(content: bytes, size: int = 8192) -> Iterator[bytes]:
    for start in range(0, len(content), size):
        yield content[start : start + size]


@pytest.mark.parametrize(
    "chunked", [pytest.param(False, id="content-length"), pytest.param(True, id="chunked")]
)
@pytest.mark.parametrize(
    "content",
    [
        pytest.param(padded_body(70 * 1024), id="70KiB-reference"),
        pytest.param(whitespace_padded_body(BODY_SIZE_MAX + 1), id="64KiB+1-whitespace"),
        pytest.param(b"x" * (1024 * 1024), id="1MiB-garbage"),
    ],
)
@pytest.mark.parametrize("kind", MOVEMENT_KINDS)
def test_oversized_body_is_413(
    server: Server, client: httpx.Client, wallets: Wallets, kind: str, content: bytes, chunked: bool
) -> None:
    path, _ = movement(kind, wallets)
    key = str(uuid.uuid4())
    headers = {"Content-Type": "application/json", "Idempotency-Key": key}
    with ledger_unchanged(server, client, wallets.funded, wallets.empty, key=key):
        response = client.post(path, content=chunks(content) if chunked else content, headers=headers)
        assert ("transfer-encoding" in response.request.headers) == chunked
        assert ("content-length" in response.request.headers) != chunked
        assert_problem(response, 413, "payload_too_large")
    assert_fixed_retry_goes_through(client, kind, wallets, key)


@pytest.mark.parametrize(
    "chunked", [pytest.param(False, id="content-length"), pytest.param(True, id="chunked")]
)
def test_body_of_exactly_64_kib_is_accepted(client: httpx.Client, wallets: Wallets, chunked: bool) -> None:
    content = whitespace_padded_body(BODY_SIZE_MAX)
    headers = {"Content-Type": "application/json", "Idempotency-Key": str(uuid.uuid4())}
    response = client.post(
        f"/v1/wallets/{wallets.empty}/topup", content=chunks(content) if chunked else content, headers=headers
    )
    assert response.status_code == 201, response.text
    assert balance(client, wallets.empty) == 5


def test_oversized_wallet_creation_is_413(client: httpx.Client) -> None:
    owner_id = f"user-{uuid.uuid4()}"
    content = json.dumps({"owner_id": owner_id, "asset": "GOLD", "pad": "x" * (70 * 1024)}).encode()
    response = client.post("/v1/wallets", content=content, headers={"Content-Type": "application/json"})
    assert_problem(response, 413, "payload_too_large")
    assert client.get("/v1/wallets", params={"owner_id": owner_id}).json() == {"data": []}


# --- unknown things ------------------------------------------------------------------------------

MISSING_ID = "01890000-0000-7000-8000-000000000000"  # a well-formed UUID no wallet or transaction has

AMOUNT_5 = {"amount": 5}
WALLET_NOT_FOUND = (404, "wallet_not_found")
TRANSACTION_NOT_FOUND = (404, "transaction_not_found")
UNKNOWN_IDS = [(MISSING_ID, "unknown-uuid"), ("not-a-uuid", "not-a-uuid"), ("12345", "number")]

UNKNOWN_THINGS = [
    *[
        pytest.param("GET", f"/v1/wallets/{wallet}{suffix}", None, WALLET_NOT_FOUND, id=f"{name}-{label}")
        for name, suffix in (("wallet", ""), ("history", "/transactions"))
        for wallet, label in UNKNOWN_IDS
    ],
    *[
        pytest.param("POST", f"/v1/wallets/{wallet}/{kind}", AMOUNT_5, WALLET_NOT_FOUND, id=f"{kind}-{label}")
        for kind in ("topup", "bonus", "spend")
        for wallet, label in UNKNOWN_IDS
    ],
    pytest.param(
        "POST",
        "/v1/transfers",
        {"from_wallet_id": "{funded}", "to_wallet_id": MISSING_ID, "amount": 5},
        WALLET_NOT_FOUND,
        id="transfer-to-unknown",
    ),
    pytest.param(
        "POST",
        "/v1/transfers",
        {"from_wallet_id": MISSING_ID, "to_wallet_id": "{funded}", "amount": 5},
        WALLET_NOT_FOUND,
        id="transfer-from-unknown",
    ),
    pytest.param(
        "POST",
        "/v1/wallets",
        {"owner_id": "{owner}", "asset": "NOPE"},
        (404, "asset_not_found"),
        id="wallet-of-unknown-asset",
    ),
    *[
        pytest.param("GET", f"/v1/transactions/{thing}", None, TRANSACTION_NOT_FOUND, id=f"tx-{label}")
        for thing, label in UNKNOWN_IDS
    ],
]


def fill(value: Any, names: dict[str, str]) -> Any:
    if isinstance(value, dict):
        return {key: fill(item, names) for key, item in value.items()}
    if isinstance(value, str):
        return value.format(**names)
    return value


@pytest.mark.parametrize(("method", "path", "body", "expected"), UNKNOWN_THINGS)
def test_unknown_thing_is_404(
    server: Server,
    client: httpx.Client,
    wallets: Wallets,
    method: str,
    path: str,
    body: dict[str, Any] | None,
    expected: tuple[int, str],
) -> None:
    owner_id = f"user-{uuid.uuid4()}"
    body = fill(body, {"funded": wallets.funded, "owner": owner_id})
    with ledger_unchanged(server, client, wallets.funded, wallets.empty):
        response = client.request(method, path, json=body, headers={"Idempotency-Key": str(uuid.uuid4())})
        assert_problem(response, *expected)
        missing_wallet_transactions = sql_value(
            server.database_url,
            "SELECT count(*) FROM transaction WHERE wallet_id = $1",
            uuid.UUID(MISSING_ID),
        )
        assert missing_wallet_transactions == 0
    assert client.get("/v1/wallets", params={"owner_id": owner_id}).json() == {"data": []}


@pytest.mark.parametrize(
    ("path", "body"),
    [
        pytest.param(f"/v1/wallets/{MISSING_ID}/topup", {"amount": 5}, id="topup"),
        pytest.param(
            "/v1/transfers",
            {"from_wallet_id": "{funded}", "to_wallet_id": MISSING_ID, "amount": 5},
            id="transfer",
        ),
    ],
)
def test_unknown_target_wallet_decline_is_stored_and_replayed(
    client: httpx.Client, wallets: Wallets, path: str, body: dict[str, Any]
) -> None:
    body = fill(body, {"funded": wallets.funded})
    key = str(uuid.uuid4())
    first = client.post(path, json=body, headers={"Idempotency-Key": key})
    assert_problem(first, 404, "wallet_not_found")
    again = client.post(path, json=body, headers={"Idempotency-Key": key})
    assert again.status_code == 404
    assert again.content == first.content
    assert again.headers["Idempotent-Replayed"] == "true"
    assert balance(client, wallets.funded) == FUNDED


# --- Idempotency-Key -----------------------------------------------------------------------------

BAD_IDEMPOTENCY_KEYS = [
    pytest.param(None, "idempotency_key_missing", id="missing"),
    pytest.param("", "idempotency_key_invalid", id="empty"),
    pytest.param("k" * 256, "idempotency_key_invalid", id="256-chars"),
    pytest.param("a\tb", "idempotency_key_invalid", id="tab"),
    pytest.param("caf\u00e9".encode(), "idempotency_key_invalid", id="non-ascii-utf8"),
    pytest.param("caf\u00e9".encode("latin-1"), "idempotency_key_invalid", id="non-ascii-latin1"),
]


@pytest.mark.parametrize("kind", MOVEMENT_KINDS)
@pytest.mark.parametrize(("key", "code"), BAD_IDEMPOTENCY_KEYS)
def test_bad_idempotency_key_is_400(
    server: Server, client: httpx.Client, wallets: Wallets, kind: str, key: str | bytes | None, code: str
) -> None:
    path, fields = movement(kind, wallets)
    with ledger_unchanged(server, client, wallets.funded, wallets.empty):
        assert_problem(post_json(client, path, with_amount(fields, "5"), key), 400, code)


@pytest.mark.parametrize("kind", MOVEMENT_KINDS)
@pytest.mark.parametrize("key", [b"a\x7fb", b"a\x01b"], ids=["DEL", "control-char-SOH"])
def test_header_bytes_http_forbids_are_refused_by_the_http_layer(
    server: Server, client: httpx.Client, wallets: Wallets, kind: str, key: bytes
) -> None:
    """Control characters other than tab are not valid in an HTTP field value (RFC 9110): the
    HTTP parser refuses the request with a plain 400 before the application sees it."""
    path, fields = movement(kind, wallets)
    with ledger_unchanged(server, client, wallets.funded, wallets.empty):
        response = post_json(client, path, with_amount(fields, "5"), key)
        assert response.status_code == 400


def unique_key(length: int, filler: str = "k") -> str:
    """A key of exactly `length` printable characters that no other request of the session uses."""
    return (str(uuid.uuid4()) + filler * length)[:length]


@pytest.mark.parametrize(
    "make_key",
    [
        pytest.param(lambda: unique_key(255), id="255-chars"),
        pytest.param(
            lambda: unique_key(36) + "".join(chr(code) for code in range(0x20, 0x7F)), id="every-printable"
        ),
        pytest.param(lambda: f"a b {uuid.uuid4()}", id="inner-spaces"),
        pytest.param(lambda: unique_key(36).replace("-", "~"), id="tilde"),
    ],
)
def test_printable_idempotency_key_is_accepted(
    client: httpx.Client, wallets: Wallets, make_key: Callable[[], str]
) -> None:
    key = make_key()
    response = post_json(client, f"/v1/wallets/{wallets.empty}/topup", b'{"amount": 5}', key)
    assert response.status_code == 201, response.text
    replay = post_json(client, f"/v1/wallets/{wallets.empty}/topup", b'{"amount": 5}', key)
    assert replay.status_code == 201
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert replay.content == response.content
    assert balance(client, wallets.empty) == 5


# --- body fields ---------------------------------------------------------------------------------


def nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


INVALID_FIELDS = [
    pytest.param({"amount": 5, "colour": "red"}, "colour", id="unknown-field"),
    pytest.param({"amount": 5, "Amount": 5}, "Amount", id="unknown-field-case"),
    pytest.param({"amount": 5, "reference": "r" * 129}, "reference", id="reference-129"),
    pytest.param({"amount": 5, "reference": "line\nbreak"}, "reference", id="reference-newline"),
    pytest.param({"amount": 5, "reference": "nul\u0000"}, "reference", id="reference-nul"),
    pytest.param({"amount": 5, "reference": "del\u007f"}, "reference", id="reference-del"),
    pytest.param({"amount": 5, "reference": "c1\u0085"}, "reference", id="reference-c1-control"),
    pytest.param({"amount": 5, "reference": 17}, "reference", id="reference-number"),
    pytest.param({"amount": 5, "metadata": []}, "metadata", id="metadata-list"),
    pytest.param({"amount": 5, "metadata": "x"}, "metadata", id="metadata-string"),
    pytest.param({"amount": 5, "metadata": 5}, "metadata", id="metadata-number"),
    pytest.param({"amount": 5, "metadata": {"pad": "m" * 4096}}, "metadata", id="metadata-over-4KiB"),
    pytest.param({"amount": 5, "metadata": nested(9)}, "metadata", id="metadata-depth-9"),
    pytest.param({"amount": 5, "metadata": {"a": [[[[[[[[1]]]]]]]]}}, "metadata", id="metadata-list-depth-9"),
    pytest.param({"amount": 5, "metadata": {"note": "nul\u0000"}}, "metadata", id="metadata-nul-value"),
    pytest.param({"amount": 5, "metadata": {"nul\u0000": 1}}, "metadata", id="metadata-nul-key"),
]


@pytest.mark.parametrize("kind", MOVEMENT_KINDS)
@pytest.mark.parametrize(("body", "field"), INVALID_FIELDS)
def test_invalid_field_is_validation_error(
    server: Server, client: httpx.Client, wallets: Wallets, kind: str, body: dict[str, Any], field: str
) -> None:
    path, fields = movement(kind, wallets)
    key = str(uuid.uuid4())
    with ledger_unchanged(server, client, wallets.funded, wallets.empty, key=key):
        response = client.post(path, json={**fields, **body}, headers={"Idempotency-Key": key})
        errors = assert_validation_error(response)
        assert field in [error["loc"][1] for error in errors if len(error["loc"]) > 1], errors
    assert_fixed_retry_goes_through(client, kind, wallets, key)


def test_fields_at_their_limits_are_accepted(client: httpx.Client, wallets: Wallets) -> None:
    metadata_4kib = {"pad": ""}
    metadata_4kib["pad"] = "m" * (4096 - len(json.dumps(metadata_4kib, separators=(",", ":"))))
    assert len(json.dumps(metadata_4kib, separators=(",", ":")).encode()) == 4096
    bodies: list[dict[str, Any]] = [
        {"amount": 5, "reference": "r" * 128},
        {"amount": 5, "reference": "caf\u00e9 \u2603"},
        {"amount": 5, "metadata": metadata_4kib},
        {"amount": 5, "metadata": nested(8)},
        {"amount": 5, "metadata": {}},
        {"amount": 5, "reference": None, "metadata": None},
        {"amount": 5, "metadata": {"path": "C:\\u0000dir", "C:\\u0000": ["\\u0000"]}},  # backslashes, no NUL
    ]
    for body in bodies:
        response = client.post(
            f"/v1/wallets/{wallets.empty}/topup", json=body, headers={"Idempotency-Key": str(uuid.uuid4())}
        )
        assert response.status_code == 201, (body, response.text)
        assert response.json()["metadata"] == body.get("metadata")
    assert balance(client, wallets.empty) == 5 * len(bodies)


# --- transfers -----------------------------------------------------------------------------------


def test_transfer_to_the_same_wallet_is_same_wallet(
    server: Server, client: httpx.Client, wallets: Wallets
) -> None:
    key = str(uuid.uuid4())
    body = {"from_wallet_id": wallets.funded, "to_wallet_id": wallets.funded, "amount": 5}
    with ledger_unchanged(server, client, wallets.funded, key=key):
        assert_problem(
            client.post("/v1/transfers", json=body, headers={"Idempotency-Key": key}), 422, "same_wallet"
        )
    assert_fixed_retry_goes_through(client, "transfer", wallets, key)


def test_transfer_between_assets_is_asset_mismatch_and_stored(
    server: Server, client: httpx.Client, wallets: Wallets
) -> None:
    points = new_wallet(client, asset="POINTS")
    key = str(uuid.uuid4())
    body = {"from_wallet_id": wallets.funded, "to_wallet_id": points, "amount": 5}
    with ledger_unchanged(server, client, wallets.funded, points):
        first = client.post("/v1/transfers", json=body, headers={"Idempotency-Key": key})
        assert_problem(first, 422, "asset_mismatch")
        replay = client.post("/v1/transfers", json=body, headers={"Idempotency-Key": key})
        assert replay.status_code == 422
        assert replay.content == first.content
        assert replay.headers["Idempotent-Replayed"] == "true"


INVALID_TRANSFER_BODIES = [
    pytest.param(
        {"from_wallet_id": "abc", "to_wallet_id": "{empty}", "amount": 5},
        "from_wallet_id",
        id="from-not-uuid",
    ),
    pytest.param(
        {"from_wallet_id": "{funded}", "to_wallet_id": "abc", "amount": 5}, "to_wallet_id", id="to-not-uuid"
    ),
    pytest.param(
        {"from_wallet_id": "", "to_wallet_id": "{empty}", "amount": 5}, "from_wallet_id", id="from-empty"
    ),
    pytest.param(
        {"from_wallet_id": 42, "to_wallet_id": "{empty}", "amount": 5}, "from_wallet_id", id="from-number"
    ),
    pytest.param(
        {"from_wallet_id": None, "to_wallet_id": "{empty}", "amount": 5}, "from_wallet_id", id="from-null"
    ),
    pytest.param({"to_wallet_id": "{empty}", "amount": 5}, "from_wallet_id", id="from-missing"),
    pytest.param({"from_wallet_id": "{funded}", "amount": 5}, "to_wallet_id", id="to-missing"),
    pytest.param(
        {"from_wallet_id": "{funded}", "to_wallet_id": "{empty}x", "amount": 5},
        "to_wallet_id",
        id="to-uuid-with-suffix",
    ),
]


@pytest.mark.parametrize(("body", "field"), INVALID_TRANSFER_BODIES)
def test_invalid_transfer_wallet_ids_are_validation_error(
    server: Server, client: httpx.Client, wallets: Wallets, body: dict[str, Any], field: str
) -> None:
    key = str(uuid.uuid4())
    body = fill(body, {"funded": wallets.funded, "empty": wallets.empty})
    with ledger_unchanged(server, client, wallets.funded, wallets.empty, key=key):
        errors = assert_validation_error(
            client.post("/v1/transfers", json=body, headers={"Idempotency-Key": key})
        )
        assert ["body", field] in [error["loc"] for error in errors], errors
    assert_fixed_retry_goes_through(client, "transfer", wallets, key)


# --- owner ids -----------------------------------------------------------------------------------

BAD_OWNER_IDS = [
    pytest.param("", id="empty"),
    pytest.param("o" * 129, id="129-chars"),
    pytest.param("user\n42", id="newline"),
    pytest.param("user\t42", id="tab"),
    pytest.param("user\u000042", id="nul"),
    pytest.param("user\u007f", id="del"),
]


@pytest.mark.parametrize("owner_id", BAD_OWNER_IDS)
def test_bad_owner_id_on_wallet_creation_is_validation_error(
    server: Server, client: httpx.Client, owner_id: str
) -> None:
    accounts_before = sql_value(server.database_url, "SELECT count(*) FROM account")
    response = client.post("/v1/wallets", json={"owner_id": owner_id, "asset": "GOLD"})
    errors = assert_validation_error(response)
    assert ["body", "owner_id"] in [error["loc"] for error in errors]
    assert sql_value(server.database_url, "SELECT count(*) FROM account") == accounts_before


@pytest.mark.parametrize("owner_id", BAD_OWNER_IDS)
def test_bad_owner_id_in_wallet_search_is_validation_error(client: httpx.Client, owner_id: str) -> None:
    errors = assert_validation_error(client.get("/v1/wallets", params={"owner_id": owner_id}))
    assert ["query", "owner_id"] in [error["loc"] for error in errors]


def test_wallet_search_without_owner_id_is_validation_error(client: httpx.Client) -> None:
    errors = assert_validation_error(client.get("/v1/wallets"))
    assert ["query", "owner_id"] in [error["loc"] for error in errors]


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({"owner_id": "{owner}", "asset": "gold"}, id="asset-lower-case"),
        pytest.param({"owner_id": "{owner}", "asset": ""}, id="asset-empty"),
        pytest.param({"owner_id": "{owner}"}, id="asset-missing"),
        pytest.param({"asset": "GOLD"}, id="owner-missing"),
        pytest.param({"owner_id": 42, "asset": "GOLD"}, id="owner-number"),
        pytest.param({"owner_id": "{owner}", "asset": "GOLD", "balance": 100}, id="unknown-field-balance"),
    ],
)
def test_invalid_wallet_creation_body_is_validation_error(client: httpx.Client, body: dict[str, Any]) -> None:
    owner_id = f"user-{uuid.uuid4()}"
    assert_validation_error(client.post("/v1/wallets", json=fill(body, {"owner": owner_id})))
    assert client.get("/v1/wallets", params={"owner_id": owner_id}).json() == {"data": []}


def test_owner_id_of_128_printable_chars_is_accepted(client: httpx.Client) -> None:
    owner_id = (f"user-{uuid.uuid4()}-\u00e9" + "o" * 128)[:128]
    response = client.post("/v1/wallets", json={"owner_id": owner_id, "asset": "GOLD"})
    assert response.status_code == 201, response.text
    assert response.json()["owner_id"] == owner_id
    listed = client.get("/v1/wallets", params={"owner_id": owner_id})
    assert [wallet["id"] for wallet in listed.json()["data"]] == [response.json()["id"]]


# --- history -------------------------------------------------------------------------------------

BAD_HISTORY_QUERIES = [
    pytest.param({"limit": "0"}, "limit", id="limit-0"),
    pytest.param({"limit": "201"}, "limit", id="limit-201"),
    pytest.param({"limit": "-1"}, "limit", id="limit-negative"),
    pytest.param({"limit": "abc"}, "limit", id="limit-abc"),
    pytest.param({"limit": "1.5"}, "limit", id="limit-fraction"),
    pytest.param({"limit": ""}, "limit", id="limit-empty"),
    pytest.param({"limit": "9" * 40}, "limit", id="limit-40-digits"),
    pytest.param({"cursor": "garbage"}, "cursor", id="cursor-garbage"),
    pytest.param({"cursor": "!!!!"}, "cursor", id="cursor-not-base64"),
    pytest.param({"cursor": "ZTE6YWJj"}, "cursor", id="cursor-e1-abc"),
    pytest.param({"cursor": "ZTE6MA"}, "cursor", id="cursor-e1-0"),
    pytest.param({"cursor": "ZTE6LTE"}, "cursor", id="cursor-e1-minus-1"),
    pytest.param({"cursor": "ZTE6OTk5OTk5OTk5OTk5OTk5OTk5OTk5"}, "cursor", id="cursor-e1-too-big"),
    pytest.param({"cursor": "c" * 65}, "cursor", id="cursor-65-chars"),
    pytest.param({"cursor": "\u00e9t\u00e9"}, "cursor", id="cursor-non-ascii"),
    pytest.param({"cursor": ""}, "cursor", id="cursor-empty"),
]


@pytest.mark.parametrize(("params", "field"), BAD_HISTORY_QUERIES)
def test_bad_history_query_is_validation_error(
    client: httpx.Client, wallets: Wallets, params: dict[str, str], field: str
) -> None:
    response = client.get(f"/v1/wallets/{wallets.funded}/transactions", params=params)
    errors = assert_validation_error(response)
    assert ["query", field] in [error["loc"] for error in errors], errors


@pytest.mark.parametrize("limit", [1, 200])
def test_history_limits_at_the_bounds_are_accepted(
    client: httpx.Client, wallets: Wallets, limit: int
) -> None:
    response = client.get(f"/v1/wallets/{wallets.funded}/transactions", params={"limit": limit})
    assert response.status_code == 200, response.text
    assert len(response.json()["data"]) == 1


# --- routing -------------------------------------------------------------------------------------

BAD_ROUTES = [
    pytest.param("GET", "/v1/nope", 404, "not_found", id="unknown-v1-path"),
    pytest.param("GET", "/nope", 404, "not_found", id="unknown-root-path"),
    pytest.param("GET", "/v2/wallets", 404, "not_found", id="unknown-version"),
    pytest.param("POST", "/v1/wallets/{funded}/withdraw", 404, "not_found", id="unknown-movement"),
    pytest.param("GET", "/v1/wallets/{funded}/transactions/extra", 404, "not_found", id="path-too-long"),
    pytest.param("DELETE", "/v1/wallets/{funded}", 405, "method_not_allowed", id="delete-wallet"),
    pytest.param("PUT", "/v1/wallets/{funded}", 405, "method_not_allowed", id="put-wallet"),
    pytest.param("GET", "/v1/wallets/{funded}/topup", 405, "method_not_allowed", id="get-topup"),
    pytest.param("PATCH", "/v1/assets", 405, "method_not_allowed", id="patch-assets"),
    pytest.param("GET", "/v1/transfers", 405, "method_not_allowed", id="get-transfers"),
    pytest.param("POST", "/v1/ledger/verify", 405, "method_not_allowed", id="post-verify"),
    pytest.param("POST", "/healthz", 405, "method_not_allowed", id="post-healthz"),
    pytest.param("GET", "/v1/assets/", 404, "not_found", id="assets-trailing-slash"),
    pytest.param("POST", "/v1/wallets/", 404, "not_found", id="wallets-trailing-slash"),
    pytest.param("GET", "/v1/wallets/{funded}/", 404, "not_found", id="wallet-trailing-slash"),
    pytest.param("POST", "/v1/wallets/{funded}/topup/", 404, "not_found", id="topup-trailing-slash"),
    pytest.param("POST", "/v1/transfers/", 404, "not_found", id="transfers-trailing-slash"),
    pytest.param("GET", "/healthz/", 404, "not_found", id="healthz-trailing-slash"),
    pytest.param("GET", "/docs-assets", 404, "not_found", id="mount-without-slash"),
]


@pytest.mark.parametrize(("method", "path", "status", "code"), BAD_ROUTES)
def test_bad_route_is_problem(
    server: Server, client: httpx.Client, wallets: Wallets, method: str, path: str, status: int, code: str
) -> None:
    key = str(uuid.uuid4())
    with ledger_unchanged(server, client, wallets.funded, key=key):
        response = client.request(
            method, path.format(funded=wallets.funded), json={"amount": 5}, headers={"Idempotency-Key": key}
        )
        assert_problem(response, status, code)


# --- the balance limit ---------------------------------------------------------------------------


@pytest.fixture
def server_of_its_own(create_database: Callable[[], str], tmp_path: Path) -> Iterator[Server]:
    url = create_database()
    wallet_command("db", "seed", database_url=url)
    running = start_server(url, tmp_path / "server.log")
    try:
        yield running
    finally:
        running.stop()


def test_credit_beyond_the_balance_limit_is_declined_and_stored(server_of_its_own: Server) -> None:
    server = server_of_its_own
    with server.client() as client:
        full = new_wallet(client)
        sender = new_wallet(client)
        assert topup(client, sender, 100).status_code == 201
        asyncio.run(fund_wallet(server.database_url, full, BALANCE_MAX - 5))
        verified = wallet_command("ledger", "verify", database_url=server.database_url, check=False)
        assert verified.returncode == 0, verified.stdout
        assert balance(client, full) == BALANCE_MAX - 5

        declines = [
            (f"/v1/wallets/{full}/topup", {"amount": 6}),
            (f"/v1/wallets/{full}/bonus", {"amount": 6}),
            ("/v1/transfers", {"from_wallet_id": sender, "to_wallet_id": full, "amount": 6}),
        ]
        keys = [str(uuid.uuid4()) for _ in declines]
        with ledger_unchanged(server, client, full, sender):
            for (path, body), key in zip(declines, keys, strict=True):
                first = client.post(path, json=body, headers={"Idempotency-Key": key})
                assert_problem(first, 422, "balance_limit_exceeded")
                assert "Idempotent-Replayed" not in first.headers
                replay = client.post(path, json=body, headers={"Idempotency-Key": key})
                assert replay.status_code == 422
                assert replay.content == first.content
                assert replay.headers["Idempotent-Replayed"] == "true"

        up_to_the_limit = topup(client, full, 5)
        assert up_to_the_limit.status_code == 201, up_to_the_limit.text
        assert up_to_the_limit.json()["balance_after"] == BALANCE_MAX
        assert_problem(topup(client, full, 1), 422, "balance_limit_exceeded")

        # Stored means stored: with room again, the same key still gets the first answer.
        spent = client.post(
            f"/v1/wallets/{full}/spend", json={"amount": 50}, headers={"Idempotency-Key": "make-room"}
        )
        assert spent.status_code == 201, spent.text
        path, body = declines[0]
        still_declined = client.post(path, json=body, headers={"Idempotency-Key": keys[0]})
        assert_problem(still_declined, 422, "balance_limit_exceeded")
        assert still_declined.headers["Idempotent-Replayed"] == "true"
        assert balance(client, full) == BALANCE_MAX - 50

        assert_ledger_ok(client)
    assert wallet_command("ledger", "verify", database_url=server.database_url).returncode == 0
