"""The service under test: `wallet serve --workers N` on 127.0.0.1, on the run database."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from bench import measure
from bench.database import WALLET_COMMAND

START_TIMEOUT_SECONDS = 60.0
STOP_TIMEOUT_SECONDS = 20.0
WORKER_MARKER = b"multiprocessing.spawn"
WORKER_GRACE_SECONDS = 2.0


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    port: int
    workers: int
    log_path: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def process_id(self) -> int:
        return self.process.pid

    def worker_process_ids(self) -> list[int]:
        """The processes running the app: uvicorn's spawned workers, or the server itself alone."""
        if self.workers == 1:
            return [self.process.pid]
        workers = []
        for process_id in measure.tree_process_ids(self.process.pid):
            try:
                command_line = Path(f"/proc/{process_id}/cmdline").read_bytes()
            except OSError:
                continue
            if WORKER_MARKER in command_line:
                workers.append(process_id)
        return sorted(workers)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


def _ready(base_url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{base_url}/readyz", timeout=1.0) as response:
            return bool(response.status == 200)
    except OSError:
        return False


def start(database_url: str, workers: int, log_path: Path) -> Server:
    """Start the service and wait until every worker is up and /readyz answers."""
    port = _free_port()
    environment = {**os.environ, "WALLET_DATABASE_URL": database_url}
    arguments = [WALLET_COMMAND, "serve", "--host", "127.0.0.1", "--port", str(port)]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [*arguments, "--workers", str(workers)], env=environment, stdout=log, stderr=subprocess.STDOUT
        )
    server = Server(process, port, workers, log_path)
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"wallet serve exited early:\n{log_path.read_text()}")
        if len(server.worker_process_ids()) == workers and _ready(server.base_url):
            time.sleep(WORKER_GRACE_SECONDS)  # the other workers finish starting; a warm-up follows
            return server
        time.sleep(0.2)
    server.stop()
    raise RuntimeError(f"wallet serve did not become ready:\n{log_path.read_text()}")


ACCESS_LOG_MARKER = '"event": "request"'


def trim_log(log_path: Path) -> None:
    """Drop the access log lines (one per request) from the server log; keep the rest."""
    if not log_path.exists():
        return
    kept: list[str] = []
    dropped = 0
    with log_path.open(errors="replace") as log:
        for line in log:
            if ACCESS_LOG_MARKER in line:
                dropped += 1
            else:
                kept.append(line)
    log_path.write_text("".join(kept) + f"({dropped} access log lines dropped by the benchmark)\n")
