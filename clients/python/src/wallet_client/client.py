"""`WalletClient`: the wallet service's HTTP API, one method per operation, synchronous.

Money movements (top-up, bonus, spend, transfer, journal, holds, captures, voids, reversals)
each make one idempotency key (or take the caller's `idempotency_key=`) and send it on every
attempt, so a retry after a lost answer replays instead of moving money twice. Retries, waits and
the deadline are described in `wallet_client.retry`. The async twin is `AsyncWalletClient`.
"""

from __future__ import annotations

import logging
import random
import time
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime
from types import TracebackType
from typing import Any, TypeVar

import httpx

from wallet_client import _calls
from wallet_client._calls import Call, HoldStatus
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
from wallet_client.retry import Attempts, RetryPolicy, parse_retry_after

T = TypeVar("T")
logger = logging.getLogger("wallet_client")

USER_AGENT = "wallet-client-python/0.1.0"
TIMEOUT_SECONDS_DEFAULT = 10.0
POLL_INTERVAL_SECONDS_DEFAULT = 1.0
# The exceptions after which an answer may have been lost, or never sent: worth another attempt.
# (Not httpx.LocalProtocolError, UnsupportedProtocol and the like: the request itself is wrong.)
RETRYABLE_ERRORS: tuple[type[Exception], ...] = (
    httpx.TimeoutException,
    httpx.NetworkError,
    httpx.RemoteProtocolError,
)


