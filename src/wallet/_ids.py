"""Time-ordered UUIDv7 identifiers (RFC 9562), made in the process so any PostgreSQL version works."""

from __future__ import annotations

import os
import time
import uuid


def uuid7() -> uuid.UUID:
    timestamp_ms = time.time_ns() // 1_000_000
    random_bits = int.from_bytes(os.urandom(10), "big")
    value = (timestamp_ms & 0xFFFF_FFFF_FFFF) << 80
    value |= 0x7 << 76  # version
    value |= ((random_bits >> 62) & 0xFFF) << 64  # rand_a, 12 bits
    value |= 0b10 << 62  # variant
    value |= random_bits & 0x3FFF_FFFF_FFFF_FFFF  # rand_b, 62 bits
    result = uuid.UUID(int=value)
    assert result.version == 7
    return result
