"""When a call is tried again, and how long it waits.

Every call of this client may be retried safely: reads change nothing, creating an asset or a
wallet that exists returns it, and every money movement (and every batch item) carries one
idempotency key for all its attempts. So a call is retried whenever its answer may have been
lost: a connection error, a timeout, or a 503 (and a 502 or 504, which a proxy in front of the
service answers when the service did not). It is never retried on any other answer: a 4xx will be
the same next time, and a 500 is a bug.

Between attempts the wait is "full jitter" (a uniform random time between 0 and an exponentially
growing cap, so that many clients that failed together do not come back together), or the
service's `Retry-After` when it sends one. All attempts of a call fit in its deadline.
"""

from __future__ import annotations

import email.utils
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

RETRY_STATUSES = frozenset({502, 503, 504})


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How hard one call tries.

    - `deadline_seconds`: all attempts of a call, and the waits between them, fit in this; each
      attempt's timeout is cut to what is left of it.
    - `attempts_max`: at most this many requests per call (1: never retry).
    - `backoff_seconds_initial`, `backoff_seconds_max`: the cap of the random wait before retry
      n is `initial * 2**(n-1)`, at most `max`.
    - `retry_after_seconds_max`: a `Retry-After` longer than this is cut to it.
    - `retry_statuses`: the answers that are retried.
    """

    deadline_seconds: float = 30.0
    attempts_max: int = 10
    backoff_seconds_initial: float = 0.1
    backoff_seconds_max: float = 5.0
    retry_after_seconds_max: float = 30.0
    retry_statuses: frozenset[int] = field(default=RETRY_STATUSES)

    def __post_init__(self) -> None:
        if not self.deadline_seconds > 0:
            raise ValueError("deadline_seconds must be positive")
        if self.attempts_max < 1:
            raise ValueError("attempts_max must be at least 1")
        if not 0 < self.backoff_seconds_initial <= self.backoff_seconds_max:
            raise ValueError("need 0 < backoff_seconds_initial <= backoff_seconds_max")
        if self.retry_after_seconds_max < 0:
            raise ValueError("retry_after_seconds_max must not be negative")
        if any(not 500 <= status <= 599 for status in self.retry_statuses) or 500 in self.retry_statuses:
            raise ValueError("only 5xx statuses other than 500 can be retried")

    def backoff_seconds(self, retry: int, fraction: float) -> float:
        """The wait before retry number `retry` (1 for the second attempt) for a random
        `fraction` in [0, 1): full jitter under a capped exponential."""
        assert retry >= 1, retry
        assert 0.0 <= fraction <= 1.0, fraction
        exponent = min(retry - 1, 64)
        cap = min(self.backoff_seconds_max, self.backoff_seconds_initial * 2.0**exponent)
        return fraction * cap


NEVER_RETRY = RetryPolicy(attempts_max=1)


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds from a `Retry-After` header: delta-seconds or an HTTP date (RFC 9110); None when
    it is absent or unreadable. A date in the past is 0."""
    if value is None:
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        return seconds if math.isfinite(seconds) and seconds >= 0 else None
    try:
        moment = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    now = now or datetime.now(UTC)
    return max(0.0, (moment - now).total_seconds())


class Attempts:
    """The attempts of one call: counts them and decides, after a failed one, how long to wait
    before the next or that there will be none (no I/O: the clients sleep and send)."""

    def __init__(self, policy: RetryPolicy, started: float, random: Callable[[], float]) -> None:
        self.policy = policy
        self.started = started
        self.random = random
        self.count = 0
        self.deadline = started + policy.deadline_seconds

    def begin(self) -> int:
        """Start an attempt; its number (1 for the first)."""
        self.count += 1
        assert self.count <= self.policy.attempts_max, self.count
        return self.count

    def timeout_seconds(self, now: float, timeout_seconds: float) -> float:
        """The attempt's timeout: the client's, cut to what is left of the deadline."""
        return max(0.001, min(timeout_seconds, self.deadline - now))

    def wait_seconds(self, now: float, retry_after_seconds: float | None) -> float | None:
        """After a failed attempt: seconds to wait before the next, or None when there is no next
        (attempts spent, or the wait would end at or past the deadline)."""
        if self.count >= self.policy.attempts_max:
            return None
        if retry_after_seconds is not None:
            wait = min(retry_after_seconds, self.policy.retry_after_seconds_max)
        else:
            wait = self.policy.backoff_seconds(self.count, self.random())
        if now + wait >= self.deadline:
            return None
        return wait