def client_headers(api_key: str, headers: Mapping[str, str] | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {api_key}", "User-Agent": USER_AGENT, **(headers or {})}


def retry_after_of(failure: httpx.Response | Exception) -> float | None:
    if isinstance(failure, httpx.Response):
        return parse_retry_after(failure.headers.get("Retry-After"))
    return None


def log_retry(call: Call[Any], attempt: int, failure: httpx.Response | Exception, wait: float) -> None:
    what = f"status {failure.status_code}" if isinstance(failure, httpx.Response) else type(failure).__name__
    logger.info(
        "%s %s: attempt %d failed (%s); retrying in %.3f s with the same idempotency key %s",
        call.method, call.path, attempt, what, wait, call.idempotency_key,
    )  # fmt: skip


class WalletClient:
    """A client of one wallet service, with one API key.

    `timeout_seconds` bounds each attempt; `retry` (a `RetryPolicy`) bounds the attempts of a
    call and the time they may take together. `transport` is handed to httpx (tests, proxies).
    Use it as a context manager, or call `close()`.
    """

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        timeout_seconds: float = TIMEOUT_SECONDS_DEFAULT,
        retry: RetryPolicy | None = None,
        headers: Mapping[str, str] | None = None,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if not timeout_seconds > 0:
            raise ValueError("timeout_seconds must be positive")
        self.timeout_seconds = timeout_seconds
        self.retry = retry or RetryPolicy()
        self._http = httpx.Client(
            base_url=base_url,
            headers=client_headers(api_key, headers),
            timeout=timeout_seconds,
            transport=transport,
            follow_redirects=False,
        )
        self.events = Events(self)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> WalletClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc_value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # --- the retry loop ---------------------------------------------------------------------

    def _now(self) -> float:
        return time.monotonic()

    def _sleep(self, seconds: float) -> None:
        time.sleep(seconds)

    def _random(self) -> float:
        return random.random()

    def _attempt_headers(self, call: Call[Any], attempt: int) -> dict[str, str]:
        """The headers of attempt number `attempt` of `call`: the same on every attempt (above
        all, the same Idempotency-Key)."""
        return call.headers()

    def _send(self, call: Call[Any]) -> httpx.Response:
        """The call's final answer: the first that is not retried. Raises WalletUnavailable when
        the attempts or the deadline run out first."""
        attempts = Attempts(self.retry, self._now(), self._random)
        while True:
            attempt = attempts.begin()
            try:
                response = self._http.request(
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
            self._sleep(wait)

    def _run(self, call: Call[T]) -> T:
        return call.result(self._send(call))

    # --- assets and wallets -------------------------------------------------------------------

    def list_assets(self) -> list[Asset]:
        """`GET /v1/assets`."""
        return self._run(_calls.list_assets())

    def create_asset(self, code: str, name: str) -> Asset:
        """`POST /v1/assets` (admin): the asset, made or as it was (same name). AssetConflict
        when it exists with another name."""
        return self._run(_calls.create_asset(code, name))

    def create_wallet(self, owner_id: str, asset: str) -> Wallet:
        """`POST /v1/wallets`: the owner's wallet of this asset, made or as it was."""
        return self._run(_calls.create_wallet(owner_id, asset))

    def get_wallet(self, wallet_id: str) -> Wallet:
        """`GET /v1/wallets/{id}`; WalletNotFound."""
        return self._run(_calls.get_wallet(wallet_id))

    def list_wallets(self, owner_id: str) -> list[Wallet]:
        """`GET /v1/wallets?owner_id=`: the owner's wallets (one per asset)."""
        return self._run(_calls.list_wallets(owner_id))

    def list_lots(self, wallet_id: str, *, limit: int | None = None) -> list[Lot]:
        """`GET /v1/wallets/{id}/lots`: unexpired credit lots with something left, soonest first."""
        return self._run(_calls.list_lots(wallet_id, limit))

    # --- money movements ----------------------------------------------------------------------

    def topup(
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
        return self._run(call)

    def bonus(
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
        return self._run(call)

    def spend(
        self,
        wallet_id: str,
        amount: int,
        *,
        reference: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> Transaction:
        """`POST /v1/wallets/{id}/spend`; InsufficientFunds when less is available."""
        return self._run(_calls.spend(wallet_id, amount, reference, metadata, idempotency_key))

    def transfer(
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
        return self._run(call)

    def journal(
        self,
        asset: str,
        postings: Sequence[Posting],
        *,
        reference: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        idempotency_key: str | None = None,
    ) -> Transaction:
        """`POST /v1/journal`: many postings as one transaction, all or none."""
        return self._run(_calls.journal(asset, postings, reference, metadata, idempotency_key))

    def batch(self, items: Sequence[BatchItem]) -> list[BatchResult]:
        """`POST /v1/batches`: independent movements, each with its own idempotency key (made
        here when an item has none, and the same on every retry of the batch). One result per
        item, in order; an item's decline is its result's `error`, not an exception."""
        return self._run(_calls.batch(items))

    # --- holds and reversals ----------------------------------------------------------------

    def create_hold(
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
        return self._run(call)

    def capture_hold(
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
        return self._run(_calls.capture_hold(hold_id, amount, reference, metadata, idempotency_key))

    def void_hold(self, hold_id: str, *, idempotency_key: str | None = None) -> Hold:
        """`POST /v1/holds/{id}/void`: end a pending hold without spending."""
        return self._run(_calls.void_hold(hold_id, idempotency_key))

    def get_hold(self, hold_id: str) -> Hold:
        """`GET /v1/holds/{id}`; HoldNotFound."""
        return self._run(_calls.get_hold(hold_id))

    def list_holds(
        self,
        wallet_id: str,
        *,
        status: HoldStatus | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Page[Hold]:
        """`GET /v1/wallets/{id}/holds`: one page, newest first."""
        return self._run(_calls.list_holds(wallet_id, status, limit, cursor))

    def iter_holds(
        self, wallet_id: str, *, status: HoldStatus | None = None, page_size: int | None = None
    ) -> Iterator[Hold]:
        """Every hold of the wallet, newest first, a page at a time."""
        cursor: str | None = None
        while True:
            page = self.list_holds(wallet_id, status=status, limit=page_size, cursor=cursor)
            yield from page.data
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def reverse(
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
        return self._run(_calls.reverse(transaction_id, amount, reference, metadata, idempotency_key))

    # --- reads of the ledger ----------------------------------------------------------------

    def get_transaction(self, transaction_id: str) -> Transaction:
        """`GET /v1/transactions/{id}`; TransactionNotFound."""
        return self._run(_calls.get_transaction(transaction_id))

    def list_transactions(
        self, wallet_id: str, *, limit: int | None = None, cursor: str | None = None
    ) -> Page[Transaction]:
        """`GET /v1/wallets/{id}/transactions`: one page of the wallet's history, newest first."""
        return self._run(_calls.list_transactions(wallet_id, limit, cursor))

    def iter_transactions(self, wallet_id: str, *, page_size: int | None = None) -> Iterator[Transaction]:
        """The wallet's whole history, newest first, a page at a time."""
        cursor: str | None = None
        while True:
            page = self.list_transactions(wallet_id, limit=page_size, cursor=cursor)
            yield from page.data
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def balance_at(self, wallet_id: str, at: datetime) -> BalanceAt:
        """`GET /v1/wallets/{id}/balance?at=`: the balance after every transaction committed at
        or before `at` (timezone-aware, not in the future)."""
        return self._run(_calls.balance_at(wallet_id, at))

    def statement(self, wallet_id: str, start: datetime, end: datetime | None = None) -> Statement:
        """`GET /v1/wallets/{id}/statement?from=&to=`: transactions at or after `start` and before
        `end` (default now), oldest first. StatementTooLarge past 10,000 transactions."""
        return self._run(_calls.statement(wallet_id, start, end))

    def statement_csv(self, wallet_id: str, start: datetime, end: datetime | None = None) -> str:
        """The statement as CSV text (`Accept: text/csv`), with a header row."""
        return self._run(_calls.statement_csv(wallet_id, start, end))

    def verify_ledger(self, *, deep: bool = False) -> Verification:
        """`GET /v1/ledger/verify` (admin): the ledger's invariants."""
        return self._run(_calls.verify_ledger(deep))


class Events:
    """The event feed (`GET /v1/events`, admin scope): `client.events`."""

    def __init__(self, client: WalletClient) -> None:
        self._client = client

    def page(self, after: str | None = None, *, limit: int | None = None) -> EventPage:
        """The events after the cursor `after` (None: from the oldest kept), in commit order."""
        return self._client._run(_calls.list_events(after, limit))

    def follow(
        self,
        after: str | None = None,
        *,
        page_size: int | None = None,
        poll_interval_seconds: float = POLL_INTERVAL_SECONDS_DEFAULT,
    ) -> EventFollower:
        """Every event after `after`, forever: `for event in client.events.follow(after=cursor)`.
        When there is nothing new it asks again every `poll_interval_seconds`. Persist the
        follower's `cursor` to resume from it."""
        return EventFollower(self._client, after, page_size, poll_interval_seconds)


class EventFollower:
    """An endless iterator of events. `cursor` is where to resume without skipping any event
    not yet yielded: the start of the page being yielded, and, once its last event has been
    yielded, the cursor after it. So a consumer that stores `cursor` after handling each event
    never misses one; after a restart it may see again the events of one page before the one it
    stored (at most `page_size`): handle them idempotently (by `event.id`), or follow with
    `page_size=1` for a cursor exact to the event."""

    def __init__(
        self, client: WalletClient, after: str | None, page_size: int | None, poll_interval_seconds: float
    ) -> None:
        if poll_interval_seconds < 0:
            raise ValueError("poll_interval_seconds must not be negative")
        self._client = client
        self._next_page = after
        self._page_size = page_size
        self._poll_interval_seconds = poll_interval_seconds
        self._pending: deque[Event] = deque()
        self.cursor = after

    def __iter__(self) -> EventFollower:
        return self

    def __next__(self) -> Event:
        while not self._pending:
            page = self._client.events.page(self._next_page, limit=self._page_size)
            self._next_page = page.next_cursor
            if page.data:
                self._pending.extend(page.data)
            else:
                self.cursor = page.next_cursor
                self._client._sleep(self._poll_interval_seconds)
        event = self._pending.popleft()
        if not self._pending:
            self.cursor = self._next_page
        return event


__all__ = ["EventFollower", "Events", "WalletClient"]
