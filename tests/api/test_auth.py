"""Who may call what: every endpoint of API.md against every kind of credential.

Missing, malformed, unknown and revoked keys get 401 `unauthenticated`; a live key without the
endpoint's scope gets 403 `forbidden`; `admin` implies `wallets:read` and `wallets:write`, while
`wallets:write` alone does not imply `wallets:read`. The probes need no key at all. A denied call
changes nothing."""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import asyncpg
import httpx
import pytest

from support import Server, assert_ledger_ok, balance, create_key, new_wallet, topup, wallet_command

PROBLEM_MEDIA_TYPE = "application/problem+json"
READ = "wallets:read"
WRITE = "wallets:write"
ADMIN = "admin"


def assert_problem(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM_MEDIA_TYPE
    document = response.json()
    assert document["code"] == code, document
    assert document["status"] == status


# --- credentials ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Credential:
    authorization: str | None  # the Authorization header sent, None for none
    scopes: frozenset[str] | None  # what the service should grant; None: unauthenticated


CREDENTIALS = [
    "no-header",
    "basic-scheme",
    "bearer-without-key",
    "unknown-key",
    "not-a-wallet-key",
    "admin-key-under-token-scheme",
    "revoked-admin-key",
    "read-only",
    "write-only",
    "read-write",
    "admin",
]


@pytest.fixture(scope="module")
def credentials(server: Server) -> dict[str, Credential]:
    url = server.database_url
    revoked_name = f"revoked-{uuid.uuid4().hex[:12]}"
    revoked = create_key(url, ADMIN, name=revoked_name)
    wallet_command("keys", "revoke", revoked_name, database_url=url)
    unauthenticated: frozenset[str] | None = None
    return {
        "no-header": Credential(None, unauthenticated),
        "basic-scheme": Credential("Basic dXNlcjpwYXNzd29yZA==", unauthenticated),
        "bearer-without-key": Credential("Bearer", unauthenticated),
        "unknown-key": Credential(f"Bearer wk_{uuid.uuid4().hex}{uuid.uuid4().hex}", unauthenticated),
        "not-a-wallet-key": Credential("Bearer not-a-key", unauthenticated),
        "admin-key-under-token-scheme": Credential(f"Token {server.admin_key}", unauthenticated),
        "revoked-admin-key": Credential(f"Bearer {revoked}", unauthenticated),
        "read-only": Credential(f"Bearer {create_key(url, READ)}", frozenset({READ})),
        "write-only": Credential(f"Bearer {create_key(url, WRITE)}", frozenset({WRITE})),
        "read-write": Credential(f"Bearer {create_key(url, READ, WRITE)}", frozenset({READ, WRITE})),
        "admin": Credential(f"Bearer {server.admin_key}", frozenset({ADMIN})),
    }


@pytest.fixture
def anonymous(server: Server) -> Iterator[httpx.Client]:
    """A client that sends no Authorization header of its own."""
    with httpx.Client(base_url=server.base_url, timeout=30.0) as plain:
        yield plain


# --- endpoints -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Call:
    """One valid request, so that only the credential decides the outcome."""

    method: str
    path: str
    body: dict[str, Any] | None = None
    moves_money: bool = False  # sends a fresh Idempotency-Key
    observe: Callable[[httpx.Client], Any] | None = None  # state the call changes when it is allowed


@dataclass(frozen=True)
class Endpoint:
    name: str
    scope: str | None  # None: no key needed
    success: int
    prepare: Callable[[httpx.Client], Call]  # given an admin client, set up and describe the call


def funded_wallet(admin: httpx.Client, amount: int = 100) -> str:
    wallet_id = new_wallet(admin)
    assert topup(admin, wallet_id, amount).status_code == 201
    return wallet_id


def balances(*wallet_ids: str) -> Callable[[httpx.Client], tuple[int, ...]]:
    return lambda admin: tuple(balance(admin, wallet_id) for wallet_id in wallet_ids)


def wallets_of(owner_id: str) -> Callable[[httpx.Client], Any]:
    return lambda admin: admin.get("/v1/wallets", params={"owner_id": owner_id}).json()["data"]


def prepare_wallet_creation(admin: httpx.Client) -> Call:
    owner_id = f"user-{uuid.uuid4()}"
    return Call("POST", "/v1/wallets", {"owner_id": owner_id, "asset": "GOLD"}, observe=wallets_of(owner_id))


def prepare_wallet_search(admin: httpx.Client) -> Call:
    owner_id = f"user-{uuid.uuid4()}"
    new_wallet(admin, owner_id=owner_id)
    return Call("GET", f"/v1/wallets?owner_id={owner_id}")


def prepare_movement(kind: str) -> Callable[[httpx.Client], Call]:
    def prepare(admin: httpx.Client) -> Call:
        wallet_id = funded_wallet(admin)
        return Call("POST", f"/v1/wallets/{wallet_id}/{kind}", {"amount": 10}, True, balances(wallet_id))

    return prepare


def prepare_transfer(admin: httpx.Client) -> Call:
    sender, receiver = funded_wallet(admin), new_wallet(admin)
    body = {"from_wallet_id": sender, "to_wallet_id": receiver, "amount": 10}
    return Call("POST", "/v1/transfers", body, True, balances(sender, receiver))


def prepare_transaction_read(admin: httpx.Client) -> Call:
    wallet_id = new_wallet(admin)
    posted = topup(admin, wallet_id, 5)
    assert posted.status_code == 201, posted.text
    return Call("GET", f"/v1/transactions/{posted.json()['id']}")


ENDPOINTS = [
    Endpoint("GET-healthz", None, 200, lambda admin: Call("GET", "/healthz")),
    Endpoint("GET-readyz", None, 200, lambda admin: Call("GET", "/readyz")),
    Endpoint("GET-metrics", None, 200, lambda admin: Call("GET", "/metrics")),
    Endpoint("GET-assets", READ, 200, lambda admin: Call("GET", "/v1/assets")),
    Endpoint(
        "POST-assets",
        ADMIN,
        200,  # the asset exists with the same name: nothing is created, whoever asks
        lambda admin: Call("POST", "/v1/assets", {"code": "GOLD", "name": "Gold Coins"}),
    ),
    Endpoint("POST-wallets", WRITE, 201, prepare_wallet_creation),
    Endpoint("GET-wallets-by-owner", READ, 200, prepare_wallet_search),
    Endpoint("GET-wallet", READ, 200, lambda admin: Call("GET", f"/v1/wallets/{new_wallet(admin)}")),
    Endpoint("POST-topup", WRITE, 201, prepare_movement("topup")),
    Endpoint("POST-bonus", WRITE, 201, prepare_movement("bonus")),
    Endpoint("POST-spend", WRITE, 201, prepare_movement("spend")),
    Endpoint("POST-transfers", WRITE, 201, prepare_transfer),
    Endpoint(
        "GET-wallet-transactions",
        READ,
        200,
        lambda admin: Call("GET", f"/v1/wallets/{funded_wallet(admin)}/transactions?limit=5"),
    ),
    Endpoint("GET-transaction", READ, 200, prepare_transaction_read),
    Endpoint("GET-ledger-verify", ADMIN, 200, lambda admin: Call("GET", "/v1/ledger/verify")),
]


def expected_outcome(scope: str | None, granted: frozenset[str] | None) -> str:
    if scope is None:
        return "success"
    if granted is None:
        return "unauthenticated"
    if ADMIN in granted or scope in granted:
        return "success"
    return "forbidden"


def send(anonymous: httpx.Client, call: Call, authorization: str | None) -> httpx.Response:
    headers: dict[str, str] = {}
    if authorization is not None:
        headers["Authorization"] = authorization
    if call.moves_money:
        headers["Idempotency-Key"] = str(uuid.uuid4())
    return anonymous.request(call.method, call.path, json=call.body, headers=headers)


@pytest.mark.parametrize("credential_name", CREDENTIALS)
@pytest.mark.parametrize("endpoint", [pytest.param(endpoint, id=endpoint.name) for endpoint in ENDPOINTS])
def test_authorization_matrix(
    client: httpx.Client,
    anonymous: httpx.Client,
    credentials: dict[str, Credential],
    endpoint: Endpoint,
    credential_name: str,
) -> None:
    credential = credentials[credential_name]
    call = endpoint.prepare(client)
    before = call.observe(client) if call.observe else None
    response = send(anonymous, call, credential.authorization)
    assert response.status_code < 500, response.text
    outcome = expected_outcome(endpoint.scope, credential.scopes)
    if outcome == "success":
        assert response.status_code == endpoint.success, response.text
        if call.observe:
            assert call.observe(client) != before, "the allowed call changed nothing"
    else:
        assert_problem(response, 401 if outcome == "unauthenticated" else 403, outcome)
        if call.observe:
            assert call.observe(client) == before, "a denied call changed something"


def test_write_only_key_cannot_read_what_it_wrote(
    server: Server, anonymous: httpx.Client, credentials: dict[str, Credential]
) -> None:
    """wallets:write does not imply wallets:read (only admin implies both)."""
    writer = {"Authorization": credentials["write-only"].authorization or ""}
    created = anonymous.post(
        "/v1/wallets", json={"owner_id": f"user-{uuid.uuid4()}", "asset": "GOLD"}, headers=writer
    )
    assert created.status_code == 201, created.text
    wallet_id = created.json()["id"]
    posted = anonymous.post(
        f"/v1/wallets/{wallet_id}/topup", json={"amount": 5}, headers={**writer, "Idempotency-Key": "w-1"}
    )
    assert posted.status_code == 201, posted.text
    assert_problem(anonymous.get(f"/v1/wallets/{wallet_id}", headers=writer), 403, "forbidden")
    assert_problem(anonymous.get(f"/v1/transactions/{posted.json()['id']}", headers=writer), 403, "forbidden")
    reader = {"Authorization": credentials["read-only"].authorization or ""}
    assert anonymous.get(f"/v1/wallets/{wallet_id}", headers=reader).json()["balance"] == 5


@pytest.mark.parametrize(
    ("credential_name", "status", "code"),
    [
        pytest.param("no-header", 401, "unauthenticated", id="no-header"),
        pytest.param("unknown-key", 401, "unauthenticated", id="unknown-key"),
        pytest.param("revoked-admin-key", 401, "unauthenticated", id="revoked-key"),
        pytest.param("read-only", 403, "forbidden", id="read-only"),
    ],
)
@pytest.mark.parametrize(
    ("content", "idempotency_key"),
    [
        pytest.param(b'{"amount": ', "k", id="malformed-json"),
        pytest.param(b'{"amount": 5}', None, id="no-idempotency-key"),
        pytest.param(b'{"amount": 0.5}', "", id="invalid-amount-and-key"),
    ],
)
def test_credentials_are_checked_before_anything_else(
    client: httpx.Client,
    anonymous: httpx.Client,
    credentials: dict[str, Credential],
    credential_name: str,
    status: int,
    code: str,
    content: bytes,
    idempotency_key: str | None,
) -> None:
    """A caller without access learns nothing about the request, not even whether it is valid."""
    wallet_id = funded_wallet(client)
    headers = {"Content-Type": "application/json"}
    authorization = credentials[credential_name].authorization
    if authorization is not None:
        headers["Authorization"] = authorization
    if idempotency_key is not None:
        headers["Idempotency-Key"] = idempotency_key
    response = anonymous.post(f"/v1/wallets/{wallet_id}/spend", content=content, headers=headers)
    assert_problem(response, status, code)
    assert balance(client, wallet_id) == 100


@pytest.mark.parametrize("credential_name", ["no-header", "unknown-key", "read-only"])
def test_unknown_wallet_is_not_revealed_to_callers_without_access(
    anonymous: httpx.Client, credentials: dict[str, Credential], credential_name: str
) -> None:
    authorization = credentials[credential_name].authorization
    headers = {"Idempotency-Key": str(uuid.uuid4())}
    if authorization is not None:
        headers["Authorization"] = authorization
    response = anonymous.post(f"/v1/wallets/{uuid.uuid4()}/topup", json={"amount": 5}, headers=headers)
    status, code = (403, "forbidden") if credential_name == "read-only" else (401, "unauthenticated")
    assert_problem(response, status, code)


def test_revoked_key_stops_working_immediately(server: Server, client: httpx.Client) -> None:
    name = f"soon-revoked-{uuid.uuid4().hex[:12]}"
    secret = create_key(server.database_url, READ, WRITE, name=name)
    wallet_id = funded_wallet(client)
    with server.client(secret) as holder:  # one keep-alive connection, before and after
        assert holder.get(f"/v1/wallets/{wallet_id}").status_code == 200
        spent = holder.post(
            f"/v1/wallets/{wallet_id}/spend", json={"amount": 10}, headers={"Idempotency-Key": "r-1"}
        )
        assert spent.status_code == 201, spent.text

        wallet_command("keys", "revoke", name, database_url=server.database_url)

        assert_problem(holder.get(f"/v1/wallets/{wallet_id}"), 401, "unauthenticated")
        again = holder.post(
            f"/v1/wallets/{wallet_id}/spend", json={"amount": 10}, headers={"Idempotency-Key": "r-1"}
        )
        assert_problem(again, 401, "unauthenticated")  # not a replay: auth comes first
        fresh = holder.post(
            f"/v1/wallets/{wallet_id}/spend", json={"amount": 10}, headers={"Idempotency-Key": "r-2"}
        )
        assert_problem(fresh, 401, "unauthenticated")
    assert balance(client, wallet_id) == 90
    assert_ledger_ok(client)


def test_api_keys_never_appear_in_the_server_log(
    server: Server, anonymous: httpx.Client, client: httpx.Client, credentials: dict[str, Credential]
) -> None:
    read_only = (credentials["read-only"].authorization or "").removeprefix("Bearer ")
    bad_key = f"wk_{uuid.uuid4().hex}"
    wallet_id = funded_wallet(client)
    requests = [
        ("GET", f"/v1/wallets/{wallet_id}", server.admin_key),
        ("GET", f"/v1/wallets/{wallet_id}", bad_key),
        ("GET", f"/v1/wallets/{wallet_id}", read_only),
        ("POST", f"/v1/wallets/{wallet_id}/spend", read_only),  # 403
        ("POST", f"/v1/wallets/{wallet_id}/spend", bad_key),  # 401
        ("GET", "/v1/ledger/verify", read_only),  # 403
        ("GET", "/v1/nope", server.admin_key),  # 404
        ("POST", f"/v1/wallets/{wallet_id}/spend", server.admin_key),  # 201
    ]
    for method, path, secret in requests:
        headers = {"Authorization": f"Bearer {secret}", "Idempotency-Key": str(uuid.uuid4())}
        response = anonymous.request(method, path, json={"amount": 1}, headers=headers)
        assert response.status_code < 500, response.text
    log = server.log_path.read_bytes()
    for secret in (server.admin_key, bad_key, read_only):
        assert secret.encode() not in log
        assert secret.removeprefix("wk_").encode() not in log


def test_the_database_holds_api_keys_only_as_hashes(
    server: Server, credentials: dict[str, Credential]
) -> None:
    """No row of any table contains a key, with or without its `wk_` prefix; api_key holds the
    SHA-256 of each."""
    read_only = (credentials["read-only"].authorization or "").removeprefix("Bearer ")
    secrets_sent = [server.admin_key, read_only]

    async def scan() -> tuple[list[str], list[bytes]]:
        connection = await asyncpg.connect(server.database_url, timeout=10)
        try:
            tables = await connection.fetch(
                "SELECT quote_ident(tablename) AS name FROM pg_tables WHERE schemaname = 'public'"
            )
            found = []
            for secret in secrets_sent:
                for fragment in (secret, secret.removeprefix("wk_")):
                    for table in tables:
                        query = f"SELECT count(*) FROM {table['name']} AS r WHERE strpos(r::text, $1) > 0"  # noqa: S608
                        if await connection.fetchval(query, fragment):
                            found.append(f"{table['name']} contains {fragment[:6]}...")
            hashes = [row["key_hash"] for row in await connection.fetch("SELECT key_hash FROM api_key")]
            return found, hashes
        finally:
            await connection.close()

    found, hashes = asyncio.run(scan())
    assert found == []
    for secret in secrets_sent:
        assert hashlib.sha256(secret.encode()).digest() in hashes
        assert all(secret.encode() not in stored and secret[3:].encode() not in stored for stored in hashes)
