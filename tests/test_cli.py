"""The `wallet` command line against databases of its own: migrate, seed, API keys, ledger verify,
configuration errors, serving an unmigrated database, and purging idempotency keys."""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from support import (
    WALLET,
    Server,
    assert_ledger_ok,
    free_port,
    maintenance,
    new_wallet,
    start_server,
    topup,
    wallet_command,
    with_database,
)
from wallet.db import embedded, migrate

COMMAND_TIMEOUT_SECONDS = 30


# --- helpers -------------------------------------------------------------------------------------


def run_wallet(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """Run `wallet ARGS` with extra environment; a command that does not exit in time fails the test."""
    try:
        return subprocess.run(
            [WALLET, *args],
            env={**os.environ, **env},
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT_SECONDS,
            check=False,
        )
    except subprocess.TimeoutExpired as expired:
        pytest.fail(
            f"wallet {' '.join(args)} still running after {COMMAND_TIMEOUT_SECONDS} s: {expired.stderr!r}"
        )


def sql(database_url: str, query: str, *args: Any) -> list[asyncpg.Record]:
    async def run() -> list[asyncpg.Record]:
        connection = await asyncpg.connect(database_url, timeout=10)
        try:
            return await connection.fetch(query, *args)
        finally:
            await connection.close()

    return asyncio.run(run())


def verification(database_url: str) -> tuple[int, dict[str, Any]]:
    result = wallet_command("ledger", "verify", database_url=database_url, check=False)
    assert "Traceback" not in result.stderr, result.stderr
    document: dict[str, Any] = json.loads(result.stdout)
    return result.returncode, document


def assert_one_line_error(result: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.fixture
def empty_database(server_url: str) -> Iterator[str]:
    """A database with nothing in it: never migrated."""
    name = f"wallet_test_empty_{uuid.uuid4().hex[:12]}"
    maintenance(server_url, f"CREATE DATABASE {name}")
    try:
        yield with_database(server_url, name)
    finally:
        maintenance(server_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(scope="module")
def own_server(
    create_database: Callable[[], str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """A seeded database of this module's own, served."""
    url = create_database()
    wallet_command("db", "seed", database_url=url)
    running = start_server(url, tmp_path_factory.mktemp("cli-server") / "server.log")
    try:
        yield running
    finally:
        running.stop()


# --- db migrate, db seed -------------------------------------------------------------------------


def test_migrate_an_empty_database_twice_is_fine(empty_database: str) -> None:
    for _ in range(2):
        result = wallet_command("db", "migrate", database_url=empty_database)
        assert f"migrated to {migrate.head_revision()}" in result.stdout
        assert "Traceback" not in result.stderr
    rows = sql(empty_database, "SELECT version_num FROM alembic_version")
    assert [row["version_num"] for row in rows] == [migrate.head_revision()]
    assert sql(empty_database, "SELECT to_regclass('account') IS NOT NULL AS present")[0]["present"]


def test_seed_twice_creates_gold_and_points_with_their_system_accounts_once(
    create_database: Callable[[], str],
) -> None:
    url = create_database()
    first = wallet_command("db", "seed", database_url=url)
    assert "created asset GOLD" in first.stdout and "created asset POINTS" in first.stdout

    def state() -> tuple[list[tuple[str, str]], list[tuple[str, str, int, int, int]], int]:
        assets = [
            (row["code"], row["name"]) for row in sql(url, "SELECT code, name FROM asset ORDER BY code")
        ]
        system = [
            (row["asset"], row["kind"], row["slots"], row["lowest"], row["highest"])
            for row in sql(
                url,
                """
                SELECT a.asset, a.kind, count(s.slot) AS slots, min(s.slot) AS lowest, max(s.slot) AS highest
                FROM account a LEFT JOIN account_slot s ON s.account_id = a.id
                WHERE a.kind <> 'user' GROUP BY a.id, a.asset, a.kind ORDER BY a.asset, a.kind
                """,
            )
        ]
        accounts = sql(url, "SELECT count(*) AS n FROM account")[0]["n"]
        return assets, system, accounts

    after_first = state()
    second = wallet_command("db", "seed", database_url=url)
    assert "nothing to do" in second.stdout
    assert state() == after_first

    assets, system, _ = after_first
    assert assets == [("GOLD", "Gold Coins"), ("POINTS", "Reward Points")]
    assert system == [
        (asset, kind, 32, 0, 31)
        for asset in ("GOLD", "POINTS")
        for kind in ("bonus", "breakage", "revenue", "treasury")
    ]


def test_seeded_assets_are_served(own_server: Server) -> None:
    with own_server.client() as client:
        response = client.get("/v1/assets")
    assert response.status_code == 200, response.text
    assert [(asset["code"], asset["name"]) for asset in response.json()["data"]] == [
        ("GOLD", "Gold Coins"),
        ("POINTS", "Reward Points"),
    ]


# --- keys ----------------------------------------------------------------------------------------


def create_key_command(database_url: str, name: str, *scopes: str) -> subprocess.CompletedProcess[str]:
    arguments = ["keys", "create", "--name", name]
    for scope in scopes:
        arguments += ["--scope", scope]
    return wallet_command(*arguments, database_url=database_url, check=False)


def test_keys_create_prints_the_key_alone_on_the_last_line_and_it_works(own_server: Server) -> None:
    name = f"reader-writer-{uuid.uuid4().hex[:8]}"
    result = create_key_command(own_server.database_url, name, "wallets:read", "wallets:write")
    assert result.returncode == 0, result.stderr
    key = result.stdout.splitlines()[-1]
    assert key and key == key.strip() and len(key.split()) == 1
    assert result.stdout.count(key) == 1
    assert key not in result.stderr

    with own_server.client(key) as client:
        wallet_id = new_wallet(client)
        assert topup(client, wallet_id, 10).status_code == 201
        assert client.get(f"/v1/wallets/{wallet_id}").json()["balance"] == 10
        assert client.get("/v1/ledger/verify").status_code == 403


def test_keys_list_shows_names_and_scopes_but_never_the_keys(own_server: Server) -> None:
    url = own_server.database_url
    made = {
        f"lister-read-{uuid.uuid4().hex[:8]}": ("wallets:read",),
        f"lister-both-{uuid.uuid4().hex[:8]}": ("wallets:read", "wallets:write"),
        f"lister-admin-{uuid.uuid4().hex[:8]}": ("admin",),
    }
    secrets = []
    for name, scopes in made.items():
        created = create_key_command(url, name, *scopes)
        assert created.returncode == 0, created.stderr
        secrets.append(created.stdout.splitlines()[-1])

    listed = wallet_command("keys", "list", database_url=url)
    for name, scopes in made.items():
        [line] = [line for line in listed.stdout.splitlines() if line.split()[0] == name]
        for scope in scopes:
            assert scope in line
    for secret in [*secrets, own_server.admin_key]:
        assert secret not in listed.stdout and secret not in listed.stderr


def test_duplicate_key_name_fails_clearly(own_server: Server) -> None:
    url = own_server.database_url
    name = f"twice-{uuid.uuid4().hex[:8]}"
    first = create_key_command(url, name, "wallets:read")
    assert first.returncode == 0, first.stderr
    second = create_key_command(url, name, "admin")
    assert_one_line_error(second, name, "exists")
    assert second.stdout.strip() == ""  # no key was printed
    listed = [
        line for line in wallet_command("keys", "list", database_url=url).stdout.splitlines() if name in line
    ]
    assert len(listed) == 1 and "admin" not in listed[0]
    with own_server.client(first.stdout.splitlines()[-1]) as client:
        assert client.get("/v1/assets").status_code == 200


def test_revoked_key_gets_401_and_is_listed_as_revoked(own_server: Server) -> None:
    url = own_server.database_url
    name = f"revoked-{uuid.uuid4().hex[:8]}"
    created = create_key_command(url, name, "wallets:read", "wallets:write")
    assert created.returncode == 0, created.stderr
    with own_server.client(created.stdout.splitlines()[-1]) as client:
        assert client.get("/v1/assets").status_code == 200
        revoked = wallet_command("keys", "revoke", name, database_url=url)
        assert name in revoked.stdout
        response = client.get("/v1/assets")
        assert response.status_code == 401
        assert response.json()["code"] == "unauthenticated"
    [line] = [
        line for line in wallet_command("keys", "list", database_url=url).stdout.splitlines() if name in line
    ]
    assert "revoked" in line


def test_revoking_an_unknown_key_name_fails(own_server: Server) -> None:
    name = f"never-made-{uuid.uuid4().hex[:8]}"
    result = wallet_command("keys", "revoke", name, database_url=own_server.database_url, check=False)
    assert_one_line_error(result, name)


@pytest.mark.parametrize(
    "arguments",
    [
        pytest.param(["--scope", "wallets:delete"], id="unknown-scope"),
        pytest.param([], id="no-scope"),
    ],
)
def test_keys_create_with_bad_scopes_fails_and_creates_nothing(
    own_server: Server, arguments: list[str]
) -> None:
    name = f"bad-scope-{uuid.uuid4().hex[:8]}"
    result = wallet_command(
        "keys", "create", "--name", name, *arguments, database_url=own_server.database_url, check=False
    )
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert name not in wallet_command("keys", "list", database_url=own_server.database_url).stdout


# --- ledger verify -------------------------------------------------------------------------------


def test_ledger_verify_passes_then_fails_after_a_balance_is_corrupted(
    create_database: Callable[[], str], tmp_path: Path
) -> None:
    url = create_database()
    wallet_command("db", "seed", database_url=url)
    server = start_server(url, tmp_path / "server.log")
    try:
        with server.client() as client:
            gold_a, gold_b, points = (
                new_wallet(client),
                new_wallet(client),
                new_wallet(client, asset="POINTS"),
            )
            for wallet_id in (gold_a, points):
                assert topup(client, wallet_id, 500).status_code == 201
            key = {"Idempotency-Key": str(uuid.uuid4())}
            assert (
                client.post(f"/v1/wallets/{gold_a}/spend", json={"amount": 50}, headers=key).status_code
                == 201
            )
            transfer = {"from_wallet_id": gold_a, "to_wallet_id": gold_b, "amount": 25}
            key = {"Idempotency-Key": str(uuid.uuid4())}
            assert client.post("/v1/transfers", json=transfer, headers=key).status_code == 201

            exit_code, healthy = verification(url)
            assert exit_code == 0, healthy
            assert healthy["ok"] is True and healthy["problems"] == []
            assert healthy["transactions_checked"] == 4
            assert healthy["accounts_checked"] == sql(url, "SELECT count(*) AS n FROM account")[0]["n"]

            sql(url, "UPDATE account SET balance = balance + 1 WHERE id = $1", uuid.UUID(gold_b))

            exit_code, broken = verification(url)
            assert exit_code == 1, broken
            assert broken["ok"] is False
            problems = broken["problems"]
            kinds = [problem.get("invariant", problem.get("check")) for problem in problems]
            assert kinds == [2, 4, "statements"], problems
            assert problems[0]["account_id"] == gold_b
            assert problems[1]["asset"] == "GOLD"
            assert problems[2]["detail"].startswith(f"wallet {gold_b}: a statement until now closes at 25,")
            assert all(problem.get("detail") for problem in problems)

            over_http = client.get("/v1/ledger/verify").json()
            assert over_http["ok"] is False and over_http["problems"] == problems
    finally:
        server.stop()


# --- configuration -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def migrated_database(create_database: Callable[[], str]) -> str:
    return create_database()


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        pytest.param("WALLET_PORT", "abc", id="port-abc"),
        pytest.param("WALLET_PORT", "70000", id="port-70000"),
        pytest.param("WALLET_DATABASE_URL", "mysql://x", id="database-url-mysql"),
        pytest.param("WALLET_LOG_LEVEL", "loud", id="log-level-loud"),
        pytest.param("WALLET_IDEMPOTENCY_TTL_HOURS", "1", id="ttl-1-hour"),
        pytest.param("WALLET_IDEMPOTENCY_TTL_HOURS", "23", id="ttl-23-hours"),
        pytest.param("WALLET_IDEMPOTENCY_TTL_HOURS", "day", id="ttl-not-a-number"),
    ],
)
def test_bad_configuration_fails_at_start_with_one_line_naming_the_setting(
    migrated_database: str, setting: str, value: str
) -> None:
    env = {"WALLET_DATABASE_URL": migrated_database, "WALLET_PORT": str(free_port()), setting: value}
    result = run_wallet("serve", env=env)
    assert_one_line_error(result, setting)
    assert "serving on" not in result.stderr


def test_serve_refuses_an_unmigrated_database_and_says_to_migrate(
    empty_database: str, tmp_path: Path
) -> None:
    result = run_wallet("serve", "--port", str(free_port()), env={"WALLET_DATABASE_URL": empty_database})
    assert result.returncode != 0, result.stderr
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    assert "wallet db migrate" in result.stderr.strip().splitlines()[-1], result.stderr
    assert "serving on" not in result.stderr
    assert sql(empty_database, "SELECT to_regclass('account') IS NULL AS absent")[0]["absent"], (
        "serve migrated"
    )

    # Tables of this version with ledger functions of another: refused the same way.
    wallet_command("db", "migrate", database_url=empty_database)
    maintenance(empty_database, "COMMENT ON SCHEMA ledger IS 'sha256:of-another-version'")
    stale = run_wallet("serve", "--port", str(free_port()), env={"WALLET_DATABASE_URL": empty_database})
    assert_one_line_error(stale, "ledger functions", "wallet db migrate")

    # Following the advice works.
    wallet_command("db", "migrate", database_url=empty_database)
    server = start_server(empty_database, tmp_path / "server.log")
    try:
        assert httpx.get(f"{server.base_url}/readyz", timeout=10).status_code == 200
    finally:
        server.stop()


def test_serve_on_a_busy_port_says_so_in_one_line_and_creates_nothing(tmp_path: Path) -> None:
    """What `make run` does when something already listens on the port: the embedded default,
    on a data directory that does not exist yet. The next port up is busy too, so the advice
    names one that is free."""
    data_dir = tmp_path / "wallet-data"
    embedded_env = {"WALLET_DATABASE_URL": "", "WALLET_DATA_DIR": str(data_dir)}
    with socket.socket() as busy, socket.socket() as next_busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        next_busy.bind(("127.0.0.1", port + 10))
        next_busy.listen()
        result = run_wallet("serve", "--port", str(port), env=embedded_env)
    assert_one_line_error(result)
    line = result.stderr.strip()
    found = re.fullmatch(rf"wallet: port {port} is in use; try `wallet serve --port (\d+)`", line)
    assert found is not None, line
    suggested = int(found.group(1))
    assert suggested > port + 10 and (suggested - port) % 10 == 0, line
    assert result.stdout == ""
    assert not data_dir.exists(), "serve created the data directory before checking the port"


def test_serve_that_cannot_migrate_the_embedded_database_stops_it_and_says_so_in_one_line(
    tmp_path: Path,
) -> None:
    """Everything `wallet serve` does on the embedded database before serving (start it,
    migrate, seed, make keys) runs inside the guard that stops it again: a migration that fails
    leaves no postmaster behind and no traceback."""
    data_dir = tmp_path / "wallet-data"
    embedded_env = {"WALLET_DATABASE_URL": "", "WALLET_DATA_DIR": str(data_dir)}
    assert run_wallet("db", "migrate", env=embedded_env).returncode == 0
    server = embedded.start(data_dir.resolve())
    try:
        sql(server.url(), "UPDATE alembic_version SET version_num = 'from-the-future'")
    finally:
        server.stop()
    result = run_wallet("serve", "--port", str(free_port()), env=embedded_env)
    assert_one_line_error(result, "could not migrate the embedded database")
    assert "serving on" not in result.stderr
    postmaster = data_dir / embedded.CLUSTER_DIRECTORY_NAME / "postmaster.pid"
    assert not postmaster.exists(), "the embedded PostgreSQL outlived the failed start"


# --- idempotency purge ---------------------------------------------------------------------------


def test_idempotency_purge_deletes_keys_older_than_the_ttl_and_keeps_newer_ones(own_server: Server) -> None:
    url = own_server.database_url
    ages = {"fifty-hours": 50, "thirty-hours": 30, "twenty-three-hours": 23, "fresh": 0}
    prefix = f"purge-{uuid.uuid4().hex[:8]}-"
    with own_server.client() as client:
        wallet_id = new_wallet(client)
        for label in ages:
            assert topup(client, wallet_id, 10, key=prefix + label).status_code == 201
    for label, hours in ages.items():
        sql(
            url,
            "UPDATE idempotency_key SET created_at = now() - make_interval(hours => $2) WHERE key = $1",
            prefix + label,
            hours,
        )

    def remaining() -> set[str]:
        rows = sql(url, "SELECT key FROM idempotency_key WHERE key LIKE $1", prefix + "%")
        return {row["key"].removeprefix(prefix) for row in rows}

    longer_ttl = run_wallet(
        "idempotency", "purge", env={"WALLET_DATABASE_URL": url, "WALLET_IDEMPOTENCY_TTL_HOURS": "48"}
    )
    assert longer_ttl.returncode == 0, longer_ttl.stderr
    assert "purged 1 " in longer_ttl.stdout
    assert remaining() == {"thirty-hours", "twenty-three-hours", "fresh"}

    default_ttl = wallet_command("idempotency", "purge", database_url=url)
    assert "purged 1 " in default_ttl.stdout and "24" in default_ttl.stdout
    assert remaining() == {"twenty-three-hours", "fresh"}

    again = wallet_command("idempotency", "purge", database_url=url)
    assert "purged 0 " in again.stdout
    assert remaining() == {"twenty-three-hours", "fresh"}

    with own_server.client() as client:
        # The transactions stay; only the keys went. A kept key still replays.
        history = client.get(f"/v1/wallets/{wallet_id}/transactions").json()["data"]
        assert len(history) == 4
        replay = topup(client, wallet_id, 10, key=prefix + "fresh")
        assert replay.status_code == 201 and replay.headers["Idempotent-Replayed"] == "true"
        assert_ledger_ok(client)
