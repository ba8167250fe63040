"""What one benchmark run does: sizes, durations, concurrency levels, where the data lives.

Read from the environment once (the benchmark is a tool of its own, outside the service's
settings): BENCH_QUICK, BENCH_WORKERS, BENCH_DATA_DIR, BENCH_OUTPUT_DIR, BENCH_DURATION_SECONDS,
BENCH_QUIET_WAIT_SECONDS, BENCH_FEATURE_CYCLES, WALLET_DATABASE_URL.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

BENCH_DIRECTORY = Path(__file__).resolve().parent
PROJECT_DIRECTORY = BENCH_DIRECTORY.parent
DATABASE_NAME_DEFAULT = "wallet_bench"


class SettingsError(Exception):
    """A BENCH_* or WALLET_DATABASE_URL value the benchmark cannot use; one line naming it."""


@dataclass(frozen=True, slots=True)
class BenchSettings:
    quick: bool
    workers: int
    database_url: str | None  # None: an embedded PostgreSQL in data_dir
    data_dir: Path
    output_dir: Path
    wallet_count: int
    history_big_transactions: int  # each transaction is two entries
    history_small_transactions: int
    replay_key_count: int
    duration_seconds: int  # per measured point
    warmup_seconds: int
    concurrency_levels: tuple[int, ...]
    concurrency_reference: int  # the one level of the scenarios outside the sweep
    wrk_threads: int
    verify_baseline_seconds: int  # spend load before `wallet ledger verify` starts
    verify_tail_seconds: int  # and after it ends
    profile_seconds: int
    quiet_wait_seconds: int  # before each point, wait up to this long for a quiet machine
    quiet_busy_cores_max: float
    feature_cycles: int  # cycles of the feature costs' rounds (bench/features.py)

    @property
    def mode(self) -> str:
        return "quick" if self.quick else "full"


def _flag(name: str) -> bool:
    value = os.environ.get(name, "").strip().lower()
    if value in ("", "0", "no", "false"):
        return False
    if value in ("1", "yes", "true"):
        return True
    raise SettingsError(f"{name}: must be 1 or 0, not {value!r}")


def _integer(name: str, default: int, minimum: int, maximum: int) -> int:
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    if not text.isdigit() or not minimum <= int(text) <= maximum:
        raise SettingsError(f"{name}: must be an integer from {minimum} to {maximum}, not {text!r}")
    return int(text)


def _database_url() -> str | None:
    url = os.environ.get("WALLET_DATABASE_URL", "").strip()
    if not url:
        return None
    if not url.startswith(("postgresql://", "postgres://")):
        raise SettingsError("WALLET_DATABASE_URL: must be a postgresql:// URL")
    return url


def load() -> BenchSettings:
    quick = _flag("BENCH_QUICK")
    data_dir = Path(os.environ.get("BENCH_DATA_DIR") or BENCH_DIRECTORY / ".data")
    output_dir = Path(os.environ.get("BENCH_OUTPUT_DIR") or BENCH_DIRECTORY / ".results")
    return BenchSettings(
        quick=quick,
        workers=_integer("BENCH_WORKERS", 2, 1, 16),
        database_url=_database_url(),
        data_dir=data_dir.resolve(),
        output_dir=output_dir.resolve(),
        wallet_count=10_000,
        history_big_transactions=100_000 if quick else 1_000_000,
        history_small_transactions=10_000,
        replay_key_count=2_000 if quick else 10_000,
        duration_seconds=_integer("BENCH_DURATION_SECONDS", 3 if quick else 12, 1, 120),
        warmup_seconds=2 if quick else 4,
        concurrency_levels=(8, 16, 64) if quick else (8, 16, 32, 64),
        concurrency_reference=16,
        wrk_threads=2,
        verify_baseline_seconds=3 if quick else 8,
        verify_tail_seconds=2 if quick else 4,
        profile_seconds=4 if quick else 12,
        quiet_wait_seconds=_integer("BENCH_QUIET_WAIT_SECONDS", 0, 0, 3600),
        quiet_busy_cores_max=0.35,
        feature_cycles=_integer("BENCH_FEATURE_CYCLES", 3 if quick else 6, 1, 100),
    )
