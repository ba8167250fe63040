"""A `wallet serve` process on a fixed port that a fault test can kill, stop and start again."""

from __future__ import annotations

import os
import signal
import subprocess
from pathlib import Path

from support import SERVER_TIMEOUTS, WALLET, free_port, spawn, stop_process, wait_until_ready

STOP_TIMEOUT_SECONDS = 20.0


class ServerProcess:
    """Each start() runs a new `wallet serve` on the same port and database, logging to its own
    file in `log_dir` (server-1.log, server-2.log, ...)."""

    def __init__(self, database_url: str | None, log_dir: Path, env: dict[str, str] | None = None) -> None:
        """`database_url` None: the embedded PostgreSQL in WALLET_DATA_DIR (set it in `env`)."""
        self.database_url = database_url
        self.log_dir = log_dir
        self.port = free_port()
        self.environment = {**os.environ, **SERVER_TIMEOUTS, **(env or {})}
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
        command = [WALLET, "serve", "--port", str(self.port)]
        self.process = spawn(command, self.environment, log_path)
        return wait_until_ready(self.process, self.base_url, log_path)

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
        if self.process is not None:
            stop_process(self.process, STOP_TIMEOUT_SECONDS)

    def log_text(self) -> str:
        return "".join(
            (self.log_dir / f"server-{number}.log").read_text(errors="replace")
            for number in range(1, self.starts + 1)
        )
