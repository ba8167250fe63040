"""What counts as "the database is not answering" (503, retry) and what is a bug (500)."""

from __future__ import annotations

import errno

import asyncpg
import pytest

from wallet.db.errors import DatabaseUnreachable, is_unavailable, reaching


@pytest.mark.parametrize(
    "error",
    [
        asyncpg.ConnectionDoesNotExistError("connection was closed in the middle of operation"),
        asyncpg.CannotConnectNowError("the database system is starting up"),
        asyncpg.AdminShutdownError("terminating connection due to administrator command"),
        asyncpg.QueryCanceledError("canceling statement due to statement timeout"),
        asyncpg.LockNotAvailableError("canceling statement due to lock timeout"),
        asyncpg.TooManyConnectionsError("sorry, too many clients already"),
        TimeoutError(),
        ConnectionRefusedError(errno.ECONNREFUSED, "refused"),
        ConnectionResetError(errno.ECONNRESET, "reset"),
        OSError(errno.EHOSTUNREACH, "No route to host"),
        asyncpg.InterfaceError("cannot call Connection.fetch(): connection is closed"),
        DatabaseUnreachable("FileNotFoundError: [Errno 2] No such file or directory"),
    ],
)
def test_the_database_not_answering_is_unavailable(error: BaseException) -> None:
    assert is_unavailable(error)


@pytest.mark.parametrize(
    "error",
    [
        FileNotFoundError(errno.ENOENT, "No such file or directory"),  # e.g. in /metrics
        PermissionError(errno.EACCES, "Permission denied"),
        asyncpg.InterfaceError("cannot perform operation: another operation is in progress"),
        asyncpg.DataError("invalid input for query argument $1"),
        asyncpg.UniqueViolationError("duplicate key value violates unique constraint"),
        asyncpg.CheckViolationError("new row violates check constraint"),
        AssertionError("a broken invariant"),
        ValueError("a bug"),
    ],
)
def test_everything_else_is_a_bug(error: BaseException) -> None:
    assert not is_unavailable(error)


def test_an_os_error_while_connecting_means_the_database_cannot_be_reached() -> None:
    with pytest.raises(DatabaseUnreachable) as raised, reaching():
        raise FileNotFoundError(errno.ENOENT, "No such file or directory")
    assert is_unavailable(raised.value)
    assert isinstance(raised.value.__cause__, FileNotFoundError)
