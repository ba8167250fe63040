"""py-spy on one worker during a spend load: where the worker's time goes per request.

``py-spy record --gil`` keeps only the samples of the thread holding the GIL: a worker waiting
in epoll (uvloop releases the GIL there) is not sampled, a worker running Python or a C
extension called from Python (httptools, the asyncpg protocol, uvloop callbacks, system calls
made while holding the GIL) is. So the share of a step in the samples is its share of the
worker's busy time. (py-spy's own idle detection does not work on this machine: without
--gil, threads blocked in a wait are sampled as running.) Each sample is given to the
innermost step of the request path found in its stack (OPERATIONS, then OTHER_WALLET, then
FRAMEWORK); a sample of an AnyIO worker thread is a sync dependency run in the thread pool. The
top functions by own and by inclusive samples are kept too, so the summary stays useful when the
service's function names change.
"""

from __future__ import annotations

import asyncio
import re
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PY_SPY = str(Path(sys.executable).with_name("py-spy"))
SAMPLE_RATE_PER_SECOND = 250
TOP_FUNCTIONS = 25

# (label, pattern on "function (file" of a frame). A step of the service's request path takes
# every sample whose stack passes through it, the innermost step winning; a sample in no step
# goes to the innermost framework part of its stack. The posting itself runs in a task of the
# group commit (ledger/group_commit.py), not in the request's: its samples have the group
# commit's frames, not the route's, below them. wallet/db/connection.py (the query methods'
# check) is no step of its own: its samples go to the step that called it.
OPERATIONS = (
    ("auth: API key lookup in the database (cache miss)", r"^authenticate \(wallet/(keys|api/auth)\.py"),
    (
        "auth: API key from the cache, header, scope",
        r"^(authorise|_bearer_secret|cached|hash_key|allows) \(wallet/",
    ),
    (
        "pool: acquire/release a connection",
        r"^(pooled_connection|connection) \(wallet/api/deps\.py|\(asyncpg/pool\.py",
    ),
    ("posting.post: ledger.post arguments", r"^_arguments \(wallet/ledger/posting\.py"),
    (
        "response: transaction record to JSON",
        r"^(to_json|to_document|balance_after|timestamp_text) \(wallet/ledger/transactions\.py",
    ),
    (
        "posting.post: outcomes and transaction records",
        r"^_posted_record \(wallet/ledger/posting\.py|\(wallet/ledger/transactions\.py",
    ),
    ("posting.post: the ledger.post call (asyncpg, wait excluded)", r"^post \(wallet/ledger/posting\.py"),
    ("group commit: queue, groups, hand-over", r"\(wallet/ledger/group_commit\.py"),
    (
        "request body: read + json.loads + canonical JSON",
        r"^(read_json|read_body|_media_type_problem|canonical_json|loads|depth) \(wallet/",
    ),
    ("pydantic validation of the body", r"^validate \(wallet/api/body\.py"),
    ("Idempotency-Key header and wallet id", r"^(idempotency_key_of|check_key|wallet_id_of) \(wallet/"),
    ("fingerprint (sha256)", r"^fingerprint \(wallet/idempotency\.py"),
    (
        "movement: postings and request (posting.spend, uuid7)",
        r"\(wallet/_ids\.py|^(spend|topup|bonus|transfer|journal) \(wallet/ledger/posting\.py",
    ),
    ("route handler (rest of api/movements.py)", r"\(wallet/api/(movements|routes)\.py"),
    ("metrics (prometheus_client)", r"\(wallet/metrics\.py|\(prometheus_client/"),
    ("access log (structlog)", r"\(structlog/|\(logging/"),
    ("HTTP protocol (uvicorn + httptools)", r"\(wallet/api/protocol\.py"),
)
# A sample in no step of OPERATIONS, but in the service's code.
OTHER_WALLET = (("other wallet code", r"\(wallet/(?!api/middleware\.py|db/connection\.py)"),)
FRAMEWORK = (
    ("FastAPI dependency solving", r"\(fastapi/dependencies/"),
    ("thread pool hop (sync dependencies, anyio)", r"\(anyio/|run_in_threadpool|to_thread|\(threading\.py"),
    ("pydantic (FastAPI parameter validation)", r"\(pydantic"),
    ("response object and sending (starlette)", r"\(starlette/responses\.py"),
    ("routing (FastAPI/Starlette)", r"\((fastapi|starlette)/routing\.py"),
    ("HTTP protocol (uvicorn + httptools)", r"\(uvicorn/protocols/"),
    (
        "middleware stack (wallet, Starlette, FastAPI)",
        r"\(starlette/middleware/|\(fastapi/(_body_limit|telemetry|middleware)|\(wallet/api/middleware\.py",
    ),
    ("asyncpg query of a stack py-spy cut short", r"\(asyncpg/"),
    ("event loop and C extensions (uvloop, httptools, asyncpg protocol)", r"\(asyncio/|\(uvloop/|\(uvicorn/"),
)
THREAD_POOL_LABEL = "sync dependencies in the thread pool (AnyIO worker threads)"
MAIN_THREAD_NAME = "MainThread"


