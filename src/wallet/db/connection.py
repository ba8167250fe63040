"""The connection class of the pool: a statement whose commit PostgreSQL could not confirm is
never reported as a success.

With synchronous replication a commit waits until the synchronous standby has it. When that
wait is cancelled (a query cancel: `pg_cancel_backend`, a client's cancel request), PostgreSQL
reports the statement as successful, with only a WARNING "canceling wait for synchronous
replication ... The transaction has already committed locally, but might not have been
replicated to the standby". Turned into a 201, a failover right after would lose an
acknowledged movement. (statement_timeout does not cancel that wait: PostgreSQL disables it
before it commits. asyncpg's own command timeout raises TimeoutError, a 503, before any
answer is read.)

So every query method notes the WARNINGs with SQLSTATE 01000 (the code of that warning,
which has none of its own; its text depends on lc_messages) that arrive while it runs, and raises
CommitUnconfirmed instead of returning: the API answers 503, and the client's retry with the
same Idempotency-Key finds the movement or applies it once. A WARNING 01000 for any other reason
gets the same treatment: a needless 503 costs a retry, a wrong 201 costs money.

The notes are taken in `_process_log_message`, which asyncpg's protocol calls synchronously for
each notice, before it reads the ReadyForQuery that completes the query. It is asyncpg's private
hook: a log listener (the public way) is called later, with call_soon, and asyncpg warns about
listeners left on a connection released to the pool. tests/ha/test_unconfirmed_commit.py fails
if the hook stops being called.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import asyncpg
import structlog

log = structlog.get_logger("wallet.db")

SQLSTATE_WARNING = "01000"


class CommitUnconfirmed(Exception):
    """A statement succeeded but PostgreSQL warned that its commit may not be replicated."""


if TYPE_CHECKING:
    _Connection = asyncpg.Connection[asyncpg.Record]
else:  # not subscriptable at run time
    _Connection = asyncpg.Connection


class Connection(_Connection):
    _warned: str | None = None

    def _process_log_message(self, fields: dict[str, str], last_query: str) -> None:
        if fields.get("C") == SQLSTATE_WARNING and self._warned is None:
            self._warned = fields.get("M", "")
        super()._process_log_message(fields, last_query)  # type: ignore[misc]

    def _check_confirmed(self) -> None:
        warned, self._warned = self._warned, None
        if warned is not None:
            log.warning("commit_unconfirmed", warning=warned)
            raise CommitUnconfirmed(warned)

    async def _confirmed(self, query_method: Callable[..., Awaitable[Any]], *args: Any, **kwargs: Any) -> Any:
        """Run one of asyncpg's query methods (the caller's query, unchanged), then check."""
        self._warned = None
        result = await query_method(*args, **kwargs)
        self._check_confirmed()
        return result

    async def execute(self, *args: Any, **kwargs: Any) -> Any:
        return await self._confirmed(super().execute, *args, **kwargs)

    async def executemany(self, *args: Any, **kwargs: Any) -> None:
        await self._confirmed(super().executemany, *args, **kwargs)

    async def fetch(self, *args: Any, **kwargs: Any) -> Any:
        return await self._confirmed(super().fetch, *args, **kwargs)

    async def fetchval(self, *args: Any, **kwargs: Any) -> Any:
        return await self._confirmed(super().fetchval, *args, **kwargs)

    async def fetchrow(self, *args: Any, **kwargs: Any) -> Any:
        return await self._confirmed(super().fetchrow, *args, **kwargs)

    async def fetchmany(self, *args: Any, **kwargs: Any) -> Any:
        return await self._confirmed(super().fetchmany, *args, **kwargs)
