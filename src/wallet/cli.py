"""The `wallet` command: serve, migrate, seed, manage API keys, verify the ledger, expire lots,
relay events."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import re
import shutil
import signal
import socket
import sys
import tempfile
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Annotated, TypeVar

import orjson
import psycopg
import typer

from wallet import idempotency, keys, logs, seed
from wallet._loopback import is_loopback_host
from wallet.config import ConfigurationError, Settings, load_settings
from wallet.db import database, embedded
from wallet.db.errors import is_unavailable
from wallet.ledger import code, lots, verify
from wallet.types import Connection

ResultT = TypeVar("ResultT")

# How far above a busy port `wallet serve` looks for a free one to suggest.
PORT_SUGGESTION_STEP = 10
PORT_SUGGESTION_TRIES_MAX = 100

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Internal wallet service.")
db_app = typer.Typer(no_args_is_help=True, help="Database schema and seed data.")
keys_app = typer.Typer(no_args_is_help=True, help="API keys.")
ledger_app = typer.Typer(no_args_is_help=True, help="The ledger.")
idempotency_app = typer.Typer(no_args_is_help=True, help="Idempotency keys.")
lots_app = typer.Typer(no_args_is_help=True, help="Expiring credits (lots).")
events_app = typer.Typer(no_args_is_help=True, help="The event feed.")
app.add_typer(db_app, name="db")
app.add_typer(keys_app, name="keys")
app.add_typer(ledger_app, name="ledger")
app.add_typer(idempotency_app, name="idempotency")
app.add_typer(lots_app, name="lots")
app.add_typer(events_app, name="events")


def fail(message: str, exit_code: int = 1) -> typer.Exit:
    typer.echo(f"wallet: {message}", err=True)
    return typer.Exit(exit_code)


def _settings() -> Settings:
    try:
        return load_settings()
    except ConfigurationError as error:
        raise fail(str(error), 2) from None


@contextmanager
def _database_url(settings: Settings) -> Iterator[str]:
    """The database to work on; starts the embedded server when no URL is configured."""
    if settings.database_url is not None:
        yield settings.database_url
        return
    try:
        server = database.start_embedded(settings)
    except embedded.EmbeddedPostgresError as error:
        raise fail(f"embedded PostgreSQL did not start: {error}") from None
    try:
        yield server.url()
    finally:
        if server.started:
            server.stop()


def _run(settings: Settings, task: Callable[[Connection], Awaitable[ResultT]]) -> ResultT:
    async def main(url: str) -> ResultT:
        timeout_seconds = settings.timeout_ms_connect / 1000
        async with database.connect(url, timeout_seconds, settings.statement_cache_size) as connection:
            return await task(connection)

    with _database_url(settings) as url:
        try:
            return asyncio.run(main(url))
        except Exception as error:
            if is_unavailable(error):
                raise fail(f"cannot reach the database: {_first_line(error)}") from None
            raise


# What `wallet serve` gives uvicorn to finish the requests in flight after SIGTERM.
TIMEOUT_SECONDS_GRACEFUL_SHUTDOWN = 10
# How long a worker of `serve --workers N` may take to start (import and open its pool) before
# uvicorn kills it and starts another: its default of 5 s was seen to run out on a busy machine.
TIMEOUT_SECONDS_WORKER_START = 60


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Interface to listen on [WALLET_HOST].")] = None,
    port: Annotated[int | None, typer.Option(min=1, max=65535, help="Port [WALLET_PORT].")] = None,
    workers: Annotated[int, typer.Option(min=1, max=64, help="Worker processes.")] = 1,
) -> None:
    """Run the API and the demo UI."""
    _require_free_port(host, port)
    import uvicorn

    from wallet.api.protocol import LimitedHttpToolsProtocol

    settings = _settings()
    logs.configure(settings.log_level)
    bind_host, bind_port = host or settings.host, port or settings.port
    # The embedded PostgreSQL, when there is no WALLET_DATABASE_URL, runs inside this guard: any
    # failure from here on stops it again and ends with one line.
    with _database_url(settings) as database_url:
        _prepare_to_serve(settings, database_url, bind_host)
        typer.echo(f"wallet: serving on http://{bind_host}:{bind_port}/ (API docs at /docs)", err=True)
        metrics_directory = _metrics_directory(workers)
        # uvicorn shuts down gracefully on SIGTERM, then raises the signal again: this handler
        # turns that into a normal exit, so the guard still stops the embedded PostgreSQL.
        signal.signal(signal.SIGTERM, _exit_after_graceful_shutdown)
        try:
            uvicorn.run(
                "wallet.api.app:create_app",
                factory=True,
                host=bind_host,
                port=bind_port,
                workers=workers,
                loop="uvloop",
                http=LimitedHttpToolsProtocol,
                log_level=settings.log_level,
                log_config=logs.standard_library_config(settings.log_level),
                access_log=False,
                forwarded_allow_ips=settings.forwarded_allow_ips,
                timeout_graceful_shutdown=TIMEOUT_SECONDS_GRACEFUL_SHUTDOWN,
                timeout_worker_healthcheck=TIMEOUT_SECONDS_WORKER_START,
            )
        finally:
            if metrics_directory is not None:
                shutil.rmtree(metrics_directory, ignore_errors=True)


def _prepare_to_serve(settings: Settings, database_url: str, bind_host: str) -> None:
    """Embedded: migrate, seed, the first admin key, the demo UI's key. External: check that the
    database is migrated (tables and functions) and, behind PgBouncer, the role's timeouts."""
    if database.is_embedded(settings):
        # Imported here: every other command starts faster without Alembic and SQLAlchemy.
        from alembic.util.exc import CommandError as AlembicError
        from sqlalchemy.exc import SQLAlchemyError

        os.environ["WALLET_DATABASE_URL"] = database_url
        try:
            _prepare_embedded(settings, database_url)
        except (AlembicError, SQLAlchemyError, psycopg.Error) as error:
            raise fail(f"could not migrate the embedded database: {_first_line(error)}") from None
        _hand_demo_ui_key(settings, database_url, bind_host)
        return
    # The demo UI's key exists only in embedded demo mode: one inherited from the environment
    # must not reach the workers, or GET /ui/session would hand it out.
    os.environ.pop("WALLET_DEMO_UI_KEY", None)
    _check_migrated(settings, database_url)
    _check_timeouts_in_force(settings)


