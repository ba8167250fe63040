"""`wallet events relay` to NATS JetStream: killed with SIGKILL at random points and restarted,
with NATS stopped and started under it, the stream ends up with every event exactly once, in
feed order; of two relays started together one publishes and the other waits, and takes over
when the first is killed."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import subprocess
import time
import uuid
from pathlib import Path

import asyncpg
import nats
import pytest

from events.nats_server import NatsServer
from support import WALLET
from wallet import keys
from wallet.ledger import accounts, events, posting

pytestmark = pytest.mark.faults

EVENTS = 5000
STREAM = "TESTFEED"
WAIT_SECONDS_MAX = 60.0


async def post_topups(database_url: str, count: int) -> None:
    """`count` top-ups (each a transaction.posted event) through the posting core."""
    connection = await asyncpg.connect(database_url, timeout=10)
    try:
        api_key, _ = await keys.create(connection, f"relay-{uuid.uuid4().hex[:12]}", {keys.Scope.WRITE})
        wallets = [
            (await accounts.create_wallet(connection, f"relay-{uuid.uuid4()}", "GOLD"))[0].id
            for _ in range(20)
        ]
        for first in range(0, count, 1000):
            requests = [
                posting.Request(
                    api_key.id,
                    f"relay-{uuid.uuid4()}",
                    bytes(32),
                    posting.topup(wallets[n % 20], 1, None, None),
                )
                for n in range(first, min(count, first + 1000))
            ]
            outcomes = await posting.post(connection, requests, wait_for_locks=True)
            assert all(outcome.result is posting.Result.POSTED for outcome in outcomes)
    finally:
        await connection.close()


async def feed(database_url: str) -> list[tuple[int, str]]:
    """(position, event id) of every event, in feed order, once all have positions."""
    connection = await asyncpg.connect(database_url, timeout=10)
    try:
        await events.sequence_all(connection)
        rows = await connection.fetch("SELECT position, event_id::text FROM event_position ORDER BY position")
    finally:
        await connection.close()
    return [(row["position"], row["event_id"]) for row in rows]


async def relay_position(database_url: str) -> int:
    connection = await asyncpg.connect(database_url, timeout=10)
    try:
        position = await connection.fetchval("SELECT position FROM event_relay WHERE stream = $1", STREAM)
    finally:
        await connection.close()
    return position or 0


async def stream_contents(nats_url: str) -> list[tuple[int, str, str]]:
    """(Wallet-Position, Nats-Msg-Id, subject) of every message in the stream, in stream order."""
    client = await nats.connect(nats_url, connect_timeout=5)
    try:
        jetstream = client.jetstream()
        info = await jetstream.stream_info(STREAM)
        messages = []
        for sequence in range(info.state.first_seq, info.state.last_seq + 1):
            message = await jetstream.get_msg(STREAM, seq=sequence)
            headers = message.headers or {}
            messages.append((int(headers["Wallet-Position"]), headers["Nats-Msg-Id"], message.subject or ""))
        return messages
    finally:
        await client.close()


class Relay:
    def __init__(self, database_url: str, nats_url: str, log_dir: Path, name: str) -> None:
        self.environment = {**os.environ, "WALLET_DATABASE_URL": database_url}
        self.nats_url = nats_url
        self.log_dir = log_dir
        self.name = name
        self.starts = 0
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def log_path(self) -> Path:
        return self.log_dir / f"{self.name}-{self.starts}.log"

    def start(self) -> None:
        self.starts += 1
        with self.log_path.open("wb") as log:
            self.process = subprocess.Popen(
                [WALLET, "events", "relay", "--nats-url", self.nats_url, "--stream", STREAM],
                env=self.environment,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()

    def said(self, event: str) -> bool:
        return (
            f'"event": "{event}"' in self.log_path.read_text()
            or f'"event":"{event}"' in self.log_path.read_text()
        )


def wait_until(condition: object, what: str) -> None:
    deadline = time.monotonic() + WAIT_SECONDS_MAX
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.05)
    raise AssertionError(f"not within {WAIT_SECONDS_MAX} s: {what}")


def assert_stream_is_the_feed(database_url: str, nats_url: str) -> None:
    expected = asyncio.run(feed(database_url))
    published = asyncio.run(stream_contents(nats_url))
    assert [(position, event_id) for position, event_id, _ in published] == expected
    assert all(subject == "wallet.transaction.posted" for _, _, subject in published)


def test_killed_and_restarted_with_nats_restarting_the_stream_has_each_event_once_in_order(
    relay_database: str, nats_server: NatsServer, tmp_path: Path
) -> None:
    asyncio.run(post_topups(relay_database, EVENTS))
    total = len(asyncio.run(feed(relay_database)))
    relay = Relay(relay_database, nats_server.url, tmp_path, "relay")
    chooser = random.Random()
    try:
        for round_number in range(6):
            relay.start()
            time.sleep(chooser.uniform(0.3, 1.2))
            if round_number == 2:  # NATS goes away under the relay, and comes back
                nats_server.stop()
                time.sleep(0.5)
                nats_server.start()
                time.sleep(chooser.uniform(0.3, 1.0))
            relay.kill()
        relay.start()
        wait_until(lambda: asyncio.run(relay_position(relay_database)) == total, "the relay caught up")
        assert_stream_is_the_feed(relay_database, nats_server.url)
        # New events go out too, and the lag is nothing once they have.
        asyncio.run(post_topups(relay_database, 50))
        wait_until(lambda: asyncio.run(relay_position(relay_database)) == total + 50, "the new events")
        assert_stream_is_the_feed(relay_database, nats_server.url)
        assert asyncio.run(_lag(relay_database)) == [(STREAM, 0, 0.0)]
    finally:
        relay.stop()
    logs = "".join(path.read_text() for path in tmp_path.glob("relay-*.log"))
    assert "relay_publish_failed" in logs or "relay_nats_disconnected" in logs, "NATS went away"
    assert "Traceback" not in logs


async def _lag(database_url: str) -> list[tuple[str, int, float]]:
    connection = await asyncpg.connect(database_url, timeout=10)
    try:
        return await events.relay_lag(connection)
    finally:
        await connection.close()


def test_two_relays_one_publishes_the_other_waits_and_takes_over(
    relay_database: str, nats_server: NatsServer, tmp_path: Path
) -> None:
    asyncio.run(post_topups(relay_database, 200))
    first = Relay(relay_database, nats_server.url, tmp_path, "first")
    second = Relay(relay_database, nats_server.url, tmp_path, "second")
    try:
        first.start()
        second.start()
        wait_until(lambda: first.said("relay_started") or second.said("relay_started"), "a relay started")
        time.sleep(1.0)
        active, waiting = (first, second) if first.said("relay_started") else (second, first)
        assert not waiting.said("relay_started") and waiting.said("relay_waiting_for_lock")
        wait_until(lambda: asyncio.run(relay_position(relay_database)) == 200, "the first relay's work")
        active.kill()
        wait_until(lambda: waiting.said("relay_started"), "the second relay took over")
        asyncio.run(post_topups(relay_database, 100))
        wait_until(lambda: asyncio.run(relay_position(relay_database)) == 300, "the second relay's work")
        assert_stream_is_the_feed(relay_database, nats_server.url)
    finally:
        first.stop()
        second.stop()
