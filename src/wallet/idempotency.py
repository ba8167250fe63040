"""Idempotency keys: their form, the request fingerprint, and purging old keys.

Claiming a key and replaying its stored response happen inside the ledger_post SQL function, in
the same database transaction as the money movement (see docs/ledger.md).
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from wallet.types import Connection

KEY_LENGTH_MAX = 255
PURGE_BATCH_SIZE = 1000
_PRINTABLE_ASCII = re.compile(r"[\x20-\x7e]{1,255}")


class KeyMissing(ValueError):
    pass


class KeyInvalid(ValueError):
    pass


def check_key(value: str | None) -> str:
    """The key as sent, when it is 1-255 printable ASCII characters."""
    if value is None:
        raise KeyMissing("Idempotency-Key header is required for this request.")
    if _PRINTABLE_ASCII.fullmatch(value) is None:
        raise KeyInvalid("Idempotency-Key must be 1-255 printable ASCII characters.")
    return value


def canonical_json(value: Any) -> bytes:
    """Sorted keys, no insignificant whitespace, UTF-8: equal JSON values give equal bytes."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return text.encode()


def fingerprint(method: str, path: str, body: Any) -> bytes:
    """SHA-256 of the method, the path and the canonical JSON body: what 'the same request' means."""
    assert method.isupper() and path.startswith("/"), (method, path)
    digest = hashlib.sha256()
    digest.update(method.encode() + b"\n" + path.encode() + b"\n")
    digest.update(canonical_json(body))
    result = digest.digest()
    assert len(result) == 32
    return result


async def purge(connection: Connection, ttl_hours: int, batch_size: int = PURGE_BATCH_SIZE) -> int:
    """Delete keys older than the retention, in small batches that lock few rows at a time.
    Returns how many were deleted."""
    assert ttl_hours >= 24 and 1 <= batch_size <= 100_000
    deleted_total = 0
    while True:
        deleted = await connection.fetchval(
            """
            WITH old AS (
                SELECT api_key_id, key FROM idempotency_key
                WHERE created_at < now() - make_interval(hours => $1)
                ORDER BY created_at
                LIMIT $2
                FOR UPDATE SKIP LOCKED
            ), gone AS (
                DELETE FROM idempotency_key i USING old
                WHERE i.api_key_id = old.api_key_id AND i.key = old.key
                RETURNING 1
            )
            SELECT count(*) FROM gone
            """,
            ttl_hours,
            batch_size,
        )
        assert isinstance(deleted, int)
        deleted_total += deleted
        if deleted < batch_size:
            return deleted_total
