"""A Patroni cluster for the tests: one etcd, two PostgreSQL 15 nodes under Patroni with
`synchronous_mode: true`, every process on 127.0.0.1 free ports, data in a temporary directory.

Debian's packages: `patroni` (3.0.2, run by Debian's own Python), `etcd-server` (3.4, v3 API
only, hence Patroni's `etcd3:` section) and `postgresql-15`. PostgreSQL refuses to run as root,
so as root the Patronis run as the embedded server's system user (`setpriv`, which execs: the
pid is Patroni's own). Each cluster has a scope of its own, so no key left in etcd by an earlier
run can make a fresh node wait for a leader that does not exist.

Stopping is fast on purpose: SIGKILL to the Patronis and etcd, SIGQUIT to the postmasters (a
graceful stop of a synchronous pair takes 7-8 s, the standby waiting to be released).
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx

from support import free_port
from wallet.db import embedded

POSTGRESQL_BIN = Path("/usr/lib/postgresql/15/bin")
PATRONI = "/usr/bin/patroni"
PATRONICTL = "/usr/bin/patronictl"
ETCD = "/usr/bin/etcd"
SUPERUSER = "postgres"
DATABASE = "wallet"
NODE_NAMES = ("node-a", "node-b")

# Test speed on two shared cores: loop_wait + 2 * retry_timeout <= ttl. A lower ttl only speeds
# up the node-crash case and risks spurious losses of the leader key on a loaded machine.
TTL_SECONDS = 10
LOOP_WAIT_SECONDS = 2
RETRY_TIMEOUT_SECONDS = 4
ETCD_READY_SECONDS = 15.0
CLUSTER_READY_SECONDS = 60.0
POLL_SECONDS = 0.1
REST_TIMEOUT_SECONDS = 1.0
STOP_SECONDS = 10.0

T = TypeVar("T")


def wait_for(what: str, check: Callable[[], T | None], seconds: float) -> T:
    """Poll `check` until it returns something other than None (or False); bounded."""
    deadline = time.monotonic() + seconds
    while True:
        value = check()
        if value is not None and value is not False:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {seconds:.0f} s waiting for {what}")
        time.sleep(POLL_SECONDS)


def rest_status(url: str) -> int | None:
    """The status of one Patroni REST health check (GET /primary, /sync, ...); None: no answer."""
    try:
        return httpx.get(url, timeout=REST_TIMEOUT_SECONDS).status_code
    except httpx.TransportError:
        return None


@dataclass(frozen=True)
class Account:
    user_id: int
    group_id: int

    def command(self, arguments: list[str]) -> list[str]:
        if self.user_id == os.geteuid():
            return arguments
        ids = [f"--reuid={self.user_id}", f"--regid={self.group_id}", "--init-groups"]
        return ["setpriv", *ids, *arguments]


def server_account() -> Account:
    """Who runs PostgreSQL: this user, or as root the embedded server's system user."""
    if os.geteuid() != 0:
        return Account(os.geteuid(), os.getegid())
    try:
        entry = pwd.getpwnam(embedded.SYSTEM_USER_NAME)
    except KeyError:
        nologin = "/usr/sbin/nologin"
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", nologin, embedded.SYSTEM_USER_NAME],
            check=False,
            capture_output=True,
        )
        entry = pwd.getpwnam(embedded.SYSTEM_USER_NAME)
    return Account(entry.pw_uid, entry.pw_gid)


@dataclass
class Node:
    name: str
    directory: Path
    postgres_port: int
    rest_port: int
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.rest_port}"

    @property
    def config_path(self) -> Path:
        return self.directory / "patroni.yml"

    @property
    def data_dir(self) -> Path:
        return self.directory / "data"

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.postgres_port}"

    def url(self, database: str = DATABASE) -> str:
        return f"postgresql://{SUPERUSER}@{self.address}/{database}"

    def postmaster_pid(self) -> int | None:
        try:
            first = (self.data_dir / "postmaster.pid").read_text().splitlines()[0]
        except (OSError, IndexError):
            return None
        pid = int(first)
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        return pid

    def patroni_running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def is_primary(self) -> bool:
        return rest_status(f"{self.rest_url}/primary") == 200

    def is_sync_standby(self) -> bool:
        return rest_status(f"{self.rest_url}/sync") == 200

    def log_text(self) -> str:
        return "".join(
            (self.directory / f"patroni-{number}.log").read_text(errors="replace")
            for number in range(1, self.starts + 1)
        )


