"""API keys: created once and shown once, stored only as SHA-256 hashes, revoked by name."""

from __future__ import annotations

import enum
import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from wallet._ids import uuid7
from wallet.types import Connection

KEY_PREFIX = "wk_"
NAME_LENGTH_MAX = 64
# A presented secret longer than this is refused without a database lookup (keys made here are
# 46 characters: the prefix and 43 of URL-safe base64).
SECRET_LENGTH_MAX = 128
# Names starting with this belong to the demo UI's keys: `wallet serve` on the embedded
# database revokes them all at each start and makes a new one. `create` refuses them.
DEMO_KEY_NAME_PREFIX = "demo-ui-"


class Scope(enum.StrEnum):
    READ = "wallets:read"
    WRITE = "wallets:write"
    ADMIN = "admin"


class KeyNameTaken(ValueError):
    pass


class KeyNameReserved(ValueError):
    pass


class KeyNotFound(LookupError):
    pass


@dataclass(frozen=True, slots=True)
class ApiKey:
    id: uuid.UUID
    name: str
    scopes: frozenset[Scope]
    created_at: datetime
    revoked_at: datetime | None

    def allows(self, scope: Scope) -> bool:
        return self.revoked_at is None and (scope in self.scopes or Scope.ADMIN in self.scopes)


def hash_key(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("utf-8", "surrogateescape")).digest()


def _api_key(row: asyncpg.Record) -> ApiKey:
    return ApiKey(
        id=row["id"],
        name=row["name"],
        scopes=frozenset(Scope(scope) for scope in row["scopes"]),
        created_at=row["created_at"],
        revoked_at=row["revoked_at"],
    )


async def create(connection: Connection, name: str, scopes: set[Scope]) -> tuple[ApiKey, str]:
    """A new key; the secret is returned here once and never stored. Names of the demo UI's keys
    are reserved: the next embedded start would revoke such a key."""
    if name.startswith(DEMO_KEY_NAME_PREFIX):
        raise KeyNameReserved(f"names starting with {DEMO_KEY_NAME_PREFIX!r} are reserved for the demo UI")
    return await _insert(connection, name, scopes)


async def _insert(connection: Connection, name: str, scopes: set[Scope]) -> tuple[ApiKey, str]:
    assert scopes and 1 <= len(name) <= NAME_LENGTH_MAX
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    assert len(secret) <= SECRET_LENGTH_MAX
    try:
        row = await connection.fetchrow(
            """
            INSERT INTO api_key (id, name, key_hash, scopes) VALUES ($1, $2, $3, $4)
            RETURNING id, name, scopes, created_at, revoked_at
            """,
            uuid7(),
            name,
            hash_key(secret),
            sorted(scope.value for scope in scopes),
        )
    except asyncpg.UniqueViolationError:
        raise KeyNameTaken(f"an API key named {name!r} exists already") from None
    assert row is not None
    return _api_key(row), secret


async def authenticate(connection: Connection, secret: str) -> ApiKey | None:
    """The live key whose hash matches, else None. The lookup is by hash, so the secret itself is
    never compared; the stored hash is compared again in constant time."""
    if not secret.startswith(KEY_PREFIX) or len(secret) > SECRET_LENGTH_MAX:
        return None
    key_hash = hash_key(secret)
    row = await connection.fetchrow(
        """
        SELECT id, name, scopes, created_at, revoked_at, key_hash FROM api_key
        WHERE key_hash = $1 AND revoked_at IS NULL
        """,
        key_hash,
    )
    if row is None or not hmac.compare_digest(row["key_hash"], key_hash):
        return None
    return _api_key(row)


async def any_exist(connection: Connection) -> bool:
    exists = await connection.fetchval("SELECT EXISTS (SELECT FROM api_key)")
    assert isinstance(exists, bool)
    return exists


async def list_keys(connection: Connection) -> list[ApiKey]:
    rows = await connection.fetch(
        "SELECT id, name, scopes, created_at, revoked_at FROM api_key ORDER BY created_at"
    )
    return [_api_key(row) for row in rows]


async def revoke(connection: Connection, name: str) -> ApiKey:
    row = await connection.fetchrow(
        """
        UPDATE api_key SET revoked_at = coalesce(revoked_at, now()) WHERE name = $1
        RETURNING id, name, scopes, created_at, revoked_at
        """,
        name,
    )
    if row is None:
        raise KeyNotFound(f"no API key named {name!r}")
    return _api_key(row)


async def renew_demo_key(connection: Connection, *, create_new: bool) -> str | None:
    """Revoke every live demo UI key; then, when `create_new`, make a fresh admin key named
    `demo-ui-<random>` and return its secret."""
    async with connection.transaction(isolation="read_committed"):
        await connection.execute(
            """
            UPDATE api_key SET revoked_at = now()
            WHERE starts_with(name, $1) AND revoked_at IS NULL
            """,
            DEMO_KEY_NAME_PREFIX,
        )
        if not create_new:
            return None
        api_key, secret = await _insert(
            connection, DEMO_KEY_NAME_PREFIX + secrets.token_hex(6), {Scope.ADMIN}
        )
    assert api_key.name.startswith(DEMO_KEY_NAME_PREFIX)
    return secret
