"""PostgreSQL stopped with an immediate shutdown (no checkpoint, connections cut, crash recovery
at the next start) while money movements flow, then started again: meanwhile the service
answers 503 with Retry-After, quickly, never a 500; it recovers by itself once the database is
back; and after the clients' retries every operation is applied exactly once.

The test runs its own embedded PostgreSQL, so it can stop it whatever server the rest of the
suite uses. Its socket directory stays the same across the restart, and so does the URL.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from faults.conftest import MakeServer, open_accounts
from faults.workload import Attempt, Outcome, Workload, assert_applied_exactly_once, plan, tally
from wallet.db import embedded

pytestmark = [pytest.mark.faults, pytest.mark.timeout(120)]

OPERATIONS = 1000
CONCURRENCY = 32
STOPPED_AFTER_ANSWERS = 350
OUTAGE_SECONDS = 2.0
TIMEOUT_MS_CONNECT = 500
TIMEOUT_MS_POOL_ACQUIRE = 500
SERVER_ENVIRONMENT = {
    "WALLET_TIMEOUT_MS_CONNECT": str(TIMEOUT_MS_CONNECT),
    "WALLET_TIMEOUT_MS_POOL_ACQUIRE": str(TIMEOUT_MS_POOL_ACQUIRE),
    "WALLET_TIMEOUT_MS_STATEMENT": "2000",
    "WALLET_TIMEOUT_MS_LOCK": "1000",
}
# A request waits for a connection at most twice (authentication, then the posting), each wait
# bounded by the acquire timeout, which includes connecting; a request of a wallet the group
# commit is posting may first wait for that group (bounded the same way): two seconds more for
# a busy machine.
ANSWER_SECONDS_MAX = 3 * TIMEOUT_MS_POOL_ACQUIRE / 1000 + 2.0
RECOVERY_SECONDS_MAX = 5.0
WORKLOAD_TIMEOUT_SECONDS = 60.0


async def test_database_restart_mid_load_gives_quick_503s_then_recovers_exactly_once(
    stopped_embedded_directory: Path, make_server: MakeServer
) -> None:
    postgres_directory = stopped_embedded_directory
    database = embedded.start(postgres_directory)
    url = database.url()
    server = make_server(url, env=SERVER_ENVIRONMENT)
    accounts = await open_accounts(url, server.base_url, wallet_count=16, funding=500)
    operations = plan(accounts.wallets, OPERATIONS, seed=5)
    workload = Workload(server.base_url, accounts.workload_key, operations, CONCURRENCY)

    running = asyncio.create_task(workload.run())
    await workload.wait_until_answered(STOPPED_AFTER_ANSWERS)
    stopping_at = time.monotonic()
    await asyncio.to_thread(database.stop, "immediate")
    down_at = time.monotonic()
    await asyncio.sleep(OUTAGE_SECONDS)
    starting_at = time.monotonic()
    restarted = await asyncio.to_thread(embedded.start, postgres_directory)
    back_at = time.monotonic()
    assert restarted.url() == url
    outcomes = await asyncio.wait_for(running, WORKLOAD_TIMEOUT_SECONDS)

    attempts = [attempt for outcome in outcomes for attempt in outcome.attempts]
    while_down = [attempt for attempt in attempts if down_at <= attempt.started <= starting_at]
    unknown = _cut_by_the_stop(outcomes, stopping_at)
    recovery_seconds = _first_success_after(outcomes, back_at) - back_at
    print(
        f"\ndatabase restart: {tally(outcomes).line()}, sent_while_down={len(while_down)}, "
        f"slowest_answer_while_down_seconds={max(attempt.seconds for attempt in while_down):.3f}, "
        f"slowest_503_seconds={max(a.seconds for a in attempts if a.status == 503):.3f}, "
        f"outcome_unknown={len(unknown)}, outcome_unknown_replayed={sum(o.replayed for o in unknown)}, "
        f"database_start_seconds={back_at - starting_at:.2f}, recovery_seconds={recovery_seconds:.2f}, "
        f"last_503_after_restart_seconds={_last_503_after(attempts, back_at):.2f}"
    )
    unanswered = [attempt for attempt in attempts if attempt.status is None]
    assert not unanswered, [(a.error, a.started - stopping_at, a.seconds) for a in unanswered[:10]]
    assert while_down, "no request was sent while the database was down"
    # Answered while the database was down: 503. A request that waited in the service for its
    # wallet until the database was back may have been posted then.
    assert {attempt.status for attempt in while_down if attempt.started + attempt.seconds < back_at} == {503}
    assert {attempt.status for attempt in while_down} <= {201, 409, 503}
    assert max(attempt.seconds for attempt in while_down) <= ANSWER_SECONDS_MAX
    assert recovery_seconds <= RECOVERY_SECONDS_MAX
    late_503 = [a for a in attempts if a.status == 503 and a.started > back_at + RECOVERY_SECONDS_MAX]
    assert not late_503, f"{len(late_503)} answers of 503 long after the database came back"
    await assert_applied_exactly_once(url, accounts.workload_key_id, outcomes, accounts.balances_before)


def _cut_by_the_stop(outcomes: list[Outcome], stopped_at: float) -> list[Outcome]:
    """Operations whose request was running when the database stopped and was answered 503:
    the service could not know whether its COMMIT had happened."""
    return [
        outcome
        for outcome in outcomes
        if any(
            attempt.status == 503 and attempt.started < stopped_at < attempt.started + attempt.seconds
            for attempt in outcome.attempts
        )
    ]


def _first_success_after(outcomes: list[Outcome], moment: float) -> float:
    """When the first 201 answer to a request sent after `moment` arrived."""
    return min(
        attempt.started + attempt.seconds
        for outcome in outcomes
        for attempt in outcome.attempts
        if attempt.status == 201 and attempt.started >= moment
    )


def _last_503_after(attempts: list[Attempt], moment: float) -> float:
    """How long after `moment` the last 503 answer arrived (negative: before it)."""
    return max(attempt.started + attempt.seconds for attempt in attempts if attempt.status == 503) - moment
