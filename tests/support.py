"""Shared test helpers: database URLs, the `wallet` command, a running server."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import asyncpg
import httpx
import pytest

if TYPE_CHECKING:
    from wallet.db.embedded import EmbeddedPostgres

WALLET = str(Path(sys.executable).with_name("wallet"))
SERVER_START_TIMEOUT_SECONDS = 30.0
ACCESS_LINE_WAIT_SECONDS = 15.0
# Generous timeouts for servers of the tests; a test passes smaller ones in its environment.
SERVER_TIMEOUTS = {
    "WALLET_TIMEOUT_MS_POOL_ACQUIRE": "10000",
    "WALLET_TIMEOUT_MS_STATEMENT": "30000",
    "WALLET_TIMEOUT_MS_LOCK": "20000",
}
# start_server's timeouts, plus what a server behind PgBouncer in transaction mode needs.
PGBOUNCER_SERVER_ENVIRONMENT = {
    "WALLET_DATABASE_POOLER": "pgbouncer",
    "WALLET_STATEMENT_CACHE_SIZE": "0",
    "WALLET_TIMEOUT_MS_STATEMENT": "30000",
    "WALLET_TIMEOUT_MS_LOCK": "20000",
}
# Runs a test of a module that overrides `server` with `server_of` (below) twice: against the
# suite's server, and through PgBouncer in transaction mode (marker `ha`).
THROUGH_PGBOUNCER_TOO = pytest.mark.parametrize(
    "server", ["direct", pytest.param("pgbouncer", marks=pytest.mark.ha)], indirect=True
)


def with_database(url: str, database: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(parts._replace(path="/" + database))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def wallet_command(
    *args: str, database_url: str, check: bool = True, extra_env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "WALLET_DATABASE_URL": database_url, **(extra_env or {})}
    result = subprocess.run(
        [WALLET, *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    if check and result.returncode != 0:
        raise AssertionError(f"wallet {' '.join(args)} failed ({result.returncode}):\n{result.stderr}")
    return result


def create_key(database_url: str, *scopes: str, name: str | None = None) -> str:
    arguments = ["keys", "create", "--name", name or f"key-{uuid.uuid4().hex[:12]}"]
    for scope in scopes:
        arguments += ["--scope", scope]
    output = wallet_command(*arguments, database_url=database_url).stdout
    return output.strip().splitlines()[-1]


def _complete_lines(text: str) -> list[str]:
    """The lines of a log another process is writing, without a last one it has not finished."""
    return text[: text.rfind("\n") + 1].splitlines()


@dataclass
class Server:
    """A `wallet serve` process on 127.0.0.1 against one database."""

    database_url: str
    port: int
    process: subprocess.Popen[bytes]
    admin_key: str
    log_path: Path
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self, key: str | None = None, **options: Any) -> httpx.Client:
        headers = {"Authorization": f"Bearer {key or self.admin_key}"}
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=30.0, **options)

    def async_client(self, key: str | None = None, **options: Any) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {key or self.admin_key}"}
        limits = httpx.Limits(max_connections=400, max_keepalive_connections=400)
        options.setdefault("timeout", 60.0)
        return httpx.AsyncClient(base_url=self.base_url, headers=headers, limits=limits, **options)

    def stop(self) -> None:
        stop_process(self.process)

    def log_lines(self, request_id: str, timeout: float = ACCESS_LINE_WAIT_SECONDS) -> list[dict[str, Any]]:
        """The server's log lines of one request, once its access line (event `request`, written
        just after the response) is there, or whatever there is after `timeout`."""
        deadline = time.monotonic() + timeout
        while True:
            lines = [
                record
                for record in (
                    json.loads(text)
                    for text in _complete_lines(self.log_path.read_text())
                    if text.startswith("{")
                )
                if record.get("request_id") == request_id
            ]
            if any(line.get("event") == "request" for line in lines) or time.monotonic() > deadline:
                return lines
            time.sleep(0.05)

    def access_line(self, request_id: str) -> dict[str, Any]:
        """The one access log line of the request."""
        lines = [line for line in self.log_lines(request_id) if line.get("event") == "request"]
        assert len(lines) == 1, f"access lines of request {request_id!r}: {lines}"
        return lines[0]


def server_of(request: pytest.FixtureRequest, direct: Server) -> Server:
    """The server a test parametrised with THROUGH_PGBOUNCER_TOO asked for (default: `direct`)."""
    if getattr(request, "param", "direct") == "pgbouncer":
        through_pgbouncer: Server = request.getfixturevalue("pgbouncer_server")
        return through_pgbouncer
    return direct


def set_role_timeouts(database_url: str, environment: dict[str, str]) -> None:
    """Behind PgBouncer the timeouts are the role's settings (for this database only), the values
    `wallet serve` checks at start against its WALLET_TIMEOUT_MS_* from `environment`."""
    from wallet.config import Settings
    from wallet.db.pool import timeout_settings

    statement_ms = int(environment["WALLET_TIMEOUT_MS_STATEMENT"])
    lock_ms = int(environment["WALLET_TIMEOUT_MS_LOCK"])
    expected = timeout_settings(Settings(timeout_ms_statement=statement_ms, timeout_ms_lock=lock_ms))
    database = urllib.parse.urlsplit(database_url).path.lstrip("/")
    for name, value in expected.items():
        # Identifiers and integers only, from this module's own constants.
        statement = f'ALTER ROLE CURRENT_USER IN DATABASE "{database}" SET {name} = {int(value)}'
        maintenance(database_url, statement)


def wallet_serve(port: int) -> list[str]:
    return [WALLET, "serve", "--port", str(port)]


def spawn(command: list[str], environment: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    """Start `command` with its output (stdout and stderr) in log_path."""
    with log_path.open("wb") as log:
        return subprocess.Popen(command, env=environment, stdout=log, stderr=subprocess.STDOUT)


def stop_process(process: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    """SIGTERM, then SIGKILL if it has not ended within `timeout`."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)


