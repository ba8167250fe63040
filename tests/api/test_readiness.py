"""/readyz: 200 only when the database answers, its tables are at this code's newest migration
and its ledger functions are this code's; otherwise 503 unavailable, never a 500."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from support import free_port, maintenance, wallet_command

START_SECONDS_MAX = 30.0


@pytest.fixture
def application(create_database: Callable[[], str], tmp_path: Path) -> Iterator[tuple[str, str]]:
    """The application alone (no `wallet serve`, which refuses an unmigrated database) on a
    database that is migrated, then emptied of its migrations: (base URL, database URL)."""
    database_url = create_database()
    port = free_port()
    log = (tmp_path / "server.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "wallet.api.app:create_app", "--factory", "--port", str(port)],
        env={"WALLET_DATABASE_URL": database_url, "PATH": "/usr/bin:/bin"},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_SECONDS_MAX
        while True:
            try:
                if httpx.get(f"{base_url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert process.poll() is None and time.monotonic() < deadline, (
                tmp_path / "server.log"
            ).read_text()
            time.sleep(0.05)  # poll interval of a bounded wait for the server to listen
        yield base_url, database_url
    finally:
        process.terminate()
        process.wait(timeout=15)
        log.close()


def readiness(base_url: str) -> httpx.Response:
    return httpx.get(f"{base_url}/readyz", timeout=10)


def test_readyz_follows_the_schema_and_the_ledger_functions(application: tuple[str, str]) -> None:
    base_url, database_url = application
    assert readiness(base_url).status_code == 200

    maintenance(database_url, "COMMENT ON SCHEMA ledger IS 'sha256:of-another-version'")
    stale = readiness(base_url)
    assert (stale.status_code, stale.json()["code"]) == (503, "unavailable"), stale.text
    assert "wallet db migrate" in stale.json()["detail"]

    wallet_command("db", "migrate", database_url=database_url)  # puts this version's back
    assert readiness(base_url).status_code == 200

    maintenance(database_url, "DROP TABLE alembic_version")
    unmigrated = readiness(base_url)
    assert (unmigrated.status_code, unmigrated.json()["code"]) == (503, "unavailable"), unmigrated.text
    assert "nothing" in unmigrated.json()["detail"]
