"""Failover of a Patroni cluster (two PostgreSQL 15 nodes, `synchronous_mode: true`) under a load
of money movements, each with its own Idempotency-Key, clients retrying unanswered requests and
503s with the same key (tests/faults/workload.py). Every test checks, after the retries:
- no request got a 500 or no answer: the service stays up and answers 503 `unavailable` with
  Retry-After while there is no primary;
- every 201 is in the new primary's ledger exactly once, the balances are what the 201s imply,
  and `wallet ledger verify` exits 0 ("acknowledged and lost: 0");
- the cluster is healthy again afterwards: the old primary rejoins as the synchronous standby
  (pg_rewind where its timeline forked), so the next test fails over back to it.

The tests share one cluster and one `wallet serve` (module fixtures) and run in file order; each
prints its numbers (run with -s), which docs/ha.md reports.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass

import asyncpg
import pytest

from faults.conftest import Accounts, open_accounts
from faults.servers import ServerProcess
from faults.workload import Outcome, Workload, assert_applied_exactly_once, plan, tally
from ha.cluster import TTL_SECONDS, Cluster, Node

pytestmark = [pytest.mark.ha, pytest.mark.timeout(150)]

OPERATIONS = 1000
CONCURRENCY = 32
FAULT_AFTER_ANSWERS = 300
WORKLOAD_TIMEOUT_SECONDS = 90.0
# Bounds, generous for a loaded 2-core machine; the runs' figures are in docs/ha.md.
FAILOVER_SECONDS_MAX = 3 * TTL_SECONDS
WINDOW_SECONDS_MAX = {
    "kill -9 postmaster": 20.0,
    "node crash": 35.0,
    "switchover": 15.0,
    "Patroni alone": 15.0,
}
CHUNK_OPERATIONS = 100
REJOIN_SECONDS = 60.0


@dataclass(frozen=True)
class Figures:
    """What a client saw of one failover."""

    window_seconds: float  # the longest time without a 201 answer: writes unavailable
    answered_503: int
    first_503_seconds: float | None  # after the fault
    last_503_seconds: float | None

    def line(self) -> str:
        def seconds(value: float | None) -> str:
            return "-" if value is None else f"{value:.2f}"

        return (
            f"window_seconds={self.window_seconds:.2f}, answered_503={self.answered_503}, "
            f"first_503_after_fault={seconds(self.first_503_seconds)}, "
            f"last_503_after_fault={seconds(self.last_503_seconds)}"
        )


def figures(outcomes: list[Outcome], fault_at: float) -> Figures:
    attempts = [attempt for outcome in outcomes for attempt in outcome.attempts]
    acknowledged = sorted(a.started + a.seconds for a in attempts if a.status == 201)
    gaps = [later - earlier for earlier, later in itertools.pairwise(acknowledged)]
    unavailable = sorted(a.started + a.seconds - fault_at for a in attempts if a.status == 503)
    return Figures(
        window_seconds=max(gaps, default=0.0),
        answered_503=len(unavailable),
        first_503_seconds=unavailable[0] if unavailable else None,
        last_503_seconds=unavailable[-1] if unavailable else None,
    )


def assert_every_request_answered(outcomes: list[Outcome]) -> None:
    unanswered = [a for outcome in outcomes for a in outcome.attempts if a.status is None]
    assert not unanswered, [(a.error, a.seconds) for a in unanswered[:10]]
    statuses = {a.status for outcome in outcomes for a in outcome.attempts}
    assert statuses <= {201, 409, 503}, statuses


async def load_through(
    service: ServerProcess, cluster: Cluster, fault: Callable[[Node], None], seed: int
) -> tuple[Node, Node, Accounts, list[Outcome], float, float]:
    """Runs the workload, applies `fault` to the primary after FAULT_AFTER_ANSWERS answers, and
    waits for another node to be primary. Returns (old, new, accounts, outcomes, fault time,
    seconds to the new primary)."""
    old = cluster.wait_healthy()
    accounts = await open_accounts(old.url(), service.base_url, wallet_count=16, funding=500)
    operations = plan(accounts.wallets, OPERATIONS, seed=seed)
    workload = Workload(service.base_url, accounts.workload_key, operations, CONCURRENCY)
    running = asyncio.create_task(workload.run())
    await workload.wait_until_answered(FAULT_AFTER_ANSWERS)
    fault_at = time.monotonic()
    await asyncio.to_thread(fault, old)
    new = await asyncio.to_thread(cluster.wait_for_primary, FAILOVER_SECONDS_MAX, old)
    failover_seconds = time.monotonic() - fault_at
    outcomes = await asyncio.wait_for(running, WORKLOAD_TIMEOUT_SECONDS)
    return old, new, accounts, outcomes, fault_at, failover_seconds


async def check_failover(
    name: str, cluster: Cluster, service: ServerProcess, fault: Callable[[Node], None], seed: int
) -> None:
    old, new, accounts, outcomes, fault_at, failover_seconds = await load_through(
        service, cluster, fault, seed
    )
    seen = figures(outcomes, fault_at)
    if not old.patroni_running():  # a node crash: the machine comes back
        await asyncio.to_thread(cluster.start_patroni, old)
    rejoined = await asyncio.to_thread(cluster.wait_healthy, REJOIN_SECONDS)
    rejoin_seconds = time.monotonic() - fault_at
    print(
        f"\n{name}: {tally(outcomes).line()}, {seen.line()}, "
        f"new_primary_after_seconds={failover_seconds:.2f}, old_primary_rejoined_after_seconds="
        f"{rejoin_seconds:.2f}, pg_rewind={'pg_rewind' in old.log_text()}"
    )
    assert_every_request_answered(outcomes)
    assert seen.window_seconds <= WINDOW_SECONDS_MAX[name], seen
    assert rejoined is new and cluster.other(new) is old
    await assert_applied_exactly_once(new.url(), accounts.workload_key_id, outcomes, accounts.balances_before)
    print(f"{name}: acknowledged and lost: 0")


async def test_kill_9_of_the_primary_postmaster_fails_over_with_503s_and_loses_nothing(
    healthy: Cluster, service: ServerProcess
) -> None:
    await check_failover("kill -9 postmaster", healthy, service, healthy.kill_postmaster, seed=141)


async def test_kill_9_of_the_whole_primary_node_fails_over_back_and_loses_nothing(
    healthy: Cluster, service: ServerProcess
) -> None:
    """Patroni and the postmaster killed together, as when the machine dies: the leader key
    expires after a ttl. With two nodes this fails over to the node the previous test rewound."""

    def crash(node: Node) -> None:
        healthy.kill_patroni(node)
        healthy.kill_postmaster(node)

    await check_failover("node crash", healthy, service, crash, seed=142)


async def test_planned_switchover_under_load_loses_nothing(healthy: Cluster, service: ServerProcess) -> None:
    def switchover(node: Node) -> None:
        done = healthy.switchover(node, healthy.other(node))
        assert done.returncode == 0, done.stdout + done.stderr

    await check_failover("switchover", healthy, service, switchover, seed=143)


class Stream:
    """Workloads of CHUNK_OPERATIONS run one after the other until stopped: load for a fault
    whose effect comes a ttl later. Every chunk has to finish, each operation retried until final."""

    def __init__(self, service: ServerProcess, accounts: Accounts, seed: int) -> None:
        self.service = service
        self.accounts = accounts
        self.seed = seed
        self.outcomes: list[Outcome] = []
        self.chunks: list[tuple[float, float]] = []  # (started, finished)
        self.stop = asyncio.Event()
        self._finished = asyncio.Condition()

    async def run(self) -> list[Outcome]:
        while not self.stop.is_set():
            started = time.monotonic()
            chunk_seed = self.seed * 1000 + len(self.chunks)
            operations = plan(self.accounts.wallets, CHUNK_OPERATIONS, seed=chunk_seed)
            workload = Workload(self.service.base_url, self.accounts.workload_key, operations, 16)
            self.outcomes += await workload.run()
            async with self._finished:
                self.chunks.append((started, time.monotonic()))
                self._finished.notify_all()
        return self.outcomes

    async def wait_for_a_chunk_started_after(self, moment: float) -> None:
        async with self._finished:
            await self._finished.wait_for(lambda: any(started > moment for started, _ in self.chunks))


async def test_kill_9_of_patroni_alone_leaves_no_request_stuck_on_the_orphaned_primary(
    healthy: Cluster, service: ServerProcess
) -> None:
    """Patroni dies, its PostgreSQL goes on as primary (no watchdog here). A ttl later the other
    node is promoted; commits on the orphan then wait forever for a standby that is gone, and
    the orphan still accepts read-write connections. The service routes by Patroni's REST
    API (WALLET_PATRONI_URLS): once the new primary answers GET /primary, it closes its
    connections to the orphan and connects only to the new one. Without that, the load below
    never finishes (its requests get 503 from the orphan forever)."""
    old = healthy.wait_healthy()
    accounts = await open_accounts(old.url(), service.base_url, wallet_count=16, funding=500)
    stream = Stream(service, accounts, seed=145)
    streaming = asyncio.create_task(stream.run())
    await asyncio.wait_for(stream.wait_for_a_chunk_started_after(0.0), WORKLOAD_TIMEOUT_SECONDS)
    healthy.kill_patroni(old)
    killed_at = time.monotonic()
    new = await asyncio.to_thread(healthy.wait_for_primary, FAILOVER_SECONDS_MAX, old)
    promoted_at = time.monotonic()
    await asyncio.wait_for(stream.wait_for_a_chunk_started_after(promoted_at), WORKLOAD_TIMEOUT_SECONDS)
    stream.stop.set()
    outcomes = await asyncio.wait_for(streaming, WORKLOAD_TIMEOUT_SECONDS)
    orphan_in_recovery = await in_recovery(old)
    seen = figures(outcomes, promoted_at)
    print(
        f"\nPatroni alone: {tally(outcomes).line()}, {seen.line().replace('fault', 'promotion')}, "
        f"promoted_after_seconds={promoted_at - killed_at:.2f}, orphan_in_recovery={orphan_in_recovery}"
    )
    assert orphan_in_recovery is False, "the old primary's PostgreSQL should still run as a primary"
    assert_every_request_answered(outcomes)
    assert seen.window_seconds <= WINDOW_SECONDS_MAX["Patroni alone"], seen
    await assert_applied_exactly_once(new.url(), accounts.workload_key_id, outcomes, accounts.balances_before)
    print("Patroni alone: acknowledged and lost: 0")


async def in_recovery(node: Node) -> bool:
    connection = await asyncpg.connect(node.url("postgres"), timeout=10)
    try:
        value = await connection.fetchval("SELECT pg_is_in_recovery()")
    finally:
        await connection.close()
    assert isinstance(value, bool)
    return value


async def test_without_its_standby_the_primary_acknowledges_alone(
    healthy: Cluster, service: ServerProcess
) -> None:
    """`synchronous_mode: true`, not strict: when the synchronous standby is lost, Patroni takes
    it out of synchronous_standby_names and the primary goes on acknowledging commits that only
    it has, until the standby is back (docs/ha.md: the window a second failure could lose)."""
    primary = healthy.wait_healthy()
    standby = healthy.other(primary)
    accounts = await open_accounts(primary.url(), service.base_url, wallet_count=8, funding=500)
    healthy.kill_patroni(standby)
    healthy.kill_postmaster(standby)
    lost_at = time.monotonic()
    operations = plan(accounts.wallets, 300, seed=144)
    outcomes = await asyncio.wait_for(
        Workload(service.base_url, accounts.workload_key, operations, 16).run(), WORKLOAD_TIMEOUT_SECONDS
    )
    seen = figures(outcomes, lost_at)
    replication = await replication_of(primary)
    print(f"\nstandby lost: {tally(outcomes).line()}, {seen.line()}, replication={replication}")
    assert_every_request_answered(outcomes)
    assert healthy.primary() is primary
    assert replication == [], "the primary still has a standby"
    assert tally(outcomes).applied > 0
    await assert_applied_exactly_once(
        primary.url(), accounts.workload_key_id, outcomes, accounts.balances_before
    )


async def replication_of(node: Node) -> list[tuple[str, str]]:
    connection = await asyncpg.connect(node.url("postgres"), timeout=10)
    try:
        rows = await connection.fetch("SELECT application_name, sync_state FROM pg_stat_replication")
    finally:
        await connection.close()
    return [(row["application_name"], row["sync_state"]) for row in rows]
