"""Fixtures: a PostgreSQL server (WALLET_TEST_DATABASE_URL, or an embedded one), fresh migrated
databases on it, and a running `wallet serve` shared by the API tests."""

from __future__ import annotations

import os
import shutil
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from support import (
    PGBOUNCER_SERVER_ENVIRONMENT,
    Server,
    maintenance,
    scratch_cluster,
    set_role_timeouts,
    start_server,
    wallet_command,
    with_database,
)
from wallet.db import migrate

TEMPLATE_DATABASE = f"wallet_test_template_{os.getpid()}"


@dataclass(frozen=True)
class SystemProgram:
    """Debian packages some tests need. .ci/run installs them; elsewhere, when one is missing, the
    tests that need it are deselected and the run ends by saying so (in CI they run and fail)."""

    marker: str
    # Every program is needed; each is given as alternatives (a name on PATH, absolute paths).
    programs: tuple[tuple[str, ...], ...]
    install: str
    rerun: str

    def missing(self) -> str | None:
        """The first program that is not there (its last alternative), or None."""
        for alternatives in self.programs:
            if not any(Path(path).is_file() or shutil.which(path) for path in alternatives):
                return alternatives[-1]
        return None


SYSTEM_PROGRAMS = (
    SystemProgram(
        "browser", (("/usr/bin/chromium",),), "apt-get install -y chromium", "-m browser tests/web"
    ),
    SystemProgram(
        "nginx", (("nginx", "/usr/sbin/nginx"),), "apt-get install -y nginx", "-m nginx tests/deploy"
    ),
    SystemProgram(
        "ha",
        (
            ("/usr/bin/patroni",),
            ("/usr/bin/etcd",),
            ("/usr/sbin/pgbouncer",),
            ("/usr/lib/postgresql/15/bin/postgres",),
        ),
        "apt-get install -y patroni etcd-server pgbouncer postgresql-15",
        "-m ha tests",
    ),
)
NOT_RUN = pytest.StashKey[dict[str, int]]()


@pytest.hookimpl(trylast=True)  # after -m has deselected what the run does not ask for
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("CI") == "true":
        return
    not_run: dict[str, int] = {}
    for program in SYSTEM_PROGRAMS:
        if program.missing() is None:
            continue
        needing = [item for item in items if item.get_closest_marker(program.marker) is not None]
        if needing:
            config.hook.pytest_deselected(items=needing)
            items[:] = [item for item in items if item.get_closest_marker(program.marker) is None]
            not_run[program.marker] = len(needing)
    config.stash[NOT_RUN] = not_run


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, config: pytest.Config) -> None:
    if os.environ.get("CI") == "true":
        return
    # Under pytest-xdist this process collected nothing (its workers did): it knows what is
    # missing, not how many tests that left out.
    not_run = config.stash.get(NOT_RUN, None)
    for program in SYSTEM_PROGRAMS:
        missing = program.missing()
        count = None if not_run is None else not_run.get(program.marker, 0)
        if missing is not None and count != 0:
            name = program.marker.upper()
            tests = f"{count} {name} TESTS" if count else f"THE {name} TESTS"
            terminalreporter.write_sep("!", f"{tests} NOT RUN: {missing} is missing", yellow=True)
            terminalreporter.write_line(
                f"Install it ({program.install}), then run them alone with: .venv/bin/pytest {program.rerun}",
                yellow=True,
                bold=True,
            )


@pytest.fixture(scope="session")
def server_url() -> Iterator[str]:
    """URL of a maintenance database on the PostgreSQL server the tests use.

    The embedded cluster lives in a directory of its own under /tmp, not under pytest's
    tmp_path: pytest makes its base directory private (0700) at each start, which would lock
    the server's system user out when the tests run as root."""
    external = os.environ.get("WALLET_TEST_DATABASE_URL")
    if external:
        yield external
        return
    with scratch_cluster("wallet-test-postgres-") as (_, server):
        yield server.url("postgres")


@pytest.fixture(scope="session")
def create_database(server_url: str) -> Iterator[Callable[[], str]]:
    """Makes a new, migrated, empty database (a copy of a template migrated once); dropped at the end."""
    maintenance(server_url, f"CREATE DATABASE {TEMPLATE_DATABASE}")
    migrate.upgrade(with_database(server_url, TEMPLATE_DATABASE))
    created: list[str] = []

    def create() -> str:
        name = f"wallet_test_{uuid.uuid4().hex[:16]}"
        maintenance(server_url, f"CREATE DATABASE {name} TEMPLATE {TEMPLATE_DATABASE}")
        created.append(name)
        return with_database(server_url, name)

    yield create
    for name in [*created, TEMPLATE_DATABASE]:
        maintenance(server_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(scope="session")
def seeded_database(create_database: Callable[[], str]) -> str:
    url = create_database()
    wallet_command("db", "seed", database_url=url)
    return url


@pytest.fixture(scope="session")
def direct_server(seeded_database: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """One `wallet serve` for the API tests; each test makes its own wallets."""
    running = start_server(seeded_database, tmp_path_factory.mktemp("server") / "server.log")
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="session")
def server(direct_server: Server) -> Server:
    """The API tests' server (a module may override it with support.server_of)."""
    return direct_server


@pytest.fixture(scope="session")
def pgbouncer_server(
    create_database: Callable[[], str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """A `wallet serve` that reaches its own seeded database through PgBouncer in transaction
    mode (WALLET_DATABASE_POOLER=pgbouncer, statement cache 0), its timeouts set on the database
    role; `database_url` is the direct URL, for the tests' own queries. For tests parametrised
    with THROUGH_PGBOUNCER_TOO (support.py)."""
    from ha.pgbouncer import PgBouncer

    database_url = create_database()
    wallet_command("db", "seed", database_url=database_url)
    set_role_timeouts(database_url, PGBOUNCER_SERVER_ENVIRONMENT)
    bouncer = PgBouncer(database_url)
    bouncer.start()
    try:
        database = urllib.parse.urlsplit(database_url).path.lstrip("/")
        environment = {**PGBOUNCER_SERVER_ENVIRONMENT, "WALLET_DATABASE_URL": bouncer.url(database)}
        running = start_server(database_url, tmp_path_factory.mktemp("pgbouncer") / "server.log", environment)
        try:
            yield running
        finally:
            running.stop()
    finally:
        bouncer.stop()


@pytest.fixture
def client(server: Server) -> Iterator[httpx.Client]:
    with server.client() as admin_client:
        yield admin_client


@pytest.fixture
def log_dir(tmp_path: Path) -> Path:
    return tmp_path
