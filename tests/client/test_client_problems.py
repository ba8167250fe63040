"""The real service's problem answers become the client's typed errors, carrying the problem
document; declines of money movements are stored, so a retry with the same key replays them."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from client.conftest import MakeClient
from support import Server, balance, fund_wallet
from wallet_client import (
    AssetMismatch,
    AssetNotFound,
    BalanceLimitExceeded,
    CaptureExceedsHold,
    Conflict,
    Forbidden,
    HoldNotFound,
    HoldNotPending,
    IdempotencyKeyInvalid,
    IdempotencyKeyReused,
    InsufficientFunds,
    NotFound,
    NotReversible,
    ReversalExceedsOriginal,
    RouteNotFound,
    SameWallet,
    TransactionNotFound,
    Unauthorized,
    UnprocessableRequest,
    ValidationError,
    WalletClient,
    WalletError,
    WalletNotFound,
)

BALANCE_MAX = 9 * 10**18


def raised(call: Callable[[], Any], error_class: type[WalletError]) -> WalletError:
    with pytest.raises(error_class) as caught:
        call()
    error = caught.value
    assert type(error) is error_class, type(error)
    assert error.problem["code"] == error.code and error.problem["status"] == error.status
    assert error.title and error.detail and error.problem["type"] == f"urn:wallet:problem:{error.code}"
    return error


def funded(wallet: Any, amount: int, asset: str = "GOLD") -> str:
    wallet_id: str = wallet.create_wallet(f"client-{uuid.uuid4()}", asset).id
    wallet.topup(wallet_id, amount)
    return wallet_id


def test_insufficient_funds_is_stored_and_replayed(wallet: Any, client: httpx.Client) -> None:
    wallet_id = funded(wallet, 10)
    key = f"spend-{uuid.uuid4()}"
    first = raised(lambda: wallet.spend(wallet_id, 11, idempotency_key=key), InsufficientFunds)
    assert (first.status, first.code, first.idempotency_key) == (409, "insufficient_funds", key)
    assert not first.replayed
    assert isinstance(first, Conflict)
    again = raised(lambda: wallet.spend(wallet_id, 11, idempotency_key=key), InsufficientFunds)
    assert again.replayed and again.problem == first.problem
    assert first.request_id and first.request_id != again.request_id
    assert balance(client, wallet_id) == 10


def test_not_found_errors(wallet: Any) -> None:
    nowhere = str(uuid.uuid4())
    assert isinstance(raised(lambda: wallet.get_wallet(nowhere), WalletNotFound), NotFound)
    raised(lambda: wallet.spend(nowhere, 1), WalletNotFound)
    raised(lambda: wallet.get_wallet("not-a-uuid"), WalletNotFound)
    # An id is one path segment, whatever it holds: this one names no route (not /v1/assets).
    assert isinstance(raised(lambda: wallet.get_wallet("x/../../assets"), RouteNotFound), NotFound)
    raised(lambda: wallet.create_wallet("someone", "NOPE"), AssetNotFound)
    raised(lambda: wallet.get_transaction(nowhere), TransactionNotFound)
    raised(lambda: wallet.reverse(nowhere), TransactionNotFound)
    raised(lambda: wallet.get_hold(nowhere), HoldNotFound)
    raised(lambda: wallet.capture_hold(nowhere), HoldNotFound)
    raised(lambda: wallet.void_hold(nowhere), HoldNotFound)


def test_a_base_url_that_is_not_the_service_is_route_not_found(
    make_client: MakeClient, server: Server
) -> None:
    lost = make_client(base_url=f"{server.base_url}/not-the-api")
    raised(lambda: lost.list_assets(), RouteNotFound)


def test_hold_errors(wallet: Any) -> None:
    wallet_id = funded(wallet, 100)
    hold = wallet.create_hold(wallet_id, 50)
    error = raised(lambda: wallet.capture_hold(hold.id, 51), CaptureExceedsHold)
    assert isinstance(error, UnprocessableRequest)
    wallet.void_hold(hold.id)
    error = raised(lambda: wallet.capture_hold(hold.id), HoldNotPending)
    assert "voided" in error.detail
    raised(lambda: wallet.create_hold(wallet_id, 101), InsufficientFunds)


def test_reversal_errors(wallet: Any) -> None:
    wallet_id = funded(wallet, 100)
    purchase = wallet.spend(wallet_id, 40)
    refund = wallet.reverse(purchase.id, 40)
    raised(lambda: wallet.reverse(purchase.id, 1), ReversalExceedsOriginal)
    raised(lambda: wallet.reverse(refund.id), NotReversible)


def test_a_key_used_for_another_request_is_reused(wallet: Any, client: httpx.Client) -> None:
    wallet_id = funded(wallet, 100)
    key = f"spend-{uuid.uuid4()}"
    wallet.spend(wallet_id, 1, idempotency_key=key)
    error = raised(lambda: wallet.spend(wallet_id, 2, idempotency_key=key), IdempotencyKeyReused)
    assert error.status == 422 and error.idempotency_key == key
    assert balance(client, wallet_id) == 99


def test_validation_errors_list_what_is_wrong(wallet: Any) -> None:
    wallet_id = funded(wallet, 100)
    error = raised(lambda: wallet.topup(wallet_id, 0), ValidationError)
    assert [item["loc"] for item in error.errors] == [["body", "amount"]]
    past = datetime.now(UTC) - timedelta(days=1)
    error = raised(lambda: wallet.topup(wallet_id, 1, expires_at=past), ValidationError)
    assert error.errors[0]["loc"] == ["body", "expires_at"]
    raised(lambda: wallet.spend(wallet_id, 10**15 + 1), ValidationError)


def test_idempotency_keys_the_service_refuses(wallet: Any) -> None:
    wallet_id = funded(wallet, 100)
    raised(lambda: wallet.spend(wallet_id, 1, idempotency_key=""), IdempotencyKeyInvalid)
    raised(lambda: wallet.spend(wallet_id, 1, idempotency_key="k" * 256), IdempotencyKeyInvalid)


def test_transfers_between_the_wrong_wallets(wallet: Any) -> None:
    gold = funded(wallet, 100)
    points = funded(wallet, 100, "POINTS")
    raised(lambda: wallet.transfer(gold, points, 1), AssetMismatch)
    raised(lambda: wallet.transfer(gold, gold, 1), SameWallet)


def test_a_credit_past_the_balance_limit(server: Server) -> None:
    """With the sync client only: reaching the limit takes 9,000 top-ups (a few seconds)."""
    with WalletClient(server.base_url, server.admin_key) as wallet:
        wallet_id = wallet.create_wallet(f"client-{uuid.uuid4()}", "GOLD").id
        asyncio.run(fund_wallet(server.database_url, wallet_id, BALANCE_MAX - 10))
        error = raised(lambda: wallet.topup(wallet_id, 11), BalanceLimitExceeded)
        assert error.status == 422
        assert wallet.topup(wallet_id, 10).balance_after == BALANCE_MAX


def test_keys_without_the_scope_and_unknown_keys(
    make_client: MakeClient, read_key: str, write_key: str
) -> None:
    reader, writer = make_client(key=read_key), make_client(key=write_key)
    wallet_id = writer.create_wallet(f"client-{uuid.uuid4()}", "GOLD").id
    assert reader.get_wallet(wallet_id).balance == 0
    error = raised(lambda: reader.topup(wallet_id, 1), Forbidden)
    assert error.status == 403
    raised(lambda: writer.events.page(), Forbidden)
    raised(lambda: writer.create_asset("NOPE", "Nope"), Forbidden)
    error = raised(lambda: make_client(key="wk_unknown").list_assets(), Unauthorized)
    assert error.status == 401 and error.code == "unauthenticated"