def _first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def _require_free_port(host: str | None, port: int | None) -> None:
    """Stops `serve` with one plain line when its port is taken, before anything is started,
    migrated or created (a first start would otherwise print the admin key, then die)."""
    settings = _settings()
    bind_host, bind_port = host or settings.host, port or settings.port
    problem = _bind_problem(bind_host, bind_port)
    if problem is None:
        return
    if problem.errno != errno.EADDRINUSE:
        raise fail(f"cannot listen on {bind_host} port {bind_port}: {problem.strerror}")
    suggestion = _free_port_above(bind_host, bind_port)
    advice = f"; try `wallet serve --port {suggestion}`" if suggestion is not None else ""
    raise fail(f"port {bind_port} is in use{advice}")


def _bind_problem(host: str, port: int) -> OSError | None:
    """Binds and releases the address as uvicorn will bind it (same family, SO_REUSEADDR, so a
    port left in TIME_WAIT counts as free); the error when that fails."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
    except OSError as error:
        return error
    return None


def _free_port_above(host: str, port: int) -> int | None:
    """The first port from `port` + 10 on, stepping by 10, that can be bound now."""
    for attempt in range(1, PORT_SUGGESTION_TRIES_MAX + 1):
        candidate = port + attempt * PORT_SUGGESTION_STEP
        if candidate > 65535:
            return None
        if _bind_problem(host, candidate) is None:
            return candidate
    return None


def _exit_after_graceful_shutdown(signal_number: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def _metrics_directory(workers: int) -> str | None:
    """Several workers: a fresh directory for prometheus_client's multiprocess mode, named in
    PROMETHEUS_MULTIPROC_DIR for the workers (removed by the caller at exit). One: none."""
    if workers == 1:
        os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
        return None
    directory = tempfile.mkdtemp(prefix="wallet-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = directory
    return directory


def _prepare_embedded(settings: Settings, database_url: str) -> None:
    from wallet.db import migrate

    migrate.upgrade(database_url)

    async def first_start(connection: Connection) -> str | None:
        if await seed.is_empty(connection):
            await seed.seed(connection)
        if await keys.any_exist(connection):
            return None
        _, secret = await keys.create(connection, "admin", {keys.Scope.ADMIN})
        return secret

    secret = _run(settings.model_copy(update={"database_url": database_url}), first_start)
    if secret is not None:
        typer.echo(
            f"wallet: first start: created the admin API key (shown once, keep it):\n{secret}", err=True
        )


def _hand_demo_ui_key(settings: Settings, database_url: str, bind_host: str) -> None:
    """Embedded demo mode: a fresh admin key for the demo UI at each start (older ones revoked),
    passed to the workers in WALLET_DEMO_UI_KEY, never printed. Only when listening on a
    loopback address; elsewhere the page asks for a key."""

    async def renew(connection: Connection) -> str | None:
        return await keys.renew_demo_key(connection, create_new=is_loopback_host(bind_host))

    secret = _run(settings.model_copy(update={"database_url": database_url}), renew)
    if secret is None:
        os.environ.pop("WALLET_DEMO_UI_KEY", None)
        typer.echo(f"wallet: the demo UI asks for an API key ({bind_host} is not loopback)", err=True)
    else:
        os.environ["WALLET_DEMO_UI_KEY"] = secret


def _check_migrated(settings: Settings, database_url: str) -> None:
    from wallet.db import migrate

    async def installed(connection: Connection) -> tuple[str | None, str | None]:
        return await database.schema_revision(connection), await code.installed_checksum(connection)

    revision, functions = _run(settings.model_copy(update={"database_url": database_url}), installed)
    if revision != migrate.head_revision():
        raise fail(
            f"the database schema is at {revision or 'nothing'}, not {migrate.head_revision()}: "
            "run `wallet db migrate` first"
        )
    if functions != code.checksum():
        raise fail("the database's ledger functions are not this version's: run `wallet db migrate` first")


def _check_timeouts_in_force(settings: Settings) -> None:
    """Behind PgBouncer the pool sends no timeouts: they must be the database role's settings."""
    from wallet.db import pool

    if settings.database_pooler != "pgbouncer":
        return
    expected = pool.timeout_settings(settings)

    async def not_in_force(connection: Connection) -> list[str]:
        return await database.timeouts_not_in_force(connection, expected)

    wrong = _run(settings, not_in_force)
    if wrong:
        settings_sql = ", ".join(f"SET {name} = {value}" for name, value in expected.items())
        raise fail(
            f"WALLET_DATABASE_POOLER=pgbouncer: the database role's {'; '.join(wrong)} "
            f"(from WALLET_TIMEOUT_MS_*): run ALTER ROLE <role> {settings_sql} (one statement each)"
        )


