"""Hostile requests beyond the bad-input table: oversized and too many header fields, a long
request line, a request head or body that never finishes, idle kept-alive connections, clients
that leave mid-body, Idempotency-Keys with surrounding whitespace, trailing-slash paths with a
forged Host, deep nesting, reserved key names, an inherited demo key, and owner ids in every
script. Each gets its documented answer, never a 500 or a hang, and the server keeps serving.

The limits of the HTTP protocol (wallet.api.protocol) hold before the application sees anything,
so these tests speak HTTP over raw sockets, where nothing trims or refuses what they send.
"""

from __future__ import annotations

import asyncio
import json
import re
import select
import socket
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from typing import Any

import asyncpg
import httpx
import pytest

from support import Server, balance, new_wallet, start_server, topup, wallet_command
from wallet.api.protocol import REQUEST_HEAD_SIZE_MAX, REQUEST_HEADER_COUNT_MAX

PROBLEM_MEDIA_TYPE = "application/problem+json"
SOCKET_TIMEOUT_SECONDS = 15.0
LOG_WAIT_SECONDS = 15.0
TIMEOUT_MS_REQUEST_HEAD = 500
TIMEOUT_MS_REQUEST_BODY = 1000
TIMEOUT_MS_KEEP_ALIVE = 500
# What a slow, shared machine may add to a timeout before the answer is seen.
SLACK_SECONDS = 3.0
TRICKLE_INTERVAL_SECONDS = 0.2
INHERITED_DEMO_KEY = "wk_inherited-from-the-environment"
RANDOM_REQUEST_ID = re.compile(r"[0-9a-f]{32}")


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
    """A problem answer, with an X-Request-ID like every answer (the protocol's own included)."""
    answered_status, headers, body = answer
    assert answered_status == status, (answered_status, body[:300])
    assert headers["content-type"] == PROBLEM_MEDIA_TYPE
    assert 1 <= len(headers.get("x-request-id", "")) <= 128, headers
    document: dict[str, Any] = json.loads(body)
    assert (document["status"], document["code"]) == (status, code), document
    return document


def closed_by_server(sock: socket.socket, timeout_seconds: float) -> bool:
    """Whether the server closes the connection within `timeout_seconds` (reading what it sends)."""
    deadline = time.monotonic() + timeout_seconds
    while (remaining := deadline - time.monotonic()) > 0:
        if select.select([sock], [], [], remaining)[0]:
            try:
                if sock.recv(65536) == b"":
                    return True
            except ConnectionResetError:
                return True
    return False


def access_status(lines: list[dict[str, Any]]) -> int:
    statuses = [line["status"] for line in lines if line.get("event") == "request"]
    assert len(statuses) == 1, lines
    status: int = statuses[0]
    return status


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


def test_parser_refusal_is_problem_json_with_a_request_id(server: Server) -> None:
    head = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Bad: a\x01b\r\n\r\n"
    document = assert_raw_problem(exchange(server.port, head), 400, "malformed_request")
    assert document["title"] == "Malformed request"


def test_protocol_answers_carry_the_clients_request_id(server: Server) -> None:
    request_id = f"probe-{uuid.uuid4()}"
    headers = [("X-Request-ID", request_id), *fillers(REQUEST_HEADER_COUNT_MAX)]
    answer = exchange(server.port, request_head("GET", "/healthz", headers))
    assert_raw_problem(answer, 431, "headers_too_large")
    assert answer[1]["x-request-id"] == request_id
    refused = [line for line in server.log_lines(request_id) if line.get("event") == "request"]
    assert [(line["status"], line["code"]) for line in refused] == [(431, "headers_too_large")]


