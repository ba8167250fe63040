"""`AsyncWalletClient`: the asyncio twin of `WalletClient` (wallet_client.client), method for
method: the same calls (wallet_client._calls), the same idempotency keys and retries, awaited.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import deque
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, TypeVar

import httpx

from wallet_client import _calls
from wallet_client._calls import Call, HoldStatus
from wallet_client.client import (
    POLL_INTERVAL_SECONDS_DEFAULT,
    RETRYABLE_ERRORS,
    TIMEOUT_SECONDS_DEFAULT,
    client_headers,
    log_retry,
    retry_after_of,
)
from wallet_client.errors import unavailable_error
from wallet_client.inputs import BatchItem, Posting
from wallet_client.models import (
    Asset,
    BalanceAt,
    BatchResult,
    Event,
    EventPage,
    Hold,
    Lot,
    Page,
    Statement,
    Transaction,
    Verification,
    Wallet,
)
from wallet_client.retry import Attempts, RetryPolicy

T = TypeVar("T")


class AsyncWalletClient:
    """The asyncio twin of `WalletClient`: the same methods, awaited; the same retries.

    `timeout_seconds` bounds each attempt; `retry` (a `RetryPolicy`) bounds the attempts of a
    call and the time they may take together. `transport` is handed to httpx (tests, proxies).
    Use it as `async with`, or await `close()`. Share one client between the tasks of a loop.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout_seconds: float = TIMEOUT_SECONDS_DEFAULT,
        retry: RetryPolicy | None = None,
        headers: Mapping[str, str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if not timeout_seconds > 0:
            raise ValueError("timeout_seconds must be positive")
        self.timeout_seconds = timeout_seconds
        self.retry = retry or RetryPolicy()
        self._http = httpx.AsyncClient(
            base_url=base_url,
            headers=client_headers(api_key, headers),
            timeout=timeout_seconds,
            transport=transport,
            follow_redirects=False,
        )
        self.events = AsyncEvents(self)

    async def close(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncWalletClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    # --- the retry loop ---------------------------------------------------------------------

    def _now(self) -> float:
        return time.monotonic()

    async def _sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    def _random(self) -> float:
        return random.random()

    def _attempt_headers(self, call: Call[Any], attempt: int) -> dict[str, str]:
        """The headers of attempt number `attempt` of `call`: the same on every attempt (above
        all, the same Idempotency-Key)."""
        return call.headers()

    async def _send(self, call: Call[Any]) -> httpx.Response:
        """The call's final answer: the first that is not retried. Raises WalletUnavailable when
        the attempts or the deadline run out first."""
        attempts = Attempts(self.retry, self._now(), self._random)
        while True:
            attempt = attempts.begin()
            try:
                response = await self._http.request(
                    call.method,
                    call.path,
                    params=call.params,
                    content=call.body,
                    headers=self._attempt_headers(call, attempt),
                    timeout=attempts.timeout_seconds(self._now(), self.timeout_seconds),
                )
            except RETRYABLE_ERRORS as error:
                failure: httpx.Response | Exception = error
            else:
                if response.status_code not in self.retry.retry_statuses:
                    return response
                failure = response
            wait = attempts.wait_seconds(self._now(), retry_after_of(failure))
            if wait is None:
                cause = failure if isinstance(failure, Exception) else None
                raise unavailable_error(failure, call.idempotency_key, attempt) from cause
            log_retry(call, attempt, failure, wait)
            await self._sleep(wait)

    async def _run(self, call: Call[T]) -> T:
        return call.result(await self._send(call))

    # --- assets and wallets -------------------------------------------------------------------

    async def list_assets(self) -> list[Asset]:
        """`GET /v1/assets`."""
        return await self._run(_calls.list_assets())

    async def create_asset(self, code: str, name: str) -> Asset:
        """`POST /v1/assets` (admin): the asset, made or as it was (same name). AssetConflict
        when it exists with another name."""
        return await self._run(_calls.create_asset(code, name))

    async def create_wallet(self, owner_id: str, asset: str) -> Wallet:
        """`POST /v1/wallets`: the owner's wallet of this asset, made or as it was."""
        return await self._run(_calls.create_wallet(owner_id, asset))

    async def get_wallet(self, wallet_id: str) -> Wallet:
        """`GET /v1/wallets/{id}`; WalletNotFound."""
        return await self._run(_calls.get_wallet(wallet_id))

    async def list_wallets(self, owner_id: str) -> list[Wallet]:
        """`GET /v1/wallets?owner_id=`: the owner's wallets (one per asset)."""
        return await self._run(_calls.list_wallets(owner_id))

    async def list_lots(self, wallet_id: str, *, limit: int | None = None) -> list[Lot]:
        """`GET /v1/wallets/{id}/lots`: unexpired credit lots with something left, soonest first."""
        return await self._run(_calls.list_lots(wallet_id, limit))

    # --- money movements ----------------------------------------------------------------------

    async def topup(
        self,
        wallet_id: str,
        amount: int,
        *,
        reference: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        expires_at: datetime | None = None,
        idempotency_key: str | None = None,
    ) -> Transaction:
        """`POST /v1/wallets/{id}/topup`: credit the wallet from the asset's treasury; with
        `expires_at` (timezone-aware) the credit expires then."""
        call = _calls.credit("topup", wallet_id, amount, reference, metadata, expires_at, idempotency_key)
        return await self._run(call)

    async def bonus(
        self,
        wallet_id: str,
        amount: int,
        *,
        reference: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        expires_at: datetime | None = None,
        idempotency_key: str | None = None,
    ) -> Transaction:
        """`POST /v1/wallets/{id}/bonus`: credit the wallet from the asset's bonus account."""
        call = _calls.credit("bonus", wallet_id, amount, reference, metadata, expires_at, idempotency_key)
        return await self._run(call)

    async def spend(
        self,
        wallet_id: str,
        amount: int,
        *,
        reference: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> Transaction:
        """`POST /v1/wallets/{id}/spend`; InsufficientFunds when less is available."""
        return await self._run(_calls.spend(wallet_id, amount, reference, metadata, idempotency_key))

    async def transfer(
        self,
        from_wallet_id: str,
        to_wallet_id: str,
        amount: int,
        *,
        reference: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> Transaction:
        """`POST /v1/transfers`; InsufficientFunds, AssetMismatch, SameWallet."""
        call = _calls.transfer(from_wallet_id, to_wallet_id, amount, reference, metadata, idempotency_key)
        return await self._run(call)

    async def journal(
        self,
        asset: str,
        postings: Sequence[Posting],
        *,
        reference: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> Transaction:
        """`POST /v1/journal`: many postings as one transaction, all or none."""
        return await self._run(_calls.journal(asset, postings, reference, metadata, idempotency_key))

    async def batch(self, items: Sequence[BatchItem]) -> list[BatchResult]:
        """`POST /v1/batches`: independent movements, each with its own idempotency key (made
        here when an item has none, and the same on every retry of the batch). One result per
        item, in order; an item's decline is its result's `error`, not an exception."""
        return await self._run(_calls.batch(items))

    # --- holds and reversals ----------------------------------------------------------------

    async def create_hold(
        self,
        wallet_id: str,
        amount: int,
        *,
        expires_in_seconds: int | None = None,
        reference: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> Hold:
        """`POST /v1/wallets/{id}/holds`: reserve `amount` (the service's default expiry is 900 s)."""
        call = _calls.create_hold(wallet_id, amount, expires_in_seconds, reference, metadata, idempotency_key)
        return await self._run(call)

    async def capture_hold(
        self,
        hold_id: str,
        amount: int | None = None,
        *,
        reference: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> Transaction:
        """`POST /v1/holds/{id}/capture`: spend `amount` of the hold (default all of it); the rest
        is released. HoldNotPending, HoldNotFound, CaptureExceedsHold."""
        return await self._run(_calls.capture_hold(hold_id, amount, reference, metadata, idempotency_key))

    async def void_hold(self, hold_id: str, *, idempotency_key: str | None = None) -> Hold:
        """`POST /v1/holds/{id}/void`: end a pending hold without spending."""
        return await self._run(_calls.void_hold(hold_id, idempotency_key))

    async def get_hold(self, hold_id: str) -> Hold:
        """`GET /v1/holds/{id}`; HoldNotFound."""
        return await self._run(_calls.get_hold(hold_id))

    async def list_holds(
        self,
        wallet_id: str,
        *,
        status: HoldStatus | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Page[Hold]:
        """`GET /v1/wallets/{id}/holds`: one page, newest first."""
        return await self._run(_calls.list_holds(wallet_id, status, limit, cursor))

    async def iter_holds(
        self, wallet_id: str, *, status: HoldStatus | None = None, page_size: int | None = None
    ) -> AsyncIterator[Hold]:
        """Every hold of the wallet, newest first, a page at a time."""
        cursor: str | None = None
        while True:
            page = await self.list_holds(wallet_id, status=status, limit=page_size, cursor=cursor)
            for item in page.data:
                yield item
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    async def reverse(
        self,
        transaction_id: str,
        amount: int | None = None,
        *,
        reference: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> Transaction:
        """`POST /v1/transactions/{id}/reverse`: mirror the transaction for `amount` (default what
        is left). ReversalExceedsOriginal, NotReversible, InsufficientFunds."""
        return await self._run(_calls.reverse(transaction_id, amount, reference, metadata, idempotency_key))

    # --- reads of the ledger ----------------------------------------------------------------

    async def get_transaction(self, transaction_id: str) -> Transaction:
        """`GET /v1/transactions/{id}`; TransactionNotFound."""
        return await self._run(_calls.get_transaction(transaction_id))

    async def list_transactions(
        self, wallet_id: str, *, limit: int | None = None, cursor: str | None = None
    ) -> Page[Transaction]:
        """`GET /v1/wallets/{id}/transactions`: one page of the wallet's history, newest first."""
        return await self._run(_calls.list_transactions(wallet_id, limit, cursor))

    async def iter_transactions(
        self, wallet_id: str, *, page_size: int | None = None
    ) -> AsyncIterator[Transaction]:
        """The wallet's whole history, newest first, a page at a time."""
        cursor: str | None = None
        while True:
            page = await self.list_transactions(wallet_id, limit=page_size, cursor=cursor)
            for item in page.data:
                yield item
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    async def balance_at(self, wallet_id: str, at: datetime) -> BalanceAt:
        """`GET /v1/wallets/{id}/balance?at=`: the balance after every transaction committed at
        or before `at` (timezone-aware, not in the future)."""
        return await self._run(_calls.balance_at(wallet_id, at))

    async def statement(self, wallet_id: str, start: datetime, end: datetime | None = None) -> Statement:
        """`GET /v1/wallets/{id}/statement?from=&to=`: transactions at or after `start` and before
        `end` (default now), oldest first. StatementTooLarge past 10,000 transactions."""
        return await self._run(_calls.statement(wallet_id, start, end))

    async def statement_csv(self, wallet_id: str, start: datetime, end: datetime | None = None) -> str:
        """The statement as CSV text (`Accept: text/csv`), with a header row."""
        return await self._run(_calls.statement_csv(wallet_id, start, end))

    async def verify_ledger(self, *, deep: bool = False) -> Verification:
        """`GET /v1/ledger/verify` (admin): the ledger's invariants."""
        return await self._run(_calls.verify_ledger(deep))


class AsyncEvents:
    """The event feed (`GET /v1/events`, admin scope): `client.events`."""

    def __init__(self, client: AsyncWalletClient) -> None:
        self._client = client

    async def page(self, after: str | None = None, *, limit: int | None = None) -> EventPage:
        """The events after the cursor `after` (None: from the oldest kept), in commit order."""
        return await self._client._run(_calls.list_events(after, limit))

    def follow(
        self,
        after: str | None = None,
        *,
        page_size: int | None = None,
        poll_interval_seconds: float = POLL_INTERVAL_SECONDS_DEFAULT,
    ) -> AsyncEventFollower:
        """Every event after `after`, forever: `async for event in client.events.follow(after=cursor)`.
        When there is nothing new it asks again every `poll_interval_seconds`. Persist the
        follower's `cursor` to resume from it."""
        return AsyncEventFollower(self._client, after, page_size, poll_interval_seconds)


class AsyncEventFollower:
    """An endless iterator of events. `cursor` is where to resume without skipping any event
    not yet yielded: the start of the page being yielded, and, once its last event has been
    yielded, the cursor after it. So a consumer that stores `cursor` after handling each event
    never misses one; after a restart it may see again the events of one page before the one it
    stored (at most `page_size`): handle them idempotently (by `event.id`), or follow with
    `page_size=1` for a cursor exact to the event."""

    def __init__(
        self,
        client: AsyncWalletClient,
        after: str | None,
        page_size: int | None,
        poll_interval_seconds: float,
    ) -> None:
        if poll_interval_seconds < 0:
            raise ValueError("poll_interval_seconds must not be negative")
        self._client = client
        self._next_page = after
        self._page_size = page_size
        self._poll_interval_seconds = poll_interval_seconds
        self._pending: deque[Event] = deque()
        self.cursor = after

    def __aiter__(self) -> AsyncEventFollower:
        return self

    async def __anext__(self) -> Event:
        while not self._pending:
            page = await self._client.events.page(self._next_page, limit=self._page_size)
            self._next_page = page.next_cursor
            if page.data:
                self._pending.extend(page.data)
            else:
                self.cursor = page.next_cursor
                await self._client._sleep(self._poll_interval_seconds)
        event = self._pending.popleft()
        if not self._pending:
            self.cursor = self._next_page
        return event


__all__ = ["AsyncEventFollower", "AsyncEvents", "AsyncWalletClient"]
