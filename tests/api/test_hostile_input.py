"""Hostile requests beyond the body: oversized and too many header fields, a long request line, a
request head that never finishes, and owner ids in every script. Each gets its documented 4xx,
never a 500 or a hang, and the server keeps serving.

The request-head limits (wallet.api.protocol) hold before the application sees anything, so
these tests speak HTTP over raw sockets, where nothing trims or refuses what they send.
"""

from __future__ import annotations

import asyncio
import json
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import asyncpg
import httpx
import pytest

from support import Server, balance, new_wallet, start_server, topup
from wallet.api.protocol import REQUEST_HEAD_SIZE_MAX, REQUEST_HEADER_COUNT_MAX

PROBLEM_MEDIA_TYPE = "application/problem+json"
SOCKET_TIMEOUT_SECONDS = 15.0
TIMEOUT_MS_REQUEST_HEAD = 500


# --- raw HTTP ------------------------------------------------------------------------------------


def request_head(method: str, target: str, headers: list[tuple[str, str]]) -> bytes:
    lines = [
        f"{method} {target} HTTP/1.1",
        "Host: 127.0.0.1",
        *(f"{name}: {value}" for name, value in headers),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def exchange(port: int, request: bytes, chunk_size: int = 64 * 1024) -> tuple[int, dict[str, str], bytes]:
    """Send `request` in chunks and read one response: status, headers (lower-case names), body.
    A server that answers before the whole request is sent must still be read."""
    with socket.create_connection(("127.0.0.1", port), timeout=SOCKET_TIMEOUT_SECONDS) as connection:
        try:
            for start in range(0, len(request), chunk_size):
                connection.sendall(request[start : start + chunk_size])
        except (BrokenPipeError, ConnectionResetError):
            pass  # the answer is in the receive buffer
        return read_response(connection)


def read_response(connection: socket.socket) -> tuple[int, dict[str, str], bytes]:
    received = b""
    while b"\r\n\r\n" not in received:
        chunk = connection.recv(65536)
        assert chunk, f"connection closed without a complete answer: {received!r}"
        received += chunk
    head, _, body = received.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    while len(body) < int(headers["content-length"]):
        chunk = connection.recv(65536)
        assert chunk, "connection closed in the middle of the body"
        body += chunk
    return int(status_line.split()[1]), headers, body


def assert_raw_problem(answer: tuple[int, dict[str, str], bytes], status: int, code: str) -> dict[str, Any]:
    answered_status, headers, body = answer
    assert answered_status == status, (answered_status, body[:300])
    assert headers["content-type"] == PROBLEM_MEDIA_TYPE
    document: dict[str, Any] = json.loads(body)
    assert (document["status"], document["code"]) == (status, code), document
    return document


def fillers(count: int) -> list[tuple[str, str]]:
    return [(f"X-Filler-{number}", "v") for number in range(count)]


# --- request heads -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "size",
    [pytest.param(20 * 1024, id="20-KiB"), pytest.param(10 * 1024 * 1024, id="10-MiB")],
)
def test_huge_authorization_header_is_431(server: Server, size: int) -> None:
    head = request_head("GET", "/v1/assets", [("Authorization", "Bearer wk_" + "a" * size)])
    answer = exchange(server.port, head)
    assert_raw_problem(answer, 431, "headers_too_large")
    assert answer[1]["connection"] == "close"


def test_huge_idempotency_key_is_431_and_moves_nothing(server: Server, client: httpx.Client) -> None:
    wallet_id = new_wallet(client)
    assert topup(client, wallet_id, 100).status_code == 201
    headers = [
        ("Authorization", f"Bearer {server.admin_key}"),
        ("Content-Type", "application/json"),
        ("Content-Length", "13"),
        ("Idempotency-Key", "k" * (100 * 1024)),
    ]
    request = request_head("POST", f"/v1/wallets/{wallet_id}/spend", headers) + b'{"amount": 5}'
    assert_raw_problem(exchange(server.port, request), 431, "headers_too_large")
    assert balance(client, wallet_id) == 100


def test_too_many_header_fields_is_431_and_the_maximum_is_served(server: Server) -> None:
    authorization = ("Authorization", f"Bearer {server.admin_key}")
    # Host and Authorization count too.
    at_the_limit = request_head("GET", "/v1/assets", [authorization, *fillers(REQUEST_HEADER_COUNT_MAX - 2)])
    assert exchange(server.port, at_the_limit)[0] == 200
    over_the_limit = request_head(
        "GET", "/v1/assets", [authorization, *fillers(REQUEST_HEADER_COUNT_MAX - 1)]
    )
    assert_raw_problem(exchange(server.port, over_the_limit), 431, "headers_too_large")