@pytest.fixture(scope="module")
def impatient_server(
    create_database: Callable[[], str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """A seeded server that waits TIMEOUT_MS_REQUEST_HEAD for a request's head,
    TIMEOUT_MS_REQUEST_BODY for its body and TIMEOUT_MS_KEEP_ALIVE between requests, started on
    an external database with a WALLET_DEMO_UI_KEY in its environment."""
    log_path = tmp_path_factory.mktemp("impatient") / "server.log"
    environment = {
        "WALLET_TIMEOUT_MS_REQUEST_HEAD": str(TIMEOUT_MS_REQUEST_HEAD),
        "WALLET_TIMEOUT_MS_REQUEST_BODY": str(TIMEOUT_MS_REQUEST_BODY),
        "WALLET_TIMEOUT_MS_KEEP_ALIVE": str(TIMEOUT_MS_KEEP_ALIVE),
        "WALLET_DEMO_UI_KEY": INHERITED_DEMO_KEY,
    }
    database_url = create_database()
    wallet_command("db", "seed", database_url=database_url)
    running = start_server(database_url, log_path, env=environment)
    try:
        yield running
    finally:
        running.stop()


def test_unfinished_request_head_gets_408_after_the_timeout(impatient_server: Server) -> None:
    with socket.create_connection(
        ("127.0.0.1", impatient_server.port), timeout=SOCKET_TIMEOUT_SECONDS
    ) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Request-ID: slow-head\r\nX-Never")
        started = time.monotonic()
        answer = read_response(sock)
        seconds = time.monotonic() - started
    assert_raw_problem(answer, 408, "request_timeout")
    assert answer[1]["x-request-id"] == "slow-head"
    assert TIMEOUT_MS_REQUEST_HEAD / 1000 * 0.9 <= seconds <= TIMEOUT_MS_REQUEST_HEAD / 1000 + SLACK_SECONDS


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
        answer = read_response(sock)
    assert_raw_problem(answer, 408, "request_timeout")
    assert RANDOM_REQUEST_ID.fullmatch(answer[1]["x-request-id"])
    assert httpx.get(f"{impatient_server.base_url}/healthz").status_code == 200


# --- bodies that never finish, idle connections, clients that leave ------------------------------


def spend_head(server: Server, wallet_id: str, request_id: str, *, chunked: bool = False) -> bytes:
    """The head of an authenticated spend of a body that is announced but not sent yet."""
    length = ("Transfer-Encoding", "chunked") if chunked else ("Content-Length", "100")
    headers = [
        ("Authorization", f"Bearer {server.admin_key}"),
        ("Content-Type", "application/json"),
        ("Idempotency-Key", str(uuid.uuid4())),
        ("X-Request-ID", request_id),
        length,
    ]
    return request_head("POST", f"/v1/wallets/{wallet_id}/spend", headers)


def funded_wallet(server: Server) -> str:
    with server.client() as client:
        wallet_id = new_wallet(client)
        assert topup(client, wallet_id, 100).status_code == 201
    return wallet_id


def test_stalled_body_gets_408_after_the_body_timeout(impatient_server: Server) -> None:
    wallet_id = funded_wallet(impatient_server)
    request_id = f"stalled-{uuid.uuid4()}"
    with socket.create_connection(
        ("127.0.0.1", impatient_server.port), timeout=SOCKET_TIMEOUT_SECONDS
    ) as sock:
        sock.sendall(spend_head(impatient_server, wallet_id, request_id) + b'{"amount": 5')  # 12 of 100
        started = time.monotonic()
        answer = read_response(sock)
        seconds = time.monotonic() - started
        assert closed_by_server(sock, SLACK_SECONDS)
    assert_raw_problem(answer, 408, "request_timeout")
    assert answer[1]["connection"] == "close"
    assert answer[1]["x-request-id"] == request_id
    assert TIMEOUT_MS_REQUEST_BODY / 1000 * 0.9 <= seconds <= TIMEOUT_MS_REQUEST_BODY / 1000 + SLACK_SECONDS
    # The application, which was waiting for the body, logs the same status under the same id.
    lines = impatient_server.log_lines(request_id)
    assert access_status(lines) == 408
    assert not [line for line in lines if line.get("level") == "error"], lines
    with impatient_server.client() as client:
        assert balance(client, wallet_id) == 100


def trickle(sock: socket.socket, byte: bytes, *, chunked: bool) -> Iterator[int]:
    """Send one byte of body every TRICKLE_INTERVAL_SECONDS (each gap well inside the body
    timeout) until the server sends something; yields the count sent so far. Bounded."""
    for sent in range(1, 200):
        sock.sendall(b"1\r\n" + byte + b"\r\n" if chunked else byte)
        yield sent
        if select.select([sock], [], [], TRICKLE_INTERVAL_SECONDS)[0]:
            return
    raise AssertionError("the server never answered a trickling body")


def test_chunked_body_trickling_gets_408_after_the_body_timeout(impatient_server: Server) -> None:
    """The body timeout bounds the whole body, not the gap between two bytes."""
    wallet_id = funded_wallet(impatient_server)
    request_id = f"trickle-{uuid.uuid4()}"
    with socket.create_connection(
        ("127.0.0.1", impatient_server.port), timeout=SOCKET_TIMEOUT_SECONDS
    ) as sock:
        sock.sendall(spend_head(impatient_server, wallet_id, request_id, chunked=True))
        started = time.monotonic()
        sent = max(trickle(sock, b" ", chunked=True))
        answer = read_response(sock)
        seconds = time.monotonic() - started
    assert_raw_problem(answer, 408, "request_timeout")
    assert answer[1]["x-request-id"] == request_id
    assert sent >= TIMEOUT_MS_REQUEST_BODY / 1000 / TRICKLE_INTERVAL_SECONDS / 2
    assert TIMEOUT_MS_REQUEST_BODY / 1000 * 0.9 <= seconds <= TIMEOUT_MS_REQUEST_BODY / 1000 + SLACK_SECONDS
    with impatient_server.client() as client:
        assert balance(client, wallet_id) == 100


@pytest.mark.parametrize("client_request_id", [True, False], ids=["client-id", "no-client-id"])
@pytest.mark.parametrize("separately", [True, False], ids=["after-the-head", "with-the-head"])
def test_broken_chunked_body_is_400_malformed_request(
    server: Server, client_request_id: bool, separately: bool
) -> None:
    """The HTTP parser refuses the body of a request the application has (its head was
    complete): the protocol answers 400, and the application's access line records that status
    under the same request id, whether its task had begun or not."""
    wallet_id = funded_wallet(server)
    request_id = f"broken-chunk-{uuid.uuid4()}"
    head = spend_head(server, wallet_id, request_id, chunked=True) + b"1\r\n{\r\n"
    if not client_request_id:
        head = head.replace(f"X-Request-ID: {request_id}".encode(), f"X-Trace: {request_id}".encode())
    with socket.create_connection(("127.0.0.1", server.port), timeout=SOCKET_TIMEOUT_SECONDS) as sock:
        if separately:
            sock.sendall(head)
            head = b""
        sock.sendall(head + b"zz\r\nnot a chunk\r\n")
        answer = read_response(sock)
    if not client_request_id:
        request_id = answer[1]["x-request-id"]
        assert RANDOM_REQUEST_ID.fullmatch(request_id)
    assert_raw_problem(answer, 400, "malformed_request")
    assert answer[1]["x-request-id"] == request_id
    assert access_status(server.log_lines(request_id)) == 400
    with server.client() as client:
        assert balance(client, wallet_id) == 100


def test_unauthenticated_trickle_is_closed_after_its_401(impatient_server: Server) -> None:
    """The 401 goes out at once, before the body; the connection does not stay open for the rest."""
    headers = [
        ("Content-Type", "application/json"),
        ("Idempotency-Key", "k"),
        ("Transfer-Encoding", "chunked"),
    ]
    with socket.create_connection(
        ("127.0.0.1", impatient_server.port), timeout=SOCKET_TIMEOUT_SECONDS
    ) as sock:
        sock.sendall(request_head("POST", "/v1/transfers", headers))
        assert_raw_problem(read_response(sock), 401, "unauthenticated")
        started = time.monotonic()
        closed = False
        for _ in trickle(sock, b"x", chunked=True):
            closed = closed_by_server(sock, 0)
            if closed:
                break
        closed = closed or closed_by_server(sock, SLACK_SECONDS)
        seconds = time.monotonic() - started
    assert closed
    assert seconds <= TIMEOUT_MS_REQUEST_BODY / 1000 + SLACK_SECONDS


def test_idle_kept_alive_connection_is_closed_after_the_keep_alive_timeout(impatient_server: Server) -> None:
    with socket.create_connection(
        ("127.0.0.1", impatient_server.port), timeout=SOCKET_TIMEOUT_SECONDS
    ) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        status, headers, _ = read_response(sock)
        started = time.monotonic()
        assert (status, headers.get("connection")) == (200, None)
        assert closed_by_server(sock, TIMEOUT_MS_KEEP_ALIVE / 1000 + SLACK_SECONDS)
        seconds = time.monotonic() - started
    assert seconds >= TIMEOUT_MS_KEEP_ALIVE / 1000 * 0.9


STALLED_CONNECTIONS = 200


@pytest.mark.slow
def test_200_stalled_bodies_do_not_stop_other_clients_and_each_gets_408(server: Server) -> None:
    """On the suite's server, with the default 10 s body timeout: while 200 authenticated spends
    wait for bodies that never come, another client is served; then each stalled one gets 408."""
    wallet_id = funded_wallet(server)
    request_ids = [f"stall-{number}-{uuid.uuid4()}" for number in range(STALLED_CONNECTIONS)]
    with ExitStack() as stack:
        stalled = []
        for request_id in request_ids:
            sock = stack.enter_context(socket.create_connection(("127.0.0.1", server.port), timeout=30))
            sock.sendall(spend_head(server, wallet_id, request_id) + b'{"amount": 5')
            stalled.append(sock)
        with server.client() as client:
            other = new_wallet(client)
            assert topup(client, other, 7).status_code == 201
            assert balance(client, other) == 7
            assert client.get("/v1/ledger/verify").json()["ok"]
        assert not select.select(stalled, [], [], 0)[0], "a stalled request was answered early"
        answers = [read_response(sock) for sock in stalled]
    for request_id, answer in zip(request_ids, answers, strict=True):
        assert_raw_problem(answer, 408, "request_timeout")
        assert answer[1]["x-request-id"] == request_id
    with server.client() as client:
        assert balance(client, wallet_id) == 100


def test_client_leaving_mid_body_is_not_a_server_error(server: Server) -> None:
    """Logged as the client's doing (status 499), not as internal_error with a traceback, and
    not counted as a 500."""
    wallet_id = funded_wallet(server)
    request_id = f"leaves-{uuid.uuid4()}"
    with socket.create_connection(("127.0.0.1", server.port), timeout=SOCKET_TIMEOUT_SECONDS) as sock:
        sock.sendall(spend_head(server, wallet_id, request_id) + b'{"amount": 5')  # 12 of 100, then gone
    lines = server.log_lines(request_id)
    assert access_status(lines) == 499, lines
    assert [line["event"] for line in lines] == ["client_disconnected", "request"], lines
    server_errors = [
        line
        for line in httpx.get(f"{server.base_url}/metrics").text.splitlines()
        if line.startswith("wallet_http_requests_total")
        and 'route="/v1/wallets/{wallet_id}/spend"' in line
        and 'status="500"' in line
    ]
    assert server_errors == []
    with server.client() as client:
        assert balance(client, wallet_id) == 100


# --- Idempotency-Key whitespace, trailing slashes, deep nesting ----------------------------------


def raw_topup(server: Server, wallet_id: str, key: bytes) -> tuple[int, dict[str, str], bytes]:
    body = b'{"amount": 5}'
    head = (
        f"POST /v1/wallets/{wallet_id}/topup HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {server.admin_key}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n"
    ).encode()
    return exchange(server.port, head + b"Idempotency-Key: " + key + b"\r\n\r\n" + body)


def test_idempotency_key_surrounding_whitespace_is_not_part_of_the_key(
    server: Server, client: httpx.Client
) -> None:
    """`key `, `key`, `key  ` and `key<TAB>` are one key: a retry through a proxy that trims
    whitespace replays instead of moving money twice."""
    wallet_id = new_wallet(client)
    key = str(uuid.uuid4()).encode()
    first = raw_topup(server, wallet_id, key + b" ")
    assert first[0] == 201, first
    for variant in (key, key + b"  ", key + b"\t", b"\t " + key + b" \t"):
        again = raw_topup(server, wallet_id, variant)
        assert (again[0], again[1].get("idempotent-replayed"), again[2]) == (201, "true", first[2]), variant
    assert balance(client, wallet_id) == 5


@pytest.mark.parametrize("key", [b" ", b"   ", b"\t", b" \t \t "])
def test_idempotency_key_of_only_whitespace_is_invalid(
    server: Server, client: httpx.Client, key: bytes
) -> None:
    wallet_id = new_wallet(client)
    assert_raw_problem(raw_topup(server, wallet_id, key), 400, "idempotency_key_invalid")
    assert balance(client, wallet_id) == 0


@pytest.mark.parametrize(
    ("method", "target", "authorised"),
    [
        ("GET", "/v1/assets/", False),
        ("GET", "/v1/assets/", True),
        ("POST", "/v1/wallets/", False),
        ("GET", "/v1/wallets/?owner_id=x", True),
        ("GET", "/docs/", False),
    ],
)
def test_trailing_slash_is_404_and_never_a_redirect_to_the_host_header(
    server: Server, method: str, target: str, authorised: bool
) -> None:
    lines = [f"{method} {target} HTTP/1.1", "Host: evil.test", "Content-Length: 0"]
    if authorised:
        lines.append(f"Authorization: Bearer {server.admin_key}")
    answer = exchange(server.port, ("\r\n".join(lines) + "\r\n\r\n").encode())
    assert "location" not in answer[1], answer[1]
    assert_raw_problem(answer, 404, "not_found")


def test_deep_nesting_is_a_422_with_one_log_line_not_a_traceback(
    server: Server, client: httpx.Client
) -> None:
    """The 664-byte body of the report: 320 levels of lists in metadata."""
    wallet_id = new_wallet(client)
    body = b'{"amount":1,"metadata":{"a":' + b"[" * 320 + b"]" * 320 + b"}}"
    assert len(body) < 700  # the report sent 664 bytes
    request_id = f"deep-{uuid.uuid4()}"
    headers = {
        "Idempotency-Key": str(uuid.uuid4()),
        "X-Request-ID": request_id,
        "Content-Type": "application/json",
    }
    response = client.post(f"/v1/wallets/{wallet_id}/topup", content=body, headers=headers)
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["loc"] == ["body", "metadata"]
    lines = server.log_lines(request_id)
    assert access_status(lines) == 422
    assert len(lines) == 1, lines
    assert balance(client, wallet_id) == 0


# --- keys and the demo UI ------------------------------------------------------------------------


def test_keys_create_refuses_the_demo_ui_name_prefix(server: Server) -> None:
    """`wallet serve` on the embedded database revokes every `demo-ui-*` key at each start."""
    name = f"demo-ui-{uuid.uuid4().hex[:8]}"
    arguments = ("keys", "create", "--name", name, "--scope", "admin")
    result = wallet_command(*arguments, database_url=server.database_url, check=False)
    assert result.returncode == 2, result
    assert "Traceback" not in result.stderr
    assert "reserved" in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert name not in wallet_command("keys", "list", database_url=server.database_url).stdout


def test_inherited_demo_key_is_not_handed_out_on_an_external_database(impatient_server: Server) -> None:
    response = httpx.get(f"{impatient_server.base_url}/ui/session", timeout=10)
    assert response.status_code == 404
    assert INHERITED_DEMO_KEY not in response.text


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