def wait_until_ready(
    process: subprocess.Popen[bytes],
    base_url: str,
    log_path: Path,
    timeout: float = SERVER_START_TIMEOUT_SECONDS,
    also: Callable[[], bool] = lambda: True,
) -> float:
    """Wait until the server's /readyz answers 200 (and `also()` is true); returns the seconds it
    took. A process that exits, or is not ready in time (then stopped), fails with its log."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if process.poll() is not None:
            raise AssertionError(f"wallet serve exited early:\n{log_path.read_text()}")
        try:
            ready = httpx.get(f"{base_url}/readyz", timeout=1.0).status_code == 200
        except httpx.TransportError:
            ready = False
        if ready and also():
            return time.monotonic() - started
        time.sleep(0.05)
    stop_process(process)
    raise AssertionError(f"wallet serve did not become ready:\n{log_path.read_text()}")


def start_server(
    database_url: str,
    log_path: Path,
    env: dict[str, str] | None = None,
    command: Callable[[int], list[str]] = wallet_serve,
) -> Server:
    """Start `wallet serve` (or `command(port)`) on a free port and wait until /readyz answers 200."""
    admin_key = create_key(database_url, "admin")
    port = free_port()
    environment = {
        **os.environ,
        "WALLET_DATABASE_URL": database_url,
        **SERVER_TIMEOUTS,
        **(env or {}),
    }
    server = Server(database_url, port, spawn(command(port), environment, log_path), admin_key, log_path)
    wait_until_ready(server.process, server.base_url, log_path)
    return server


def new_wallet(client: httpx.Client, asset: str = "GOLD", owner_id: str | None = None) -> str:
    response = client.post(
        "/v1/wallets", json={"owner_id": owner_id or f"user-{uuid.uuid4()}", "asset": asset}
    )
    assert response.status_code == 201, response.text
    wallet_id: str = response.json()["id"]
    return wallet_id


def topup(client: httpx.Client, wallet_id: str, amount: int, key: str | None = None) -> httpx.Response:
    return client.post(
        f"/v1/wallets/{wallet_id}/topup",
        json={"amount": amount},
        headers={"Idempotency-Key": key or str(uuid.uuid4())},
    )


def balance(client: httpx.Client, wallet_id: str) -> int:
    response = client.get(f"/v1/wallets/{wallet_id}")
    assert response.status_code == 200, response.text
    value: int = response.json()["balance"]
    return value


def assert_ledger_ok(client: httpx.Client) -> dict[str, Any]:
    response = client.get("/v1/ledger/verify")
    assert response.status_code == 200, response.text
    document: dict[str, Any] = response.json()
    assert document["ok"], document["problems"]
    return document


async def async_balance(client: httpx.AsyncClient, wallet_id: str) -> int:
    response = await client.get(f"/v1/wallets/{wallet_id}")
    assert response.status_code == 200, response.text
    value: int = response.json()["balance"]
    return value


async def async_assert_ledger_ok(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/ledger/verify")
    assert response.status_code == 200, response.text
    document = response.json()
    assert document["ok"], document["problems"]


def maintenance(server_url: str, statement: str) -> None:
    """Run one maintenance statement (CREATE/DROP DATABASE) outside a transaction."""

    async def run() -> None:
        connection = await asyncpg.connect(server_url, timeout=10)
        try:
            await connection.execute(statement)
        finally:
            await connection.close()

    asyncio.run(run())


async def fund_wallet(database_url: str, wallet_id: str, total: int) -> None:
    """Top the wallet up by `total` through the posting core itself (ledger.post), in top-ups of
    at most AMOUNT_MAX, a thousand per call: how tests reach balances no client could afford to
    build one request at a time."""
    from wallet.ledger import posting
    from wallet.ledger.limits import AMOUNT_MAX, GROUP_SIZE_MAX

    amounts = [AMOUNT_MAX] * (total // AMOUNT_MAX) + ([total % AMOUNT_MAX] if total % AMOUNT_MAX else [])
    connection = await asyncpg.connect(database_url, timeout=10)
    try:
        api_key_id = await connection.fetchval("SELECT id FROM api_key ORDER BY created_at LIMIT 1")
        for first in range(0, len(amounts), GROUP_SIZE_MAX):
            requests = [
                posting.Request(
                    api_key_id,
                    f"fund-{uuid.uuid4()}",
                    bytes(32),
                    posting.topup(uuid.UUID(wallet_id), amount, "funded-by-a-test", None),
                )
                for amount in amounts[first : first + GROUP_SIZE_MAX]
            ]
            outcomes = await posting.post(connection, requests, wait_for_locks=True)
            assert all(outcome.result is posting.Result.POSTED for outcome in outcomes), outcomes[:3]
    finally:
        await connection.close()


@contextmanager
def scratch_cluster(prefix: str, stop_mode: str = "fast") -> Iterator[tuple[Path, EmbeddedPostgres]]:
    """An embedded PostgreSQL of a test's own: its data directory (under /tmp, not pytest's
    private base directory, which the server's system user cannot enter when the tests run as
    root) and the running server; stopped and removed at the end."""
    from wallet.db import embedded

    data_dir = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield data_dir, embedded.start(data_dir)
    finally:
        embedded.stop_cluster(data_dir, stop_mode)
        shutil.rmtree(data_dir, ignore_errors=True)
