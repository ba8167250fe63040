"""PgBouncer (Debian's, 1.18) in transaction pooling mode in front of a PostgreSQL server, on a
free 127.0.0.1 port, its files in a temporary directory.

It refuses to run as root: as root it runs as the embedded server's system user. It logs to
stderr (a root-owned logfile left by a failed start would block the next one). Even with
`auth_type = trust` the user must be listed in `auth_file`.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
import urllib.parse
from pathlib import Path

from ha.cluster import server_account, wait_for
from support import free_port

PGBOUNCER = "/usr/sbin/pgbouncer"
# Fewer server connections than one `wallet serve` pool holds (16): PgBouncer has to hand the
# same backend to different clients from one transaction to the next.
SERVER_CONNECTIONS = 8
START_SECONDS = 15.0
STOP_SECONDS = 10.0


class PgBouncer:
    def __init__(self, upstream_url: str) -> None:
        """`upstream_url`: a postgresql:// URL of the server (TCP or a Unix socket directory)."""
        parts = urllib.parse.urlsplit(upstream_url)
        query = urllib.parse.parse_qs(parts.query)
        self.user = urllib.parse.unquote(parts.username or "postgres")
        self.password = urllib.parse.unquote(parts.password or "")
        self.upstream_host = query["host"][0] if "host" in query else (parts.hostname or "127.0.0.1")
        self.upstream_port = int(query["port"][0]) if "port" in query else (parts.port or 5432)
        self.directory = Path(tempfile.mkdtemp(prefix="wallet-pgbouncer-"))
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None

    def url(self, database: str) -> str:
        return f"postgresql://{urllib.parse.quote(self.user)}@127.0.0.1:{self.port}/{database}"

    def start(self) -> None:
        account = server_account()
        password = f" password={self.password}" if self.password else ""
        (self.directory / "pgbouncer.ini").write_text(
            "[databases]\n"
            f"* = host={self.upstream_host} port={self.upstream_port} user={self.user}{password}\n"
            "[pgbouncer]\n"
            "listen_addr = 127.0.0.1\n"
            f"listen_port = {self.port}\n"
            "unix_socket_dir =\n"
            "auth_type = trust\n"
            f"auth_file = {self.directory / 'users.txt'}\n"
            "pool_mode = transaction\n"
            f"default_pool_size = {SERVER_CONNECTIONS}\n"
            "max_client_conn = 500\n"
        )
        (self.directory / "users.txt").write_text(f'"{self.user}" ""\n')
        for path in (self.directory, *self.directory.iterdir()):
            shutil.chown(path, account.user_id, account.group_id)
        log = (self.directory / "pgbouncer.log").open("wb")
        with log:
            self.process = subprocess.Popen(
                account.command([PGBOUNCER, str(self.directory / "pgbouncer.ini")]),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_for("PgBouncer to listen", self._listening, START_SECONDS)

    def _listening(self) -> bool:
        assert self.process is not None
        if self.process.poll() is not None:
            raise AssertionError(f"pgbouncer exited:\n{self.log_text()}")
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1.0):
                return True
        except OSError:
            time.sleep(0.05)
            return False

    def log_text(self) -> str:
        return (self.directory / "pgbouncer.log").read_text(errors="replace")

    def stop(self) -> None:
        """SIGTERM: PgBouncer's immediate shutdown."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=STOP_SECONDS)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=STOP_SECONDS)
        shutil.rmtree(self.directory, ignore_errors=True)
