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
# The advisory lock that lets one purge batch run at a time across processes (serving workers and
# `wallet idempotency purge`): "wallet" in ASCII, then 1.
PURGE_LOCK_KEY = 0x77616C6C6574_0001
_PRINTABLE_ASCII = re.compile(r"[\x20-\x7e]{1,255}")


class KeyMissing(ValueError):
    pass


class KeyInvalid(ValueError):
    pass


# Surrounding whitespace is not part of an HTTP field value (RFC 9110, 5.5): proxies and client
# libraries drop it, so `key`, `key ` and `key\t` must name one key.
KEY_WHITESPACE = " \t"


def check_key(value: str | None) -> str:
    """The key without surrounding spaces and tabs, when that is 1-255 printable ASCII characters."""
    if value is None:
        raise KeyMissing("Idempotency-Key header is required for this request.")
    key = value.strip(KEY_WHITESPACE)
    if _PRINTABLE_ASCII.fullmatch(key) is None:
        raise KeyInvalid("Idempotency-Key must be 1-255 printable ASCII characters.")
    assert len(key) <= KEY_LENGTH_MAX and key == key.strip(KEY_WHITESPACE)
    return key


def canonical_json(value: Any) -> bytes:
    """Sorted keys, no insignificant whitespace, UTF-8: equal JSON values give equal bytes."""
    text = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return text.encode()


def fingerprint(method: str, path: str, canonical_body: bytes) -> bytes:
    """SHA-256 of the method, the path and the canonical JSON body (`canonical_json`): what 'the
    same request' means."""
    assert method.isupper() and path.startswith("/"), (method, path)
    digest = hashlib.sha256()
    digest.update(method.encode() + b"\n" + path.encode() + b"\n")
    digest.update(canonical_body)
    result = digest.digest()
    assert len(result) == 32
    return result


async def purge_batch(
    connection: Connection, ttl_hours: int, batch_size: int, *, wait_for_lock: bool
) -> int | None:
    """Delete up to `batch_size` of the oldest keys older than the retention, in one transaction
    that holds the purge lock (an advisory lock of that transaction only, so nothing stays on the
    connection). With `wait_for_lock` false, None when another process's batch holds it."""
    assert ttl_hours >= 24 and 1 <= batch_size <= 100_000
    async with connection.transaction(isolation="read_committed"):
        if wait_for_lock:
            await connection.execute("SELECT pg_advisory_xact_lock($1)", PURGE_LOCK_KEY)
        elif not await connection.fetchval("SELECT pg_try_advisory_xact_lock($1)", PURGE_LOCK_KEY):
            return None
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
    assert isinstance(deleted, int) and 0 <= deleted <= batch_size
    return deleted


async def purge(connection: Connection, ttl_hours: int, batch_size: int = PURGE_BATCH_SIZE) -> int:
    """Delete every key older than the retention, batch by batch, waiting for the purge lock when
    a serving process is purging too. Returns how many were deleted."""
    deleted_total = 0
    while True:
        deleted = await purge_batch(connection, ttl_hours, batch_size, wait_for_lock=True)
        assert deleted is not None
        deleted_total += deleted
        if deleted < batch_size:
            return deleted_total
