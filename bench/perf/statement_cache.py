"""WALLET_STATEMENT_CACHE_SIZE=256 against 0 (what PgBouncer's transaction pooling needs), under a
short local load: wrk against one `wallet serve` on 127.0.0.1, each setting in turn, in rounds.

    .venv/bin/python bench/perf/statement_cache.py postgresql://postgres@127.0.0.1:5432/postgres

The URL names a maintenance database of a PostgreSQL server; a database of its own is created
there and dropped at the end. Needs wrk. Prints requests/s and latency percentiles per run;
docs/scaling.md quotes a run of it. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import asyncpg

TESTS = Path(__file__).resolve().parents[2] / "tests"  # for tests/support.py
sys.path.insert(0, str(TESTS))

from support import new_wallet, start_server, wallet_command, with_database  # noqa: E402
from wallet.db import migrate  # noqa: E402

WALLET_COUNT = 200
CACHE_SIZES = (256, 0)
LATENCY_LINE = re.compile(r"^\s+(50|90|99)%\s+(\S+)$", re.MULTILINE)


async def _maintenance(server_url: str, statement: str) -> None:
    connection = await asyncpg.connect(server_url, timeout=10)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


def run_wrk(
    base_url: str, mode: str, wallets: Path, key: str, seconds: int, connections: int
) -> dict[str, str]:
    script = Path(__file__).with_suffix(".lua")
    tag = uuid.uuid4().hex[:8]
    arguments = ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--latency", "-s", str(script), base_url]
    output = subprocess.run(
        [*arguments, "--", mode, str(wallets), key, tag],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=True,
    ).stdout
    if "Non-2xx" in output or "Socket errors" in output:
        raise RuntimeError(f"wrk saw failures:\n{output}")
    requests = re.search(r"Requests/sec:\s+(\S+)", output)
    assert requests is not None, output
    return {"requests_per_second": requests.group(1), **dict(LATENCY_LINE.findall(output))}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("server_url", help="postgresql:// URL of a maintenance database")
    parser.add_argument("--seconds", type=int, default=10, help="per run (default 10)")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections (default 16)")
    parser.add_argument("--rounds", type=int, default=2, help="each setting this many times (default 2)")
    options = parser.parse_args()
    name = f"wallet_statement_cache_{uuid.uuid4().hex[:8]}"
    database_url = with_database(options.server_url, name)
    asyncio.run(_maintenance(options.server_url, f"CREATE DATABASE {name}"))
    try:
        migrate.upgrade(database_url)
        wallet_command("db", "seed", database_url=database_url)
        with tempfile.TemporaryDirectory(prefix="statement-cache-") as directory:
            measure(database_url, Path(directory), options)
    finally:
        asyncio.run(_maintenance(options.server_url, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
    return 0


def measure(database_url: str, directory: Path, options: argparse.Namespace) -> None:
    print("cache  workload  requests/s  p50  p90  p99")
    for round_number in range(options.rounds):
        for cache_size in CACHE_SIZES:
            log_path = directory / f"server-{cache_size}-{round_number}.log"
            server = start_server(
                database_url, log_path, env={"WALLET_STATEMENT_CACHE_SIZE": str(cache_size)}
            )
            try:
                wallets = directory / "wallets.txt"
                if not wallets.exists():
                    with server.client() as client:
                        wallets.write_text("\n".join(new_wallet(client) for _ in range(WALLET_COUNT)) + "\n")
                for mode in ("topup", "read"):
                    result = run_wrk(
                        server.base_url, mode, wallets, server.admin_key, options.seconds, options.connections
                    )
                    print(
                        f"{cache_size:>5}  {mode:<8}  {result['requests_per_second']:>10}  "
                        f"{result['50']}  {result['90']}  {result['99']}",
                        flush=True,
                    )
            finally:
                server.stop()


if __name__ == "__main__":
    sys.exit(main())
