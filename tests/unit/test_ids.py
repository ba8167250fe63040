"""UUIDv7 ids (wallet._ids)."""

from __future__ import annotations

import itertools
import time
import uuid

import pytest

from wallet._ids import uuid7


def test_uuid7_is_time_ordered_version_seven() -> None:
    first = uuid7()
    assert first.version == 7
    assert first.variant == uuid.RFC_4122
    assert abs((first.int >> 80) - time.time_ns() // 1_000_000) < 5_000


def test_uuid7_is_strictly_increasing_within_a_millisecond() -> None:
    ids = [uuid7() for _ in range(20_000)]
    assert all(earlier < later for earlier, later in itertools.pairwise(ids))
    assert all(made.version == 7 and made.variant == uuid.RFC_4122 for made in ids)
    milliseconds = [made.int >> 80 for made in ids]
    assert len(set(milliseconds)) < len(ids)  # many shared a millisecond, still ordered


def test_uuid7_stays_increasing_when_the_clock_goes_back(monkeypatch: pytest.MonkeyPatch) -> None:
    before = uuid7()
    monkeypatch.setattr(time, "time_ns", lambda: 1_000_000_000_000_000)  # 2001
    after = [uuid7() for _ in range(100)]
    assert before < after[0]
    assert all(earlier < later for earlier, later in itertools.pairwise(after))
