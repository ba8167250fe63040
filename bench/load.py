"""The load generator: wrk with bench/wrk/wallet.lua, against 127.0.0.1 only, bounded in time."""

from __future__ import annotations

import asyncio
import json
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.settings import BENCH_DIRECTORY

WRK_SCRIPT = BENCH_DIRECTORY / "wrk" / "wallet.lua"
RESULT_PREFIX = "BENCH_RESULT "
TIMEOUT_SECONDS_REQUEST = 10
PERCENTILES = ("p50", "p90", "p99", "p99.9")


@dataclass(frozen=True, slots=True)
class LoadResult:
    requests: int
    seconds: float
    latency_ms: dict[str, float]  # mean, p50, p90, p99, p99.9, max
    statuses: dict[int, int]
    socket_errors: int  # connect, read, write and timeout errors
    replayed: int  # responses with Idempotent-Replayed: true
    items_sent: int  # batch items in requests answered 200
    items_created: int  # batch items answered 201

    @property
    def requests_per_second(self) -> float:
        return self.requests / self.seconds

    @property
    def failed(self) -> int:
        """Requests that did not get a 2xx answer."""
        non_2xx = sum(count for status, count in self.statuses.items() if not 200 <= status < 300)
        return non_2xx + self.socket_errors

    def to_document(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "seconds": round(self.seconds, 3),
            "requests_per_second": round(self.requests_per_second, 1),
            "latency_ms": self.latency_ms,
            "statuses": {str(status): count for status, count in sorted(self.statuses.items())},
            "socket_errors": self.socket_errors,
            "failed": self.failed,
            "replayed": self.replayed,
            "items_sent": self.items_sent,
            "items_created": self.items_created,
        }


@dataclass(frozen=True, slots=True)
class Load:
    """What to send: a mode of wallet.lua, its lines file and body."""

    mode: str  # get | post | transfer | replay | journal | batch (bench/wrk/wallet.lua)
    lines_file: Path
    body: str | None = None  # the body; for journal and batch, the count of postings or items


def command(
    base_url: str, api_key: str, load: Load, connections: int, threads: int, seconds: int
) -> list[str]:
    assert base_url.startswith("http://127.0.0.1:"), base_url
    arguments = ["wrk", f"-t{min(threads, connections)}", f"-c{connections}", f"-d{seconds}s"]
    arguments += ["--latency", "--timeout", f"{TIMEOUT_SECONDS_REQUEST}s", "-s", str(WRK_SCRIPT), base_url]
    arguments += ["--", load.mode, api_key, str(load.lines_file)]
    return arguments + ([load.body] if load.body is not None else [])


def parse(output: str) -> LoadResult:
    line = next((line for line in output.splitlines() if line.startswith(RESULT_PREFIX)), None)
    if line is None:
        raise RuntimeError(f"wrk printed no result:\n{output}")
    document = json.loads(line.removeprefix(RESULT_PREFIX))
    latency_us = document["latency_us"]
    errors = document["errors"]
    return LoadResult(
        requests=document["requests"],
        seconds=document["duration_us"] / 1e6,
        latency_ms={name: round(value / 1000, 2) for name, value in latency_us.items()},
        statuses={int(status): count for status, count in document["statuses"].items()},
        socket_errors=errors["connect"] + errors["read"] + errors["write"] + errors["timeout"],
        replayed=document["replayed"],
        items_sent=document["items_sent"],
        items_created=document["items_created"],
    )


def _write(path: Path, text: str) -> None:
    path.write_text(text)


async def start(arguments: list[str]) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *arguments, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )


async def finish(process: asyncio.subprocess.Process, log_path: Path, interrupt: bool = False) -> LoadResult:
    """Wait for wrk (after SIGINT when `interrupt`: wrk then stops and reports) and parse it."""
    if interrupt and process.returncode is None:
        process.send_signal(signal.SIGINT)
    output_bytes, _ = await process.communicate()
    output = output_bytes.decode(errors="replace")
    _write(log_path, output)
    if process.returncode != 0:
        raise RuntimeError(f"wrk exited with {process.returncode}:\n{output}")
    return parse(output)


async def run(arguments: list[str], log_path: Path) -> LoadResult:
    return await finish(await start(arguments), log_path)