def test_head_just_under_the_size_limit_is_served(server: Server) -> None:
    authorization = ("Authorization", f"Bearer {server.admin_key}")
    padding = REQUEST_HEAD_SIZE_MAX - 200 - len(authorization[1])
    head = request_head("GET", "/v1/assets", [authorization, ("X-Padding", "p" * padding)])
    assert len(head) < REQUEST_HEAD_SIZE_MAX
    assert exchange(server.port, head, chunk_size=1000)[0] == 200


def test_long_request_line_is_431(server: Server) -> None:
    target = "/v1/wallets?owner_id=" + "o" * (REQUEST_HEAD_SIZE_MAX + 1)
    head = request_head("GET", target, [("Authorization", f"Bearer {server.admin_key}")])
    assert_raw_problem(exchange(server.port, head), 431, "headers_too_large")


def test_long_credentials_under_the_head_limit_are_401(server: Server) -> None:
    head = request_head("GET", "/v1/assets", [("Authorization", "Bearer wk_" + "a" * 8000)])
    assert_raw_problem(exchange(server.port, head), 401, "unauthenticated")


def test_long_idempotency_key_under_the_head_limit_is_400(server: Server, client: httpx.Client) -> None:
    wallet_id = new_wallet(client)
    response = client.post(
        f"/v1/wallets/{wallet_id}/topup", json={"amount": 5}, headers={"Idempotency-Key": "k" * 8000}
    )
    assert response.status_code == 400, response.text
    assert response.json()["code"] == "idempotency_key_invalid"
    assert balance(client, wallet_id) == 0


