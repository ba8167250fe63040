"""A `wallet serve` process on a fixed port that a fault test can kill, stop and start again."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import httpx

from support import WALLET, free_port

READY_TIMEOUT_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 20.0
# Generous defaults, as support.start_server sets them; a test passes smaller ones in `env`.
DEFAULT_ENVIRONMENT = {
    "WALLET_TIMEOUT_MS_POOL_ACQUIRE": "10000",
    "WALLET_TIMEOUT_MS_STATEMENT": "30000",
    "WALLET_TIMEOUT_MS_LOCK": "20000",
}


class ServerProcess:
    """Each start() runs a new `wallet serve` on the same port and database, logging to its own
    file in `log_dir` (server-1.log, server-2.log, ...)."""

    def __init__(self, database_url: str | None, log_dir: Path, env: dict[str, str] | None = None) -> None:
        """`database_url` None: the embedded PostgreSQL in WALLET_DATA_DIR (set it in `env`)."""
        self.database_url = database_url
        self.log_dir = log_dir
        self.port = free_port()
        self.environment = {**os.environ, **DEFAULT_ENVIRONMENT, **(env or {})}
        if database_url is None:
            assert "WALLET_DATA_DIR" in self.environment
            self.environment.pop("WALLET_DATABASE_URL", None)
        else:
            self.environment["WALLET_DATABASE_URL"] = database_url
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> float:
        """Start a new process and wait until /readyz answers 200; returns the seconds it took."""
        assert self.process is None or self.process.poll() is not None, "still running"
        self.starts += 1
        log_path = self.log_dir / f"server-{self.starts}.log"
        started = time.monotonic()
        with log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [WALLET, "serve", "--port", str(self.port)],
                env=self.environment,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        while time.monotonic() - started < READY_TIMEOUT_SECONDS:
            if self.process.poll() is not None:
                raise AssertionError(f"wallet serve exited early:\n{log_path.read_text()}")
            try:
                if httpx.get(f"{self.base_url}/readyz", timeout=1.0).status_code == 200:
                    return time.monotonic() - started
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        self.stop()
        raise AssertionError(f"wallet serve did not become ready:\n{log_path.read_text()}")

    def kill(self) -> None:
        """SIGKILL: no shutdown of any kind, as when the machine or the container dies."""
        assert self.process is not None and self.process.poll() is None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=STOP_TIMEOUT_SECONDS)

    def terminate(self) -> None:
        """SIGTERM: the graceful shutdown an orchestrator asks for."""
        assert self.process is not None and self.process.poll() is None
        self.process.send_signal(signal.SIGTERM)

    def wait(self) -> int:
        assert self.process is not None
        return self.process.wait(timeout=STOP_TIMEOUT_SECONDS)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=5)

    def log_text(self) -> str:
        return "".join(
            (self.log_dir / f"server-{number}.log").read_text(errors="replace")
            for number in range(1, self.starts + 1)
        )
