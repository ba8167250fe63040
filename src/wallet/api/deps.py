"""Dependencies of the routes: the database, the caller's API key, the Idempotency-Key."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Annotated

import asyncpg
from fastapi import Depends, Request

from wallet import idempotency, keys, metrics
from wallet.api.auth import KeyCache
from wallet.api.problems import Problem
from wallet.config import Settings
from wallet.db.errors import reaching
from wallet.types import Connection


def settings_of(request: Request) -> Settings:
    settings = request.app.state.settings
    assert isinstance(settings, Settings)
    return settings


def connection(request: Request) -> AbstractAsyncContextManager[Connection]:
    """A pooled connection, waiting at most the configured acquire timeout for one."""
    return pooled_connection(request.app.state.pool, settings_of(request))


@asynccontextmanager
async def pooled_connection(pool: asyncpg.Pool, settings: Settings) -> AsyncIterator[Connection]:
    timeout_seconds = settings.timeout_ms_pool_acquire / 1000
    started = time.perf_counter()
    try:
        with reaching():
            pooled = await pool.acquire(timeout=timeout_seconds)
    except TimeoutError:
        metrics.POOL_ACQUIRE_TIMEOUTS.inc()
        raise
    metrics.POOL_ACQUIRE_DURATION.observe(time.perf_counter() - started)
    try:
        yield pooled
    finally:
        await pool.release(pooled)


CHALLENGE = {"WWW-Authenticate": 'Bearer realm="wallet"'}


def _bearer_secret(request: Request) -> str:
    header = request.headers.get("authorization")
    scheme, _, secret = (header or "").partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        raise Problem(
            401, "unauthenticated", "Send an API key: Authorization: Bearer <key>.", headers=CHALLENGE
        )
    return secret.strip()


async def authorise(request: Request, scope: keys.Scope) -> keys.ApiKey:
    """The caller's API key, when it is live and has the scope (401, 403 otherwise). From this
    process's key cache when it has the key (api/auth.py), else looked up."""
    secret = _bearer_secret(request)
    cache: KeyCache | None = request.app.state.key_cache
    api_key = cache.cached(secret) if cache is not None else None
    if api_key is None:
        async with connection(request) as database:
            if cache is not None:
                api_key = await cache.authenticate(database, secret)
            else:
                api_key = await keys.authenticate(database, secret)
    if api_key is None:
        raise Problem(401, "unauthenticated", "The API key is unknown or revoked.", headers=CHALLENGE)
    if not api_key.allows(scope):
        raise Problem(403, "forbidden", f"This API key lacks the {scope.value} scope.")
    return api_key


def require(scope: keys.Scope) -> Callable[[Request], Awaitable[keys.ApiKey]]:
    async def authorised_key(request: Request) -> keys.ApiKey:
        return await authorise(request, scope)

    return authorised_key


def idempotency_key_of(request: Request) -> str:
    """The request's Idempotency-Key (400 when missing or malformed)."""
    try:
        return idempotency.check_key(request.headers.get("idempotency-key"))
    except idempotency.KeyMissing as error:
        raise Problem(400, "idempotency_key_missing", str(error)) from None
    except idempotency.KeyInvalid as error:
        raise Problem(400, "idempotency_key_invalid", str(error)) from None


async def idempotency_key(request: Request) -> str:
    return idempotency_key_of(request)


async def wallet_id_from_path(wallet_id: str) -> uuid.UUID:
    return wallet_id_of(wallet_id)


def wallet_id_of(wallet_id: str) -> uuid.UUID:
    """A wallet id in the path; anything that is not a UUID names no wallet (404)."""
    try:
        return uuid.UUID(wallet_id)
    except ValueError:
        raise Problem(404, "wallet_not_found", f"Wallet {wallet_id[:64]!r} does not exist.") from None


Reader = Annotated[keys.ApiKey, Depends(require(keys.Scope.READ))]
Writer = Annotated[keys.ApiKey, Depends(require(keys.Scope.WRITE))]
Admin = Annotated[keys.ApiKey, Depends(require(keys.Scope.ADMIN))]
IdempotencyKey = Annotated[str, Depends(idempotency_key)]
WalletId = Annotated[uuid.UUID, Depends(wallet_id_from_path)]