@dataclass
class Cluster:
    """Start with `start()`, always `stop()` (the fixtures do both)."""

    directory: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="wallet-ha-")))
    scope: str = field(default_factory=lambda: f"wallet-ha-{uuid.uuid4().hex[:12]}")
    synchronous_mode_strict: bool = False
    account: Account = field(default_factory=server_account)
    etcd_client_port: int = field(default_factory=free_port)
    etcd_peer_port: int = field(default_factory=free_port)
    etcd: subprocess.Popen[bytes] | None = None
    nodes: list[Node] = field(default_factory=list)

    # --- life cycle --------------------------------------------------------------------

    def start(self) -> None:
        os.chmod(self.directory, 0o755)
        self._start_etcd()
        for name in NODE_NAMES:
            node = Node(name, self.directory / name, free_port(), free_port())
            node.directory.mkdir()
            os.chown(node.directory, self.account.user_id, self.account.group_id)
            node.config_path.write_text(json.dumps(self._patroni_config(node), indent=2))
            self.nodes.append(node)
        self.start_patroni(self.nodes[0])
        wait_for("the first node to lead", self.nodes[0].is_primary, CLUSTER_READY_SECONDS)
        self.start_patroni(self.nodes[1])
        self.wait_healthy()

    def stop(self) -> None:
        for node in self.nodes:
            if node.patroni_running():
                assert node.process is not None
                node.process.kill()
                node.process.wait(timeout=STOP_SECONDS)
        for node in self.nodes:
            self.quit_postmaster(node)
        if self.etcd is not None and self.etcd.poll() is None:
            self.etcd.kill()
            self.etcd.wait(timeout=STOP_SECONDS)
        shutil.rmtree(self.directory, ignore_errors=True)

    def _start_etcd(self) -> None:
        data_dir = self.directory / "etcd"
        peer = f"http://127.0.0.1:{self.etcd_peer_port}"
        client = f"http://127.0.0.1:{self.etcd_client_port}"
        arguments = [
            ETCD,
            "--name=etcd",
            f"--data-dir={data_dir}",
            f"--listen-client-urls={client}",
            f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=etcd={peer}",
        ]
        with (self.directory / "etcd.log").open("wb") as log:
            self.etcd = subprocess.Popen(arguments, stdout=log, stderr=subprocess.STDOUT)

        def healthy() -> bool:
            assert self.etcd is not None
            if self.etcd.poll() is not None:
                raise AssertionError((self.directory / "etcd.log").read_text())
            try:
                return bool(httpx.get(f"{client}/health", timeout=REST_TIMEOUT_SECONDS).json()["health"])
            except (httpx.TransportError, ValueError, KeyError):
                return False

        wait_for("etcd", healthy, ETCD_READY_SECONDS)

    def _patroni_config(self, node: Node) -> dict[str, Any]:
        socket_dir = node.directory
        return {
            "scope": self.scope,
            "namespace": "/wallet-tests/",
            "name": node.name,
            "log": {"level": "INFO"},
            "restapi": {"listen": f"127.0.0.1:{node.rest_port}", "connect_address": node.rest_url[7:]},
            "etcd3": {"hosts": [f"127.0.0.1:{self.etcd_client_port}"]},
            "bootstrap": {
                "dcs": {
                    "ttl": TTL_SECONDS,
                    "loop_wait": LOOP_WAIT_SECONDS,
                    "retry_timeout": RETRY_TIMEOUT_SECONDS,
                    # Without it a killed postmaster is restarted in place and nothing fails over.
                    "primary_start_timeout": 0,
                    "synchronous_mode": True,
                    "synchronous_mode_strict": self.synchronous_mode_strict,
                    "maximum_lag_on_failover": 1048576,
                    "postgresql": {
                        "use_pg_rewind": True,
                        "use_slots": True,
                        "parameters": {
                            "wal_retrieve_retry_interval": "1s",
                            "max_connections": 100,
                            "shared_buffers": "32MB",
                            "synchronous_commit": "on",
                        },
                    },
                },
                "initdb": [{"encoding": "UTF8"}, "no-locale"],
            },
            "postgresql": {
                "listen": node.address,
                "connect_address": node.address,
                "data_dir": str(node.data_dir),
                "bin_dir": str(POSTGRESQL_BIN),
                "pgpass": str(node.directory / "pgpass"),
                "authentication": {
                    "superuser": {"username": SUPERUSER, "password": "postgres"},
                    "replication": {"username": "replicator", "password": "replicator"},
                    "rewind": {"username": SUPERUSER, "password": "postgres"},
                },
                "parameters": {"unix_socket_directories": str(socket_dir)},
                "pg_hba": [
                    "local all all trust",
                    "host all all 127.0.0.1/32 trust",
                    "host replication all 127.0.0.1/32 trust",
                ],
            },
            "tags": {"nofailover": False, "noloadbalance": False, "clonefrom": False, "nosync": False},
        }

    # --- what the tests do to it -----------------------------------------------------

    def start_patroni(self, node: Node) -> None:
        assert not node.patroni_running(), node.name
        node.starts += 1
        environment = {
            "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
            "LANG": "C.UTF-8",
            "HOME": str(node.directory),
        }
        with (node.directory / f"patroni-{node.starts}.log").open("wb") as log:
            node.process = subprocess.Popen(
                self.account.command([PATRONI, str(node.config_path)]),
                env=environment,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=node.directory,
            )

    def kill_patroni(self, node: Node) -> None:
        assert node.process is not None and node.patroni_running(), node.name
        node.process.kill()
        node.process.wait(timeout=STOP_SECONDS)

    def kill_postmaster(self, node: Node) -> None:
        pid = node.postmaster_pid()
        assert pid is not None, f"{node.name} has no postmaster"
        os.kill(pid, signal.SIGKILL)

    def quit_postmaster(self, node: Node) -> None:
        """SIGQUIT: the postmaster's immediate shutdown (and its children with it)."""
        pid = node.postmaster_pid()
        if pid is None:
            return
        os.kill(pid, signal.SIGQUIT)

        def gone() -> bool:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return True
            return False

        wait_for(f"the postmaster of {node.name} to quit", gone, STOP_SECONDS)

    def switchover(self, leader: Node, candidate: Node) -> subprocess.CompletedProcess[str]:
        arguments = [
            PATRONICTL,
            "-c",
            str(leader.config_path),
            "switchover",
            "--leader",
            leader.name,
            "--candidate",
            candidate.name,
            "--force",
        ]
        return subprocess.run(
            arguments,
            env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "HOME": str(self.directory)},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    # --- what the tests look at ------------------------------------------------------

    def primary(self) -> Node | None:
        leaders = [node for node in self.nodes if node.is_primary()]
        assert len(leaders) <= 1, [node.name for node in leaders]
        return leaders[0] if leaders else None

    def other(self, node: Node) -> Node:
        return next(other for other in self.nodes if other is not node)

    def wait_for_primary(self, seconds: float, not_on: Node | None = None) -> Node:
        def found() -> Node | None:
            primary = self.primary()
            return primary if primary is not None and primary is not not_on else None

        return wait_for("a primary", found, seconds)

    def wait_healthy(self, seconds: float = CLUSTER_READY_SECONDS) -> Node:
        """Until there is a primary and the other node is its synchronous standby; returns the
        primary."""

        def healthy() -> Node | None:
            primary = self.primary()
            if primary is None:
                return None
            standby = self.other(primary)
            return primary if standby.patroni_running() and standby.is_sync_standby() else None

        try:
            return wait_for("a primary and a synchronous standby", healthy, seconds)
        except AssertionError as error:
            logs = "\n".join(f"--- {node.name}\n{node.log_text()[-3000:]}" for node in self.nodes)
            raise AssertionError(f"{error}\n{logs}") from None

    def rest_urls(self) -> str:
        return ",".join(node.rest_url for node in self.nodes)

    def service_url(self, database: str = DATABASE) -> str:
        """The multi-host URL the service gets: it connects only to a read-write node."""
        hosts = ",".join(node.address for node in self.nodes)
        return f"postgresql://{SUPERUSER}@{hosts}/{database}?target_session_attrs=read-write"