@db_app.command("migrate")
def db_migrate() -> None:
    """Apply the migrations up to the newest."""
    from wallet.db import migrate

    settings = _settings()
    with _database_url(settings) as url:
        migrate.upgrade(url)
    typer.echo(f"migrated to {migrate.head_revision()}")


@db_app.command("seed")
def db_seed() -> None:
    """Create assets GOLD and POINTS, their system accounts and demo wallets; safe to repeat."""
    created = _run(_settings(), seed.seed)
    typer.echo("\n".join(f"created {item}" for item in created) if created else "nothing to do")


@keys_app.command("create")
def keys_create(
    name: Annotated[str, typer.Option(help="A unique name for the key.")],
    scope: Annotated[list[keys.Scope], typer.Option(help="Repeat for several scopes.")],
) -> None:
    """Create an API key; prints it once, alone on the last line."""
    if not 1 <= len(name) <= keys.NAME_LENGTH_MAX or not name.isprintable():
        raise fail(f"--name must be 1-{keys.NAME_LENGTH_MAX} printable characters", 2)
    if name.startswith(keys.DEMO_KEY_NAME_PREFIX):
        raise fail(
            f"--name: names starting with {keys.DEMO_KEY_NAME_PREFIX!r} are reserved for the demo UI", 2
        )
    try:
        api_key, secret = _run(_settings(), lambda connection: keys.create(connection, name, set(scope)))
    except keys.KeyNameTaken as error:
        raise fail(str(error)) from None
    typer.echo(f"created API key {api_key.name} with scopes {', '.join(sorted(api_key.scopes))}")
    typer.echo(secret)


