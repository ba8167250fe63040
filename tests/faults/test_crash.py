"""kill -9 of `wallet serve` in the middle of a load of money movements (single requests, which
the service groups into shared transactions, among them captures of holds and refunds of
spends, and batches), then a restart on the same port: once the clients have retried what got
no answer, every operation is applied exactly once."""

from __future__ import annotations

import asyncio
import random
import time

import pytest

from faults.conftest import MakeServer, open_accounts
from faults.workload import (
    BatchWorkload,
    Workload,
    assert_applied_exactly_once,
    captures_and_refunds,
    plan,
    tally,
)

pytestmark = [pytest.mark.faults, pytest.mark.timeout(120)]

OPERATIONS = 2000
CAPTURES_AND_REFUNDS = 100  # of each
BATCHED_OPERATIONS = 3000  # in batches of BATCH_SIZE, BATCH_CONCURRENCY at a time
BATCH_SIZE = 10
BATCH_CONCURRENCY = 2
KILLED_AFTER_BATCHED_ANSWERS = 300
CONCURRENCY = 48
KILLED_AFTER_ANSWERS = 800
WORKLOAD_TIMEOUT_SECONDS = 75.0


async def test_kill_9_mid_load_then_restart_applies_every_operation_exactly_once(
    fault_database: str, make_server: MakeServer
) -> None:
    server = make_server(fault_database)
    accounts = await open_accounts(fault_database, server.base_url, wallet_count=20, funding=500)
    special, balances_before = await captures_and_refunds(
        server.base_url, accounts.admin_key, accounts.wallets, CAPTURES_AND_REFUNDS
    )
    operations = plan(accounts.wallets, OPERATIONS, seed=9) + special
    random.Random(9).shuffle(operations)
    workload = Workload(server.base_url, accounts.workload_key, operations, CONCURRENCY)
    batched = plan(accounts.wallets, BATCHED_OPERATIONS, seed=10)
    batches = BatchWorkload(server.base_url, accounts.workload_key, batched, BATCH_CONCURRENCY, BATCH_SIZE)

    running = asyncio.gather(workload.run(), batches.run())
    await workload.wait_until_answered(KILLED_AFTER_ANSWERS)
    await batches.wait_until_answered(KILLED_AFTER_BATCHED_ANSWERS)
    server.kill()
    killed_at = time.monotonic()
    restart_seconds = await asyncio.to_thread(server.start)
    single_outcomes, batch_outcomes = await asyncio.wait_for(running, WORKLOAD_TIMEOUT_SECONDS)
    outcomes = single_outcomes + batch_outcomes

    cut = [
        outcome
        for outcome in outcomes
        if any(attempt.status is None and attempt.started < killed_at for attempt in outcome.attempts)
    ]
    numbers = tally(outcomes)
    print(
        f"\nkill -9: {numbers.line()}, cut_in_flight={len(cut)}, "
        f"cut_then_replayed={sum(outcome.replayed for outcome in cut)}, "
        f"restart_seconds={restart_seconds:.2f}"
    )
    assert cut, "the kill cut no request in flight: the test did not test a crash"
    assert any(outcome in cut for outcome in batch_outcomes), "the kill cut no batch in flight"
    assert numbers.applied > 0 and numbers.declined > 0, numbers
    await assert_applied_exactly_once(fault_database, accounts.workload_key_id, outcomes, balances_before)
