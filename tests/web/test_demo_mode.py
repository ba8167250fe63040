"""`wallet serve` on the embedded database (what `make run` does): the demo UI gets an admin key
through GET /ui/session without anyone copying it."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from support import WALLET, free_port, spawn, stop_process, wait_until_ready
from wallet.db import embedded

START_TIMEOUT_SECONDS = 90.0
STOP_TIMEOUT_SECONDS = 30.0


@pytest.fixture
def data_dir() -> Iterator[Path]:
    """Under a fresh /tmp directory, not tmp_path: when the tests run as root, the server's
    system user cannot enter pytest's private base directory."""
    scratch_dir = Path(tempfile.mkdtemp(prefix="wallet-demo-test-", dir="/tmp"))
    try:
        yield scratch_dir / "wallet-data"
    finally:
        embedded.stop_cluster(scratch_dir / "wallet-data", "immediate")
        shutil.rmtree(scratch_dir, ignore_errors=True)


@contextmanager
def embedded_serve(data_dir: Path, log_path: Path) -> Iterator[str]:
    """`wallet serve` with no WALLET_DATABASE_URL; yields its base URL once it is ready."""
    environment = {key: value for key, value in os.environ.items() if not key.startswith("WALLET_")}
    environment["WALLET_DATA_DIR"] = str(data_dir)
    base_url = f"http://127.0.0.1:{free_port()}"
    process = spawn([WALLET, "serve", "--port", base_url.rsplit(":", 1)[1]], environment, log_path)
    try:
        wait_until_ready(process, base_url, log_path, timeout=START_TIMEOUT_SECONDS)
        yield base_url
    finally:
        stop_process(process, STOP_TIMEOUT_SECONDS)


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
