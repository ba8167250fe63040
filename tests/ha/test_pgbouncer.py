"""Behind PgBouncer in transaction mode (WALLET_DATABASE_POOLER=pgbouncer) the pool sends no
timeout as a startup parameter; the timeouts are the database role's settings. `wallet serve`
refuses to start when they are not those of WALLET_TIMEOUT_MS_*, and when they are, they hold:
a spend on a locked wallet gets 503 after the lock timeout. (The concurrency and idempotency
tests also run through PgBouncer: tests/api, THROUGH_PGBOUNCER_TOO.)"""

from __future__ import annotations

import asyncio
import subprocess
import time
import urllib.parse
from collections.abc import Callable, Iterator

import asyncpg
import httpx
import pytest

from faults.conftest import open_accounts, seed_database
from faults.servers import ServerProcess
from ha.pgbouncer import PgBouncer
from support import WALLET, set_role_timeouts

pytestmark = [pytest.mark.ha, pytest.mark.timeout(120)]

ENVIRONMENT = {
    "WALLET_DATABASE_POOLER": "pgbouncer",
    "WALLET_STATEMENT_CACHE_SIZE": "0",
    "WALLET_TIMEOUT_MS_STATEMENT": "5000",
    "WALLET_TIMEOUT_MS_LOCK": "300",
}


@pytest.fixture
def bounced(create_database: Callable[[], str]) -> Iterator[tuple[str, str]]:
    """(direct URL, URL through PgBouncer) of a fresh seeded database."""
    database_url = create_database()
    asyncio.run(seed_database(database_url))
    bouncer = PgBouncer(database_url)
    bouncer.start()
    try:
        yield database_url, bouncer.url(urllib.parse.urlsplit(database_url).path.lstrip("/"))
    finally:
        bouncer.stop()


def test_serve_refuses_to_start_when_the_role_lacks_the_timeouts(bounced: tuple[str, str]) -> None:
    _, through_pgbouncer = bounced
    started = subprocess.run(
        [WALLET, "serve", "--port", "1"],
        env={"PATH": "/usr/bin:/bin", **ENVIRONMENT, "WALLET_DATABASE_URL": through_pgbouncer},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert started.returncode == 1, started.stderr
    lines = started.stderr.strip().splitlines()
    assert len(lines) == 1, started.stderr
    assert lines[0].startswith("wallet: WALLET_DATABASE_POOLER=pgbouncer: the database role's"), lines
    assert "statement_timeout is 0, not 5000" in lines[0] and "lock_timeout is 0, not 300" in lines[0]


async def test_the_role_lock_timeout_holds_through_pgbouncer(
    bounced: tuple[str, str], make_server: Callable[..., ServerProcess]
) -> None:
    """The API key lookup of a request waits on a table the test holds locked (the keys, not the
    ledger): 503 after the 300 ms lock timeout set on the role, not the 5 s statement timeout."""
    database_url, through_pgbouncer = bounced
    await asyncio.to_thread(set_role_timeouts, database_url, ENVIRONMENT)
    server = make_server(through_pgbouncer, env=ENVIRONMENT)
    accounts = await open_accounts(database_url, server.base_url, wallet_count=1, funding=100)
    path = f"/v1/wallets/{accounts.wallets[0]}"
    headers = {"Authorization": f"Bearer {accounts.admin_key}"}
    holder = await asyncpg.connect(database_url, timeout=10)
    try:
        async with holder.transaction():
            await holder.execute("LOCK TABLE api_key IN ACCESS EXCLUSIVE MODE")
            async with httpx.AsyncClient(base_url=server.base_url, headers=headers, timeout=30) as client:
                started = time.monotonic()
                locked = await client.get(path)
                seconds = time.monotonic() - started
    finally:
        await holder.close()

    assert locked.status_code == 503, locked.text
    assert 0.3 <= seconds < 4.0, seconds
    async with httpx.AsyncClient(base_url=server.base_url, headers=headers, timeout=30) as client:
        after = await client.get(path)
    assert after.status_code == 200 and after.json()["balance"] == 100, after.text
