"""Time-ordered UUIDv7 identifiers (RFC 9562), made in the process so any PostgreSQL version works.

Ids made by one process are strictly increasing, also within one millisecond (RFC 9562 section
6.2, method 3: the 74 random bits of an id made in the same millisecond as the one before, or
when the clock went back, are that id's plus a random step; if they would overflow, the
millisecond field moves on by one). Ids of different processes are ordered by their
milliseconds only.
"""

from __future__ import annotations

import os
import threading
import time
import uuid

_RANDOM_BITS = 74  # rand_a (12 bits) and rand_b (62 bits) together
_RANDOM_MAX = (1 << _RANDOM_BITS) - 1
_STEP_BITS = 32  # a same-millisecond id's random bits move on by 1 .. 2**32

_lock = threading.Lock()
_last_ms = 0
_last_random = 0


def uuid7() -> uuid.UUID:
    global _last_ms, _last_random
    entropy = int.from_bytes(os.urandom(10), "big")
    with _lock:
        timestamp_ms = time.time_ns() // 1_000_000
        if timestamp_ms > _last_ms:
            random_bits = entropy & _RANDOM_MAX
        else:
            timestamp_ms = _last_ms
            random_bits = _last_random + 1 + (entropy >> (80 - _STEP_BITS))
            if random_bits > _RANDOM_MAX:
                timestamp_ms += 1
                random_bits = entropy & (_RANDOM_MAX >> 1)
        _last_ms, _last_random = timestamp_ms, random_bits
    value = (timestamp_ms & 0xFFFF_FFFF_FFFF) << 80
    value |= 0x7 << 76  # version
    value |= (random_bits >> 62) << 64  # rand_a, 12 bits
    value |= 0b10 << 62  # variant
    value |= random_bits & 0x3FFF_FFFF_FFFF_FFFF  # rand_b, 62 bits
    result = uuid.UUID(int=value)
    assert result.version == 7
    return result