@keys_app.command("list")
def keys_list() -> None:
    """List API keys (names and scopes; the keys themselves are never stored)."""
    for api_key in _run(_settings(), keys.list_keys):
        state = f"revoked {api_key.revoked_at:%Y-%m-%dT%H:%M:%SZ}" if api_key.revoked_at else "active"
        typer.echo(f"{api_key.name}\t{','.join(sorted(api_key.scopes))}\t{state}")


@keys_app.command("revoke")
def keys_revoke(name: Annotated[str, typer.Argument(help="The key's name.")]) -> None:
    """Revoke an API key by name; it stops working at once."""
    try:
        _run(_settings(), lambda connection: keys.revoke(connection, name))
    except keys.KeyNotFound as error:
        raise fail(str(error)) from None
    typer.echo(f"revoked {name}")


@ledger_app.command("verify")
def ledger_verify(
    deep: Annotated[
        bool, typer.Option("--deep", help="Also recompute every account's hash chain (reads every entry).")
    ] = False,
) -> None:
    """Check the ledger invariants; exit 1 when any does not hold."""
    result = _run(_settings(), lambda connection: verify.verify(connection, deep=deep))
    typer.echo(orjson.dumps(result.to_document(), option=orjson.OPT_INDENT_2).decode())
    if not result.ok:
        raise typer.Exit(1)


@idempotency_app.command("purge")
def idempotency_purge() -> None:
    """Delete idempotency keys older than WALLET_IDEMPOTENCY_TTL_HOURS, in small batches."""
    settings = _settings()
    deleted = _run(settings, lambda connection: idempotency.purge(connection, settings.idempotency_ttl_hours))
    typer.echo(f"purged {deleted} idempotency keys older than {settings.idempotency_ttl_hours} h")


@lots_app.command("expire")
def lots_expire() -> None:
    """Expire now what is due: lots past their expiry (to the breakage account) and holds past
    theirs, in every wallet; the serving processes' sweeper does the same every
    WALLET_EXPIRY_SWEEP_SECONDS."""
    wallets = _run(_settings(), lots.sweep)
    typer.echo(f"expired what was due in {wallets} wallets")


@events_app.command("relay")
def events_relay(
    nats_url: Annotated[str, typer.Option("--nats-url", help="NATS server, e.g. nats://127.0.0.1:4222.")],
    stream: Annotated[str, typer.Option("--stream", help="The JetStream stream (created when missing).")] = (
        "WALLET"
    ),
) -> None:
    """Publish every event, in order, to NATS JetStream subjects wallet.<type>; runs until
    stopped (SIGINT or SIGTERM). One relay per stream at a time: a second one waits."""
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", stream):
        raise fail("--stream must be 1-64 letters, digits, '_' or '-'")
    if not nats_url.startswith(("nats://", "tls://")):
        raise fail("--nats-url must be a nats:// or tls:// URL")
    from wallet import relay  # only this command needs the NATS client

    settings = _settings()
    logs.configure(settings.log_level)

    async def main(url: str) -> None:
        task = asyncio.create_task(relay.run(settings, url, nats_url, stream))
        loop = asyncio.get_running_loop()
        for signal_number in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signal_number, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await task

    with _database_url(settings) as url:
        asyncio.run(main(url))


def main() -> None:
    try:
        app()
    except ConfigurationError as error:
        typer.echo(f"wallet: {error}", err=True)
        sys.exit(2)