@pytest.fixture(scope="module")
def impatient_server(
    create_database: Callable[[], str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """A server that waits TIMEOUT_MS_REQUEST_HEAD for a request's head."""
    log_path = tmp_path_factory.mktemp("impatient") / "server.log"
    environment = {"WALLET_TIMEOUT_MS_REQUEST_HEAD": str(TIMEOUT_MS_REQUEST_HEAD)}
    running = start_server(create_database(), log_path, env=environment)
    try:
        yield running
    finally:
        running.stop()


def test_unfinished_request_head_gets_408_after_the_timeout(impatient_server: Server) -> None:
    with socket.create_connection(
        ("127.0.0.1", impatient_server.port), timeout=SOCKET_TIMEOUT_SECONDS
    ) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Never")
        started = time.monotonic()
        answer = read_response(sock)
        seconds = time.monotonic() - started
    assert_raw_problem(answer, 408, "request_timeout")
    assert TIMEOUT_MS_REQUEST_HEAD / 1000 * 0.9 <= seconds <= TIMEOUT_MS_REQUEST_HEAD / 1000 + 2.0


def test_silent_connection_is_closed_after_the_head_timeout(impatient_server: Server) -> None:
    with socket.create_connection(
        ("127.0.0.1", impatient_server.port), timeout=SOCKET_TIMEOUT_SECONDS
    ) as sock:
        started = time.monotonic()
        assert sock.recv(1) == b""
        seconds = time.monotonic() - started
    assert seconds <= TIMEOUT_MS_REQUEST_HEAD / 1000 + 2.0


def test_second_request_on_a_connection_has_the_same_head_timeout(impatient_server: Server) -> None:
    with socket.create_connection(
        ("127.0.0.1", impatient_server.port), timeout=SOCKET_TIMEOUT_SECONDS
    ) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        assert read_response(sock)[0] == 200
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        assert_raw_problem(read_response(sock), 408, "request_timeout")
    assert httpx.get(f"{impatient_server.base_url}/healthz").status_code == 200


# --- owner ids in every script -------------------------------------------------------------------


def with_suffix(text: str, length: int | None = None) -> str:
    """`text` made unique for this session; cut to `length` code points when given."""
    unique = f"{text}-{uuid.uuid4()}"
    return unique if length is None else (text * length)[: length - 37] + unique[len(text) :]


UNICODE_OWNER_IDS = [
    pytest.param("player-\U0001f600\U0001f3ae", id="emoji"),
    pytest.param("\U0001f469\u200d\U0001f469\u200d\U0001f467\u200d\U0001f466", id="zwj-family"),
    pytest.param("\u0645\u0633\u062a\u062e\u062f\u0645-\u0664\u0662", id="arabic-rtl"),
    pytest.param("\u05de\u05e9\u05ea\u05de\u05e9", id="hebrew-rtl"),
    pytest.param("e\u0301t\u0301e\u0301", id="combining-acute"),
    pytest.param("Z\u0351\u0352\u0357\u035b\u0316\u0317", id="stacked-combining"),
    pytest.param("\u7528\u6237\u56db\u5341\u4e8c", id="cjk"),
    pytest.param("\u202eright-to-left-override", id="rtl-override"),
    pytest.param("\ufeffbom\u200bzero-width", id="bom-zero-width"),
]


def database_owner_id(database_url: str, wallet_id: str) -> bytes:
    async def read() -> bytes:
        connection = await asyncpg.connect(database_url, timeout=10)
        try:
            value = await connection.fetchval(
                "SELECT convert_to(owner_id, 'UTF8') FROM account WHERE id = $1", uuid.UUID(wallet_id)
            )
        finally:
            await connection.close()
        assert isinstance(value, bytes)
        return value

    return asyncio.run(read())


def assert_round_trip(server: Server, client: httpx.Client, owner_id: str) -> None:
    """Created, read back, found by search and stored: the same bytes every time."""
    encoded = owner_id.encode("utf-8")
    created = client.post("/v1/wallets", json={"owner_id": owner_id, "asset": "GOLD"})
    assert created.status_code == 201, created.text
    assert created.json()["owner_id"] == owner_id
    assert b'"owner_id":"' + encoded + b'"' in created.content
    wallet_id = created.json()["id"]
    read = client.get(f"/v1/wallets/{wallet_id}")
    assert b'"owner_id":"' + encoded + b'"' in read.content
    found = client.get("/v1/wallets", params={"owner_id": owner_id})
    assert [wallet["id"] for wallet in found.json()["data"]] == [wallet_id]
    assert database_owner_id(server.database_url, wallet_id) == encoded
    again = client.post("/v1/wallets", json={"owner_id": owner_id, "asset": "GOLD"})
    assert (again.status_code, again.json()["id"]) == (200, wallet_id)


@pytest.mark.parametrize("text", UNICODE_OWNER_IDS)
def test_unicode_owner_id_round_trips_byte_exact(server: Server, client: httpx.Client, text: str) -> None:
    assert_round_trip(server, client, with_suffix(text))


def test_owner_id_of_128_emoji_code_points_is_accepted_and_129_is_not(
    server: Server, client: httpx.Client
) -> None:
    owner_id = with_suffix("\U0001f600", length=128)
    assert len(owner_id) == 128 and len(owner_id.encode()) > 128
    assert_round_trip(server, client, owner_id)
    too_long = client.post("/v1/wallets", json={"owner_id": owner_id + "\U0001f600", "asset": "GOLD"})
    assert too_long.status_code == 422, too_long.text
    assert ["body", "owner_id"] in [error["loc"] for error in too_long.json()["errors"]]


def test_owner_ids_are_not_unicode_normalised(server: Server, client: httpx.Client) -> None:
    """NFC and NFD spellings of one name are two owners: ids are compared byte for byte."""
    suffix = f"-{uuid.uuid4()}"
    composed, decomposed = "caf\u00e9" + suffix, "cafe\u0301" + suffix
    first = client.post("/v1/wallets", json={"owner_id": composed, "asset": "GOLD"})
    second = client.post("/v1/wallets", json={"owner_id": decomposed, "asset": "GOLD"})
    assert (first.status_code, second.status_code) == (201, 201)
    assert first.json()["id"] != second.json()["id"]


@pytest.mark.parametrize(
    "owner_id",
    [
        pytest.param("user\u0000nul", id="nul"),
        pytest.param("user\u0085next-line", id="c1-next-line"),
        pytest.param("user\u001bescape", id="escape"),
    ],
)
def test_owner_id_with_control_characters_is_rejected(client: httpx.Client, owner_id: str) -> None:
    owner_id += str(uuid.uuid4())
    response = client.post("/v1/wallets", json={"owner_id": owner_id, "asset": "GOLD"})
    assert response.status_code == 422, response.text
    assert client.get("/v1/wallets", params={"owner_id": owner_id}).status_code == 422


def test_the_server_still_serves_after_all_of_it(server: Server) -> None:
    assert httpx.get(f"{server.base_url}/readyz").status_code == 200
