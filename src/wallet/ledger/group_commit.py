"""Group commit: concurrent posting requests of one process share database transactions.

Each request is handed to `GroupCommit.post` and waits for its own outcome. While fewer than
`in_flight_max` groups are being posted, a request is sent at once, alone or with whatever else
is waiting (a lone request never waits for company); when that many are in flight, requests
queue and leave together, up to `group_size_max` at a time, as soon as a group comes back. So
under load one round trip, one commit and one wallet lock serve many requests, and idle, none
waits.

Two lanes keep a held wallet from holding up everyone:
- the fast lane posts without waiting for wallet locks (ledger.post skips a wallet another
  transaction holds and defers the requests that need it);
- the waiting lane takes the deferred requests and posts them waiting for their wallets, at most
  `in_flight_max_waiting` groups at a time. Its groups never mix wallets: a group holds the
  requests of the first queued request's wallets (those of a transfer: its two wallets and
  either alone), and no two of its groups in flight share a wallet. Requests on a busy (hot)
  wallet still share its lock, one group at a time; a wallet held for long (another transaction
  keeps it locked) takes one group, and holds up only the requests that need it.
A request for a wallet that a group of this process is posting (or that waits in the waiting
lane) goes to the waiting lane at once: the fast lane would only find it locked and defer it,
a round trip for nothing. So the requests of a hot wallet cost one round trip each group, not two.

Each request of a group keeps its own idempotency row, outcome and response; one's decline does
not touch the others (ledger.post). Two requests with the same key never share a group: the
second waits for a later one, and replays the first. When a group fails with a database error
that is not the database being unreachable or slow, its requests are posted again one by one,
each in its own transaction: the one that caused the error gets it, the others their outcomes,
and nothing is lost or applied twice (a group that failed wrote nothing).
"""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass, field

import asyncpg

from wallet.ledger import posting
from wallet.ledger.limits import GROUP_SIZE_MAX
from wallet.types import Connection

# Errors after which posting the requests one by one is pointless: the database is gone, or
# slow to the point of a statement timeout. They reach every request of the group.
GROUP_ERRORS_FINAL: tuple[type[BaseException], ...] = (
    asyncpg.QueryCanceledError,  # statement_timeout
    asyncpg.PostgresConnectionError,
    asyncpg.CannotConnectNowError,
    asyncpg.AdminShutdownError,
    asyncpg.InterfaceError,
    OSError,
    TimeoutError,
)


@dataclass(slots=True)
class _Waiting:
    request: posting.Request
    future: asyncio.Future[posting.Outcome]


@dataclass(slots=True)
class _Lane:
    wait_for_locks: bool
    in_flight_max: int
    waiting: list[_Waiting] = field(default_factory=list)
    tasks: set[asyncio.Task[None]] = field(default_factory=set)
    requests: int = 0  # in the lane: queued, or in a group in flight


