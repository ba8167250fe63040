"""/metrics, the request id and the access log, against real `wallet serve` processes: the
shared one-worker server, and one with `--workers 2` whose counters must add up across workers."""

from __future__ import annotations

import asyncio
import json
import os
import re
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import asyncpg
import httpx
import pytest

from support import (
    WALLET,
    Server,
    create_key,
    free_port,
    new_wallet,
    spawn,
    topup,
    wait_until_ready,
    wallet_command,
)

SERVER_START_TIMEOUT_SECONDS = 30.0
SAMPLE = re.compile(r'^(?P<name>[a-z_]+)(?:\{(?P<labels>(?:[^"}]|"(?:[^"\\]|\\.)*")*)\})? (?P<value>\S+)$')
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')
GENERATED_REQUEST_ID = re.compile(r"[0-9a-f]{32}")
TOPUP_ROUTE = "/v1/wallets/{wallet_id}/topup"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


# --- helpers -------------------------------------------------------------------------------------


def parse_metrics(text: str) -> Samples:
    samples: Samples = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = SAMPLE.match(line)
        assert match is not None, line
        labels = frozenset(LABEL.findall(match.group("labels") or ""))
        samples[(match.group("name"), labels)] = float(match.group("value"))
    return samples


def scrape(base_url: str) -> Samples:
    """One /metrics scrape on a fresh connection (with several workers, any of them answers)."""
    response = httpx.get(f"{base_url}/metrics", timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    return parse_metrics(response.text)


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def workers_started(log_path: Path) -> int:
    lines = log_path.read_text().splitlines()
    return sum('"Application startup complete."' in line for line in lines)


def start_workers(database_url: str, log_path: Path, workers: int, env: dict[str, str]) -> Server:
    """`wallet serve --workers N` on a free port, ready when every worker has started (its
    pool open) and /readyz answers 200."""
    port = free_port()
    environment = {**os.environ, "WALLET_DATABASE_URL": database_url, **env}
    environment.pop("PROMETHEUS_MULTIPROC_DIR", None)
    command = [WALLET, "serve", "--port", str(port), "--workers", str(workers)]
    process = spawn(command, environment, log_path)
    server = Server(database_url, port, process, create_key(database_url, "admin"), log_path)
    wait_until_ready(process, server.base_url, log_path, also=lambda: workers_started(log_path) == workers)
    return server


def worker_environments(parent_pid: int) -> list[dict[str, str]]:
    """The environments of the server's child processes (Linux /proc)."""
    children_file = Path(f"/proc/{parent_pid}/task/{parent_pid}/children")
    environments = []
    for pid in children_file.read_text().split():
        raw = Path(f"/proc/{pid}/environ").read_bytes()
        pairs = (item.split(b"=", 1) for item in raw.split(b"\0") if b"=" in item)
        environments.append({name.decode(): value.decode(errors="replace") for name, value in pairs})
    return environments


# --- one worker ----------------------------------------------------------------------------------


def test_money_movements_are_counted_by_route_type_and_outcome(server: Server) -> None:
    before = scrape(server.base_url)
    with server.client() as client:
        wallet_id = new_wallet(client)
        assert topup(client, wallet_id, 50, key="metrics-topup").status_code == 201
        replay = topup(client, wallet_id, 50, key="metrics-topup")
        assert replay.headers["idempotent-replayed"] == "true"
        short = client.post(
            f"/v1/wallets/{wallet_id}/spend", json={"amount": 80}, headers={"Idempotency-Key": "m-s"}
        )
        assert short.status_code == 409
        assert client.get(f"/v1/wallets/{uuid.uuid4()}").status_code == 404
    after = scrape(server.base_url)

    def increase(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    requests = "wallet_http_requests_total"
    assert increase(requests, method="POST", route=TOPUP_ROUTE, status="201") == 2
    assert increase(requests, method="POST", route="/v1/wallets/{wallet_id}/spend", status="409") == 1
    assert increase(requests, method="GET", route="/v1/wallets/{wallet_id}", status="404") == 1
    assert increase("wallet_http_request_duration_seconds_count", method="POST", route=TOPUP_ROUTE) == 2
    assert increase("wallet_http_request_duration_seconds_sum", method="POST", route=TOPUP_ROUTE) > 0
    operations = "wallet_ledger_operations_total"
    assert increase(operations, type="topup", outcome="created") == 1
    assert increase(operations, type="topup", outcome="replayed") == 1
    assert increase(operations, type="spend", outcome="insufficient_funds") == 1
    assert increase("wallet_idempotent_replays_total", type="topup", status="201") == 1
    assert increase("wallet_db_pool_acquire_duration_seconds_count") >= 4
    assert all(wallet_id not in dict(labels).get("route", "") for _, labels in after), "raw paths as labels"


def test_pool_gauges_describe_the_pool(server: Server) -> None:
    samples = scrape(server.base_url)
    gauge = "wallet_db_pool_connections"
    assert value(samples, gauge, state="max") == 16  # WALLET_POOL_SIZE_MAX's default
    assert 1 <= value(samples, gauge, state="open") <= 16
    assert value(samples, gauge, state="idle") + value(samples, gauge, state="in_use") == value(
        samples, gauge, state="open"
    )


def test_a_sane_request_id_is_echoed_and_logged(server: Server) -> None:
    request_id = f"trace-{uuid.uuid4()}"
    with server.client() as client:
        wallet_id = new_wallet(client)
        response = client.post(
            f"/v1/wallets/{wallet_id}/topup",
            json={"amount": 7},
            headers={"Idempotency-Key": str(uuid.uuid4()), "X-Request-ID": request_id},
        )
    assert response.status_code == 201
    assert response.headers["x-request-id"] == request_id
    line = server.access_line(request_id)
    assert {key: line[key] for key in ("method", "route", "status", "level")} == {
        "method": "POST",
        "route": TOPUP_ROUTE,
        "status": 201,
        "level": "info",
    }
    assert 0 < line["duration_ms"] < 30_000
    assert server.admin_key not in json.dumps(line)


def test_a_missing_request_id_is_generated_and_logged(server: Server) -> None:
    response = httpx.get(f"{server.base_url}/healthz", timeout=10)
    request_id = response.headers["x-request-id"]
    assert GENERATED_REQUEST_ID.fullmatch(request_id)
    assert server.access_line(request_id)["route"] == "/healthz"


@pytest.mark.parametrize(
    "sent",
    [b"x" * 129, b"caf\xc3\xa9", b"tab\there", b""],
    ids=["too-long", "not-ascii", "control-character", "empty"],
)
def test_an_insane_request_id_is_replaced(server: Server, sent: bytes) -> None:
    response = httpx.get(f"{server.base_url}/healthz", headers=[(b"X-Request-ID", sent)], timeout=10)
    assert response.status_code == 200
    request_id = response.headers["x-request-id"]
    assert GENERATED_REQUEST_ID.fullmatch(request_id), request_id
    assert server.access_line(request_id)["status"] == 200


def test_an_error_response_carries_the_request_id_too(server: Server) -> None:
    with server.client() as client:
        response = client.get("/v1/no-such-path", headers={"X-Request-ID": "missing-route-1"})
    assert response.status_code == 404
    assert response.headers["x-request-id"] == "missing-route-1"
    assert server.access_line("missing-route-1")["route"] == "unmatched"


# --- two workers ---------------------------------------------------------------------------------
# One server for the module; the last test stops it.

REQUEST_COUNT = 60
SCRAPES_MAX = 50
LOCK_TIMEOUT_MS = 300


@pytest.fixture(scope="module")
def two_workers(
    create_database: Callable[[], str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    database_url = create_database()
    wallet_command("db", "seed", database_url=database_url)
    log_path = tmp_path_factory.mktemp("workers") / "server.log"
    running = start_workers(
        database_url, log_path, workers=2, env={"WALLET_TIMEOUT_MS_LOCK": str(LOCK_TIMEOUT_MS)}
    )
    try:
        yield running
    finally:
        running.stop()


def metrics_directory(server: Server) -> Path:
    environments = worker_environments(server.process.pid)
    directories = {
        env["PROMETHEUS_MULTIPROC_DIR"] for env in environments if "PROMETHEUS_MULTIPROC_DIR" in env
    }
    assert len(directories) == 1, environments
    return Path(directories.pop())


async def _topups(server: Server, wallet_id: str) -> list[int]:
    """REQUEST_COUNT top-ups, 20 at a time, each on a new connection, so both workers accept some."""
    limits = httpx.Limits(max_connections=20, max_keepalive_connections=0)
    headers = {"Authorization": f"Bearer {server.admin_key}"}
    async with httpx.AsyncClient(
        base_url=server.base_url, headers=headers, limits=limits, timeout=30
    ) as client:

        async def send(index: int) -> int:
            path = f"/v1/wallets/{wallet_id}/topup"
            response = await client.post(path, json={"amount": 1}, headers={"Idempotency-Key": f"w-{index}"})
            return response.status_code

        return list(await asyncio.gather(*(send(index) for index in range(REQUEST_COUNT))))


@pytest.mark.slow
def test_two_workers_write_their_samples_to_one_fresh_directory(two_workers: Server) -> None:
    directory = metrics_directory(two_workers)
    pids = {re.sub(r"^.*_(\d+)\.db$", r"\1", path.name) for path in directory.glob("counter_*.db")}
    assert len(pids) == 2, sorted(path.name for path in directory.iterdir())


@pytest.mark.slow
def test_counters_add_up_across_two_workers(two_workers: Server) -> None:
    """Whichever worker answers /metrics, it reports the requests both of them served."""
    with two_workers.client() as client:
        wallet_id = new_wallet(client)
    before = scrape(two_workers.base_url)
    assert asyncio.run(_topups(two_workers, wallet_id)) == [201] * REQUEST_COUNT
    counted = {
        "requests": ("wallet_http_requests_total", {"method": "POST", "route": TOPUP_ROUTE, "status": "201"}),
        "created": ("wallet_ledger_operations_total", {"type": "topup", "outcome": "created"}),
    }
    scraped_by: set[int] = set()
    for index in range(SCRAPES_MAX):
        request_id = f"scrape-{index}-{uuid.uuid4()}"
        response = httpx.get(
            f"{two_workers.base_url}/metrics", headers={"X-Request-ID": request_id}, timeout=10
        )
        after = parse_metrics(response.text)
        for name, labels in counted.values():
            assert value(after, name, **labels) - value(before, name, **labels) == REQUEST_COUNT, name
        assert value(after, "wallet_db_pool_connections", state="max") == 2 * 16  # both pools
        scraped_by.add(two_workers.access_line(request_id)["pid"])
        if len(scraped_by) == 2:
            break
    assert len(scraped_by) == 2, f"{SCRAPES_MAX} scrapes, all answered by worker {scraped_by}"


async def _topup_while_the_wallet_is_locked(server: Server, wallet_id: str) -> httpx.Response:
    """A top-up that waits for the wallet's row, held by another transaction, past the lock timeout."""
    connection = await asyncpg.connect(server.database_url, timeout=10)
    try:
        async with connection.transaction():
            await connection.execute("SELECT FROM account WHERE id = $1 FOR UPDATE", uuid.UUID(wallet_id))
            async with server.async_client() as client:
                return await client.post(
                    f"/v1/wallets/{wallet_id}/topup",
                    json={"amount": 1},
                    headers={"Idempotency-Key": "locked"},
                )
    finally:
        await connection.close()


@pytest.mark.slow
def test_a_database_timeout_is_counted_as_a_database_error(two_workers: Server) -> None:
    with two_workers.client() as client:
        wallet_id = new_wallet(client)
    before = scrape(two_workers.base_url)
    response = asyncio.run(_topup_while_the_wallet_is_locked(two_workers, wallet_id))
    assert response.status_code == 503, response.text
    assert response.json()["code"] == "unavailable"
    after = scrape(two_workers.base_url)
    errors = "wallet_database_errors_total"
    assert (
        value(after, errors, error="LockNotAvailableError")
        - value(before, errors, error="LockNotAvailableError")
        == 1
    )
    requests = "wallet_http_requests_total"
    labels = {"method": "POST", "route": TOPUP_ROUTE, "status": "503"}
    assert value(after, requests, **labels) - value(before, requests, **labels) == 1
    assert value(after, "wallet_ledger_operations_total", type="topup", outcome="created") == value(
        before, "wallet_ledger_operations_total", type="topup", outcome="created"
    )


@pytest.mark.slow
def test_the_metrics_directory_is_removed_when_the_server_stops(two_workers: Server) -> None:
    directory = metrics_directory(two_workers)
    assert directory.is_dir()
    two_workers.stop()
    assert two_workers.process.returncode == 0, two_workers.log_path.read_text()
    assert not directory.exists()
