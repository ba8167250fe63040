"""Schemathesis against the OpenAPI schema the service serves: every operation, with valid and
invalid requests generated from the schema, against the real server. No response is a 500, and
every response conforms to the schema: its status code is documented, its content type and body
match what the schema says, and invalid requests are rejected with a 4xx.

The schema is built at collection time by the app factory in a subprocess (the factory sets up
logging, which the test process should not inherit); `test_the_served_schema_is_the_tested_one`
checks that the running server serves exactly that document.

Valid requests are pointed at real funded wallets half of the time, so that money movements
succeed and their 201 bodies are checked too; every valid money movement gets an
Idempotency-Key of its own.

Schemathesis counts a 4xx to a schema-valid request as a failure; some rejections of this API
are outside what a JSON Schema can say, and `schema_valid_request_accepted` lets them through:
the business declines of API.md (`same_wallet`, `asset_mismatch`, `balance_limit_exceeded`,
`idempotency_key_reused`), rules across fields or against the clock (CROSS_FIELD_RULES),
integers written as floats (`10.0`, a JSON Schema integer, which API.md rejects), and a history
`cursor` or events `after` that the service never issued (cursors are opaque).
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from schemathesis.specs.openapi.checks import positive_data_acceptance

from support import Server, new_wallet, topup

MAX_EXAMPLES = 40
BUSINESS_DECLINES = {"same_wallet", "asset_mismatch", "balance_limit_exceeded", "idempotency_key_reused"}
ACCEPTED_STATUSES = {200, 201, 401, 403, 404, 409}
MONEY_MOVEMENTS = ("/topup", "/bonus", "/spend", "/v1/transfers", "/v1/journal")
# Rules that span fields, or depend on the clock (an `expires_at` must lie ahead, at most 10
# years; a balance's `at` must not; a statement's `to` must come after its `from`), which a JSON
# Schema cannot state; their 422 explains the rejection.
CROSS_FIELD_RULES = (
    "a posting needs two different accounts",
    "at least one posting must debit or credit a wallet",
    "another item of the batch has this idempotency_key",
    "must be later than now",
    "years ahead",
    "must not be in the future",  # balance?at=
    "must be later than from",  # statement?from=&to=
    "must be earlier than now",  # statement?from= with the default to
    "is outside the instants this service handles",  # 0001-01-01T00:00:00+01:00 is before year 1 in UTC
)

BUILD_SCHEMA = """
import json
from wallet.api.app import create_app
from wallet.config import Settings
print(json.dumps(create_app(Settings(database_url=None, log_level="error")).openapi()))
"""


def _schema_document() -> dict[str, Any]:
    built = subprocess.run(
        [sys.executable, "-c", BUILD_SCHEMA], capture_output=True, text=True, timeout=120, check=True
    )
    document: dict[str, Any] = json.loads(built.stdout.splitlines()[-1])
    return document


SCHEMA_DOCUMENT = _schema_document()
CONFIG = schemathesis.Config.from_dict(
    {"generation": {"max-examples": MAX_EXAMPLES, "mode": "all", "database": "none", "deterministic": True}}
)
schema = schemathesis.openapi.from_dict(SCHEMA_DOCUMENT, config=CONFIG)
turns = itertools.count()


@pytest.fixture(scope="module")
def funded_wallets(server: Server) -> Iterator[tuple[str, str]]:
    with server.client() as client:
        wallets = (new_wallet(client), new_wallet(client))
        for wallet_id in wallets:
            assert topup(client, wallet_id, 10**15).status_code == 201
    yield wallets


def _has_float(value: Any) -> bool:
    if isinstance(value, float):
        return True
    if isinstance(value, dict):
        return any(_has_float(item) for item in value.values())
    if isinstance(value, list):
        return any(_has_float(item) for item in value)
    return False


def _explained_rejection(response: schemathesis.Response, case: schemathesis.Case[Any]) -> bool:
    if response.status_code != 422:
        return False
    document = response.json()
    if document.get("code") in BUSINESS_DECLINES:
        return True
    errors = document.get("errors", [])
    if errors and all(any(rule in error["msg"] for rule in CROSS_FIELD_RULES) for error in errors):
        return True
    locations = [error["loc"] for error in errors]
    opaque = (["query", "cursor"], ["query", "after"])  # cursors the service never issued
    return _has_float(case.body) or (bool(locations) and all(loc in opaque for loc in locations))


def schema_valid_request_accepted(
    ctx: schemathesis.CheckContext, response: schemathesis.Response, case: schemathesis.Case[Any]
) -> bool | None:
    """Schemathesis's positive_data_acceptance, with the three exceptions of the module doc."""
    if case.meta is None or not case.meta.generation.mode.is_positive:
        return None
    if response.status_code in ACCEPTED_STATUSES or _explained_rejection(response, case):
        return None
    raise AssertionError(f"a schema-valid request was rejected: {response.status_code} {response.text}")


def _aim_at_funded_wallets(case: schemathesis.Case[Any], wallets: tuple[str, str]) -> None:
    if case.path_parameters and "wallet_id" in case.path_parameters:
        case.path_parameters["wallet_id"] = wallets[0]
    if case.path == "/v1/transfers" and isinstance(case.body, dict):
        case.body["from_wallet_id"], case.body["to_wallet_id"] = wallets


pytestmark = pytest.mark.schema


@schema.parametrize()
def test_every_operation_conforms_to_the_schema(
    case: schemathesis.Case[Any], server: Server, funded_wallets: tuple[str, str]
) -> None:
    headers = {"Authorization": f"Bearer {server.admin_key}"}
    positive = case.meta is not None and case.meta.generation.mode.is_positive
    if positive and case.path.endswith(MONEY_MOVEMENTS):
        headers["Idempotency-Key"] = f"schemathesis-{uuid.uuid4()}"
    if positive and next(turns) % 2 == 0:
        _aim_at_funded_wallets(case, funded_wallets)
    response = case.call(base_url=server.base_url, headers=headers, timeout=30)
    assert response.status_code < 500, response.text
    case.validate_response(
        response,
        excluded_checks=[positive_data_acceptance],
        additional_checks=[schema_valid_request_accepted],
        headers=headers,
    )


def test_the_served_schema_is_the_tested_one(client: httpx.Client) -> None:
    served = client.get("/openapi.json")
    assert served.status_code == 200
    assert served.json() == SCHEMA_DOCUMENT
