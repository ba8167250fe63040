"""`wallet serve` on the embedded database (what `make run` does): the demo UI gets an admin key
through GET /ui/session without anyone copying it."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from support import WALLET, free_port
from wallet.db.embedded import EmbeddedPostgres

START_TIMEOUT_SECONDS = 90.0
STOP_TIMEOUT_SECONDS = 30.0


@pytest.fixture
def data_dir() -> Iterator[Path]:
    """Under a fresh /tmp directory, not tmp_path: when the tests run as root, the server's
    system user cannot enter pytest's private base directory."""
    scratch_dir = Path(tempfile.mkdtemp(prefix="wallet-demo-test-", dir="/tmp"))
    cluster_dir = scratch_dir / "wallet-data" / "pg"
    try:
        yield scratch_dir / "wallet-data"
    finally:
        EmbeddedPostgres(cluster_dir, cluster_dir).stop("immediate")
        shutil.rmtree(scratch_dir, ignore_errors=True)


@contextmanager
def embedded_serve(data_dir: Path, log_path: Path) -> Iterator[str]:
    """`wallet serve` with no WALLET_DATABASE_URL; yields its base URL once it is ready."""
    environment = {key: value for key, value in os.environ.items() if not key.startswith("WALLET_")}
    environment["WALLET_DATA_DIR"] = str(data_dir)
    base_url = f"http://127.0.0.1:{free_port()}"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [WALLET, "serve", "--port", base_url.rsplit(":", 1)[1]],
            env=environment,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_ready(process, base_url, log_path)
        yield base_url
    finally:
        process.terminate()
        process.wait(timeout=STOP_TIMEOUT_SECONDS)


def wait_ready(process: subprocess.Popen[bytes], base_url: str, log_path: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"wallet serve exited early:\n{log_path.read_text()}")
        try:
            if httpx.get(f"{base_url}/readyz", timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    pytest.fail(f"wallet serve did not become ready:\n{log_path.read_text()}")


def session_key(base_url: str) -> str:
    response = httpx.get(f"{base_url}/ui/session", timeout=10)
    assert response.status_code == 200, response.text
    key: str = response.json()["api_key"]
    return key


def status_with(base_url: str, key: str, path: str) -> int:
    response = httpx.get(f"{base_url}{path}", headers={"Authorization": f"Bearer {key}"}, timeout=10)
    return response.status_code


@pytest.mark.slow
def test_the_embedded_start_hands_the_page_an_admin_key_and_never_logs_it(
    data_dir: Path, tmp_path: Path
) -> None:
    """One start (each costs seconds); that a start revokes the older demo keys is
    tests/test_keys.py's test of keys.renew_demo_key, which `wallet serve` calls."""
    log_path = tmp_path / "serve.log"
    with embedded_serve(data_dir, log_path) as base_url:
        key = session_key(base_url)
        assert status_with(base_url, key, "/v1/ledger/verify") == 200
        assert status_with(base_url, key, "/v1/ledger/balances") == 200
    assert key not in log_path.read_text(), "the demo key was logged"