def _frames(stack: str) -> tuple[str, list[str]]:
    """(thread name, frames root first) of a `--threads` stack."""
    thread, _, rest = stack.partition(";")
    return thread.rpartition(": ")[2], rest.split(";") if rest else []


def _innermost(frames: list[str], rules: tuple[tuple[str, str], ...]) -> str | None:
    for frame in reversed(frames):
        for label, pattern in rules:
            if re.search(pattern, frame):
                return label
    return None


def _label(thread_name: str, frames: list[str]) -> str:
    if thread_name != MAIN_THREAD_NAME:
        return THREAD_POOL_LABEL
    return (
        _innermost(frames, OPERATIONS)
        or _innermost(frames, OTHER_WALLET)
        or _innermost(frames, FRAMEWORK)
        or "other (interpreter, C extensions called from the loop)"
    )


def _function(frame: str) -> str:
    """'function (path/file.py:line)' without the line number."""
    return re.sub(r":\d+\)$", ")", frame)


@dataclass(frozen=True, slots=True)
class Profile:
    samples: int
    share_by_step: dict[str, float]
    top_self: list[tuple[str, float]]
    top_inclusive: list[tuple[str, float]]

    def to_document(self) -> dict[str, Any]:
        return {
            "samples": self.samples,
            "share_by_step": self.share_by_step,
            "top_self": self.top_self,
            "top_inclusive": self.top_inclusive,
        }


def analyse(raw_text: str) -> Profile:
    by_step: Counter[str] = Counter()
    by_self: Counter[str] = Counter()
    by_inclusive: Counter[str] = Counter()
    total = 0
    for line in raw_text.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        thread_name, frames = _frames(stack)
        if not frames:
            continue
        total += count
        by_step[_label(thread_name, frames)] += count
        by_self[_function(frames[-1])] += count
        for function in {_function(frame) for frame in frames}:
            by_inclusive[function] += count
    if total == 0:
        return Profile(0, {}, [], [])

    def shares(counter: Counter[str], limit: int | None = None) -> list[tuple[str, float]]:
        return [(name, round(count / total, 4)) for name, count in counter.most_common(limit)]

    return Profile(
        samples=total,
        share_by_step=dict(shares(by_step)),
        top_self=shares(by_self, TOP_FUNCTIONS),
        top_inclusive=[item for item in shares(by_inclusive, TOP_FUNCTIONS * 2) if item[1] < 0.999][
            :TOP_FUNCTIONS
        ],
    )


async def record(process_id: int, seconds: int, raw_path: Path) -> asyncio.subprocess.Process:
    arguments = [PY_SPY, "record", "--pid", str(process_id), "--duration", str(seconds)]
    arguments += ["--rate", str(SAMPLE_RATE_PER_SECOND), "--format", "raw", "--nonblocking", "--gil"]
    arguments += ["--threads"]
    return await asyncio.create_subprocess_exec(
        *arguments,
        "--output",
        str(raw_path),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )


async def dump(process_id: int) -> str:
    process = await asyncio.create_subprocess_exec(
        PY_SPY,
        "dump",
        "--pid",
        str(process_id),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await process.communicate()
    return output.decode(errors="replace")
