"""Which errors mean "the database is not answering right now" (503, retry with the same key),
named exactly: every other error is a bug and must surface as one (500, logged with its
traceback). The API's error handler and the command line both ask `is_unavailable`.
"""

from __future__ import annotations

import contextlib
import errno
from collections.abc import Iterator

import asyncpg

from wallet.db.connection import CommitUnconfirmed
from wallet.db.patroni import NoPrimaryFound


class DatabaseUnreachable(Exception):
    """Connecting to the database failed at the operating system's level: refused, no socket
    file (a local server that is down), no route. Raised from the OSError by `reaching`."""


UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (
    DatabaseUnreachable,
    # SQLSTATE class 08 (connection exceptions), ConnectionDoesNotExistError (the server went away
    # under a running query) among them.
    asyncpg.PostgresConnectionError,
    # The server is starting up, shutting down, or was restarted after a crash (57P01-57P03).
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.TooManyConnectionsError,
    # WALLET_TIMEOUT_MS_STATEMENT and WALLET_TIMEOUT_MS_LOCK, and the rare transient conflicts.
    asyncpg.QueryCanceledError,
    asyncpg.LockNotAvailableError,
    asyncpg.DeadlockDetectedError,
    asyncpg.SerializationError,
    # No connection to be had within WALLET_TIMEOUT_MS_POOL_ACQUIRE or WALLET_TIMEOUT_MS_CONNECT.
    TimeoutError,
    # The socket: refused, reset, aborted, broken pipe.
    ConnectionError,
    # During a failover (tests/ha): no host of a multi-host URL is read-write yet; a connection cut
    # in the middle of the protocol ("cannot switch to state 12", asyncpg's base class of
    # unexpected client states); a statement reaching a node that has just become a standby;
    # no Patroni node answers GET /primary; a commit whose wait for the standby was cancelled.
    asyncpg.TargetServerAttributeNotMatched,
    asyncpg.InternalClientError,
    asyncpg.ReadOnlySQLTransactionError,
    NoPrimaryFound,
    CommitUnconfirmed,
)
# OSErrors of the network that are not ConnectionErrors (no route, no network, timed out).
NETWORK_ERRNOS = frozenset({errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ENETDOWN, errno.ETIMEDOUT})


@contextlib.contextmanager
def reaching() -> Iterator[None]:
    """Around what connects to the database (a pool's acquire, a connect): there, any OSError
    means the database cannot be reached, even one that elsewhere would be a bug (ENOENT: the
    Unix socket of a stopped server is gone)."""
    try:
        yield
    except OSError as error:
        raise DatabaseUnreachable(f"{type(error).__name__}: {error}") from error


def is_unavailable(error: BaseException) -> bool:
    if isinstance(error, UNAVAILABLE_ERRORS):
        return True
    if isinstance(error, asyncpg.InterfaceError):
        # A pooled connection closed under the request (its server or a failover closed it); not
        # "another operation is in progress" or a value asyncpg cannot encode, which are bugs.
        return "connection is closed" in str(error)
    return isinstance(error, OSError) and error.errno in NETWORK_ERRNOS