class GroupCommit:
    def __init__(
        self,
        connection: Callable[[], AbstractAsyncContextManager[Connection]],
        *,
        in_flight_max: int,
        group_size_max: int,
        in_flight_max_waiting: int = 8,
        observe_group: Callable[[int], None] | None = None,
        observe_waiting_on_locks: Callable[[int], None] | None = None,
    ) -> None:
        assert 1 <= in_flight_max <= 64 and 1 <= in_flight_max_waiting <= 64
        assert 1 <= group_size_max <= GROUP_SIZE_MAX
        self._connection = connection
        self._group_size_max = group_size_max
        self._observe_group = observe_group or (lambda size: None)
        self._observe_waiting_on_locks = observe_waiting_on_locks or (lambda count: None)
        self._fast = _Lane(wait_for_locks=False, in_flight_max=in_flight_max)
        self._waiting = _Lane(wait_for_locks=True, in_flight_max=in_flight_max_waiting)
        # Wallets of the requests in a group in flight (either lane) or queued in the waiting lane.
        self._busy: Counter[uuid.UUID] = Counter()
        # Wallets of the waiting lane's groups in flight.
        self._waiting_on: Counter[uuid.UUID] = Counter()

    async def post(self, request: posting.Request) -> posting.Outcome:
        future: asyncio.Future[posting.Outcome] = asyncio.get_running_loop().create_future()
        waiting = _Waiting(request, future)
        if any(wallet_id in self._busy for wallet_id in request.movement.wallet_ids):
            self._queue_waiting([waiting])
        else:
            self._fast.waiting.append(waiting)
            self._send(self._fast)
        return await future

    def _queue_waiting(self, entries: Sequence[_Waiting]) -> None:
        """Into the waiting lane (its wallets busy until posted), which sends what it can."""
        for waiting in entries:
            self._waiting.waiting.append(waiting)
            self._mark_busy([waiting], +1)
        self._waiting.requests += len(entries)
        self._observe_waiting_on_locks(self._waiting.requests)
        self._send(self._waiting)

    def _mark_busy(self, entries: Iterable[_Waiting], step: int) -> None:
        for waiting in entries:
            _count(self._busy, waiting.request.movement.wallet_ids, step)

    async def close(self) -> None:
        """Wait for the groups in flight (the server stops taking requests first)."""
        while self._fast.tasks or self._waiting.tasks:
            await asyncio.gather(*self._fast.tasks, *self._waiting.tasks, return_exceptions=True)

    def _send(self, lane: _Lane) -> None:
        while lane.waiting and len(lane.tasks) < lane.in_flight_max:
            group = self._take_group(lane)
            if not group:
                break
            task = asyncio.create_task(self._post_group(lane, group))
            lane.tasks.add(task)
            task.add_done_callback(lambda done, lane=lane: self._group_done(lane, done))  # type: ignore[misc]

    def _take_group(self, lane: _Lane) -> list[_Waiting]:
        group: list[_Waiting] = []
        keys: set[tuple[object, str]] = set()
        kept: list[_Waiting] = []
        wallets: frozenset[uuid.UUID] | None = None  # the waiting lane's group: of these only
        for waiting in lane.waiting:
            if waiting.future.done():  # its request was cancelled: the client went away
                if lane.wait_for_locks:
                    lane.requests -= 1
                    self._mark_busy([waiting], -1)
                continue
            fits = len(group) < self._group_size_max and waiting.request.key not in keys
            if fits and lane.wait_for_locks:
                wallet_ids = waiting.request.movement.wallet_ids
                if wallets is None:
                    fits = not any(wallet_id in self._waiting_on for wallet_id in wallet_ids)
                    if fits:
                        wallets = frozenset(wallet_ids)
                else:
                    fits = wallets.issuperset(wallet_ids)
            if fits:
                keys.add(waiting.request.key)
                group.append(waiting)
            else:
                kept.append(waiting)
        lane.waiting = kept
        return group

    def _group_done(self, lane: _Lane, task: asyncio.Task[None]) -> None:
        lane.tasks.discard(task)
        self._send(lane)

    async def _post_group(self, lane: _Lane, group: Sequence[_Waiting]) -> None:
        self._observe_group(len(group))
        requests = [waiting.request for waiting in group]
        if not lane.wait_for_locks:  # a waiting-lane request is busy from its queueing on
            self._mark_busy(group, +1)
        # A waiting-lane group's requests are of its first request's wallets (_take_group).
        group_wallets = group[0].request.movement.wallet_ids if lane.wait_for_locks else set()
        _count(self._waiting_on, group_wallets, +1)
        try:
            async with self._connection() as connection:
                results = await post_each_on_failure(connection, requests, wait_for_locks=lane.wait_for_locks)
        except BaseException as error:  # handed to every request of the group
            results = [error] * len(group)
        finally:
            self._mark_busy(group, -1)
            _count(self._waiting_on, group_wallets, -1)
        deferred: list[_Waiting] = []
        for waiting, result in zip(group, results, strict=True):
            if waiting.future.done():
                continue
            if isinstance(result, BaseException):
                waiting.future.set_exception(result)
            elif result.result is posting.Result.DEFERRED:
                assert not lane.wait_for_locks
                deferred.append(waiting)
            else:
                waiting.future.set_result(result)
        if lane.wait_for_locks:
            lane.requests -= len(group)
        if deferred:
            self._queue_waiting(deferred)
        elif lane.wait_for_locks:
            self._observe_waiting_on_locks(self._waiting.requests)
            self._send(self._waiting)


def _count(counter: Counter[uuid.UUID], wallet_ids: Iterable[uuid.UUID], step: int) -> None:
    """Count the wallets up or down by `step`; a wallet counted down to 0 leaves the counter."""
    for wallet_id in wallet_ids:
        counter[wallet_id] += step
        if counter[wallet_id] <= 0:
            del counter[wallet_id]


async def post_each_on_failure(
    connection: Connection, requests: Sequence[posting.Request], *, wait_for_locks: bool
) -> list[posting.Outcome | BaseException]:
    """Post the requests together; when that fails with an error one of them may have caused,
    post them one by one, each with its own outcome or error."""
    try:
        return list(await posting.post(connection, requests, wait_for_locks=wait_for_locks))
    except GROUP_ERRORS_FINAL:
        raise
    except asyncpg.PostgresError:  # the group's transaction rolled back: nothing was written
        if len(requests) == 1:
            raise
    results: list[posting.Outcome | BaseException] = []
    for request in requests:
        try:
            (outcome,) = await posting.post(connection, [request], wait_for_locks=wait_for_locks)
        except GROUP_ERRORS_FINAL:
            raise
        except Exception as error:  # this request's own error
            results.append(error)
        else:
            results.append(outcome)
    return results
