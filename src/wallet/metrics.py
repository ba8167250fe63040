"""Prometheus metrics: their definitions, recording helpers and the /metrics document.

With one worker the samples live in this process's default registry. With several
(`wallet serve --workers N`), `wallet serve` points PROMETHEUS_MULTIPROC_DIR at a fresh
directory before the workers start: prometheus_client then keeps every sample in per-process
files there, and /metrics, whichever worker answers it, sums them (MultiProcessCollector).
Gauges use the `livesum` mode: the sum over the workers alive, each worker removing its gauge
files when it stops (`worker_stopped`).

Label values come from small fixed sets (route templates, status codes, error codes, class
names), never from request data, so the number of series stays bounded.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import asyncpg
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

DURATION_BUCKETS_SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
ACQUIRE_BUCKETS_SECONDS = (0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 2.5, 5.0)
POOL_SAMPLE_INTERVAL_SECONDS = 1.0
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})

HTTP_REQUESTS = Counter(
    "wallet_http_requests",
    "HTTP requests answered, by method, route template and status.",
    ["method", "route", "status"],
)
HTTP_REQUEST_DURATION = Histogram(
    "wallet_http_request_duration_seconds",
    "Time from the request's arrival to the end of its response, by method and route template.",
    ["method", "route"],
    buckets=DURATION_BUCKETS_SECONDS,
)
LEDGER_OPERATIONS = Counter(
    "wallet_ledger_operations",
    "Money movements by type and outcome: created, the decline's problem code, or replayed.",
    ["type", "outcome"],
)
IDEMPOTENT_REPLAYS = Counter(
    "wallet_idempotent_replays",
    "Money movements answered with the stored response of an earlier request, by type and status.",
    ["type", "status"],
)
DATABASE_ERRORS = Counter(
    "wallet_database_errors",
    "Requests answered 503 because the database did not answer in time, by error class.",
    ["error"],
)
POOL_CONNECTIONS = Gauge(
    "wallet_db_pool_connections",
    "Database pool connections by state (open, in_use, idle, max), summed over the live workers.",
    ["state"],
    multiprocess_mode="livesum",
)
POOL_ACQUIRE_DURATION = Histogram(
    "wallet_db_pool_acquire_duration_seconds",
    "Wait for a pooled database connection.",
    buckets=ACQUIRE_BUCKETS_SECONDS,
)
POOL_ACQUIRE_TIMEOUTS = Counter(
    "wallet_db_pool_acquire_timeouts",
    "Waits for a pooled connection that ran out of WALLET_TIMEOUT_MS_POOL_ACQUIRE.",
)

GROUP_COMMIT_SIZE = Histogram(
    "wallet_group_commit_size",
    "Money movements posted together in one database transaction by the group commit.",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 1000),
)

GROUP_COMMIT_WAITING_ON_LOCKS = Gauge(
    "wallet_group_commit_waiting_on_locks",
    "Money movements waiting for a wallet another transaction holds, summed over the live workers.",
    multiprocess_mode="livesum",
)

EVENTS_RELAY_LAG = Gauge(
    "wallet_events_relay_lag_events",
    "Events in the feed that a relay has not published yet, by JetStream stream.",
    ["stream"],
    multiprocess_mode="livemax",
)
EVENTS_RELAY_LAG_SECONDS = Gauge(
    "wallet_events_relay_lag_seconds",
    "Age of the oldest event in the feed that a relay has not published (0: none), by stream.",
    ["stream"],
    multiprocess_mode="livemax",
)

_request_series: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}


def method_label(method: str) -> str:
    return method if method in HTTP_METHODS else "other"


def record_request(method: str, route: str, status: int, duration_seconds: float) -> None:
    """Count one answered request and its duration. The labelled children are cached: a
    dictionary lookup instead of prometheus_client's locked label lookup on every request."""
    key = (method, route, status)
    series = _request_series.get(key)
    if series is None:
        label = method_label(method)
        series = (
            HTTP_REQUESTS.labels(method=label, route=route, status=str(status)),
            HTTP_REQUEST_DURATION.labels(method=label, route=route),
        )
        _request_series[key] = series
    counter, histogram = series
    counter.inc()
    histogram.observe(duration_seconds)


def record_ledger_operation(kind: str, outcome: str) -> None:
    LEDGER_OPERATIONS.labels(type=kind, outcome=outcome).inc()


def record_posting(kind: str, outcome: str, replayed: bool, status: int) -> None:
    """Count a posting's answer: `created` or a decline's problem code, or `replayed`."""
    if replayed:
        LEDGER_OPERATIONS.labels(type=kind, outcome="replayed").inc()
        IDEMPOTENT_REPLAYS.labels(type=kind, status=str(status)).inc()
    else:
        LEDGER_OPERATIONS.labels(type=kind, outcome=outcome).inc()


def record_database_error(error: BaseException) -> None:
    DATABASE_ERRORS.labels(error=type(error).__name__).inc()


def record_relay_lag(stream: str, events: int, seconds: float) -> None:
    EVENTS_RELAY_LAG.labels(stream=stream).set(events)
    EVENTS_RELAY_LAG_SECONDS.labels(stream=stream).set(seconds)


def sample_pool(pool: asyncpg.Pool) -> None:
    size = pool.get_size()
    idle = pool.get_idle_size()
    assert 0 <= idle <= size, (idle, size)
    POOL_CONNECTIONS.labels(state="open").set(size)
    POOL_CONNECTIONS.labels(state="idle").set(idle)
    POOL_CONNECTIONS.labels(state="in_use").set(size - idle)
    POOL_CONNECTIONS.labels(state="max").set(pool.get_max_size())


async def _sample_pool_forever(pool: asyncpg.Pool) -> None:
    while True:
        sample_pool(pool)
        await asyncio.sleep(POOL_SAMPLE_INTERVAL_SECONDS)


def start_pool_sampler(pool: asyncpg.Pool) -> asyncio.Task[None]:
    """Refresh the pool gauges every second (off the request path); cancel the task to stop."""
    return asyncio.create_task(_sample_pool_forever(pool), name="wallet-pool-metrics")


def worker_stopped(multiprocess_directory: Path | None) -> None:
    """Drop this worker's gauges from the sums; its counters stay counted."""
    if multiprocess_directory is not None:
        multiprocess.mark_process_dead(os.getpid(), str(multiprocess_directory))  # type: ignore[no-untyped-call]


def render(multiprocess_directory: Path | None) -> tuple[bytes, str]:
    """The Prometheus text document and its media type: this process's registry, or the sum
    over all workers' files in multiprocess mode."""
    if multiprocess_directory is None:
        return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry, path=str(multiprocess_directory))  # type: ignore[no-untyped-call]
    return generate_latest(registry), CONTENT_TYPE_LATEST
