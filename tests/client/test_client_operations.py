"""Every method of both clients against the real service (the suite's `wallet serve`): each test
runs once with WalletClient and once with AsyncWalletClient."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from support import balance, new_wallet
from wallet_client import (
    AssetConflict,
    BonusItem,
    InsufficientFunds,
    JournalItem,
    Posting,
    ReversalExceedsOriginal,
    SpendItem,
    TopUpItem,
    TransferItem,
)

FOLLOW_SECONDS_MAX = 15.0


def funded(wallet: Any, amount: int, asset: str = "GOLD") -> str:
    wallet_id: str = wallet.create_wallet(f"client-{uuid.uuid4()}", asset).id
    if amount:
        wallet.topup(wallet_id, amount)
    return wallet_id


def test_assets_are_listed_and_created_once(wallet: Any) -> None:
    assert {"GOLD", "POINTS"} <= {asset.code for asset in wallet.list_assets()}
    code = "C" + uuid.uuid4().hex[:10].upper()
    made = wallet.create_asset(code, "Client Coins")
    assert (made.code, made.name) == (code, "Client Coins")
    assert wallet.create_asset(code, "Client Coins") == made
    assert code in {asset.code for asset in wallet.list_assets()}
    try:
        wallet.create_asset(code, "Another Name")
    except AssetConflict as error:
        assert error.status == 409
    else:
        raise AssertionError("a second name for an asset was accepted")


def test_wallets_are_created_once_per_owner_and_asset_and_found_by_owner(wallet: Any) -> None:
    owner = f"client-{uuid.uuid4()}"
    gold = wallet.create_wallet(owner, "GOLD")
    assert (gold.owner_id, gold.asset, gold.balance, gold.held, gold.available) == (owner, "GOLD", 0, 0, 0)
    assert gold.next_expiry is None and gold.created_at.tzinfo is not None
    assert wallet.create_wallet(owner, "GOLD") == gold
    points = wallet.create_wallet(owner, "POINTS")
    assert {found.id for found in wallet.list_wallets(owner)} == {gold.id, points.id}
    assert wallet.get_wallet(gold.id) == gold


def test_topup_bonus_spend_and_transfer_move_money(wallet: Any, client: httpx.Client) -> None:
    source = wallet.create_wallet(f"client-{uuid.uuid4()}", "GOLD").id
    target = new_wallet(client)
    top = wallet.topup(source, 1000, reference="order-1", metadata={"channel": "store"})
    assert (top.type, top.amount, top.balance_after, top.replayed) == ("topup", 1000, 1000, False)
    assert (top.reference, top.metadata, top.wallet_id, top.asset) == (
        "order-1",
        {"channel": "store"},
        source,
        "GOLD",
    )
    assert sorted((entry.account, entry.direction, entry.amount) for entry in top.entries) == [
        (source, "credit", 1000),
        ("treasury:GOLD", "debit", 1000),
    ]
    bonus = wallet.bonus(source, 20)
    assert (bonus.type, bonus.balance_after) == ("bonus", 1020)
    spend = wallet.spend(source, 30, reference="order-2")
    assert (spend.type, spend.balance_after) == ("spend", 990)
    transfer = wallet.transfer(source, target, 40, reference="gift", metadata={"note": "thanks"})
    assert (transfer.type, transfer.wallet_id, transfer.balance_after) == ("transfer", source, 950)
    assert balance(client, source) == 950 and balance(client, target) == 40
    assert wallet.get_transaction(transfer.id) == transfer
    head = wallet.get_wallet(source).ledger_head
    assert head is not None and head.entries == 4 and len(head.hash) == 64


def test_a_given_key_replays_the_first_answer(wallet: Any, client: httpx.Client) -> None:
    wallet_id = funded(wallet, 100)
    key = f"order-{uuid.uuid4()}"
    first = wallet.spend(wallet_id, 30, idempotency_key=key)
    again = wallet.spend(wallet_id, 30, idempotency_key=key)
    assert not first.replayed and again.replayed
    assert again.id == first.id and again.balance_after == 70
    assert balance(client, wallet_id) == 70


def test_expiring_credits_make_lots(wallet: Any) -> None:
    wallet_id = funded(wallet, 100)
    expires_at = (datetime.now(UTC) + timedelta(days=3)).replace(microsecond=0)
    later = expires_at + timedelta(days=1)
    soon = wallet.topup(wallet_id, 50, expires_at=expires_at)
    late = wallet.bonus(wallet_id, 10, expires_at=later)
    wallet.spend(wallet_id, 20)  # from the soonest-expiring lot first
    lots = wallet.list_lots(wallet_id)
    assert [(lot.transaction_id, lot.amount, lot.remaining, lot.expires_at) for lot in lots] == [
        (soon.id, 50, 30, expires_at),
        (late.id, 10, 10, later),
    ]
    assert [lot.transaction_id for lot in wallet.list_lots(wallet_id, limit=1)] == [soon.id]
    found = wallet.get_wallet(wallet_id)
    assert found.next_expiry is not None
    assert (found.next_expiry.amount, found.next_expiry.expires_at) == (30, expires_at)


def test_a_journal_posts_many_postings_at_once(wallet: Any, client: httpx.Client) -> None:
    players = [funded(wallet, 100) for _ in range(3)]
    winner = players[0]
    postings = [Posting(player, "revenue", 100) for player in players] + [Posting("revenue", winner, 270)]
    match = wallet.journal("GOLD", postings, reference="match-1")
    assert (match.type, match.amount, match.reference) == ("journal", 570, "match-1")
    assert len(match.entries) == 2 * len(postings)
    assert [balance(client, player) for player in players] == [270, 0, 0]


def test_a_batch_answers_each_item(wallet: Any, client: httpx.Client) -> None:
    source, target = funded(wallet, 100), funded(wallet, 0)
    expires_at = datetime.now(UTC) + timedelta(days=1)
    items = [
        TopUpItem(source, 10, reference="b-1"),
        BonusItem(source, 5, expires_at=expires_at),
        SpendItem(source, 10**9),
        TransferItem(source, target, 15),
        JournalItem("GOLD", [Posting(source, target, 1)]),
    ]
    results = wallet.batch(items)
    assert [(result.status, result.replayed) for result in results] == [
        (201, False),
        (201, False),
        (409, False),
        (201, False),
        (201, False),
    ]
    assert isinstance(results[2].error, InsufficientFunds) and results[2].transaction is None
    assert results[3].transaction is not None and results[3].transaction.type == "transfer"
    assert len({result.idempotency_key for result in results}) == len(items)
    assert balance(client, source) == 100 + 10 + 5 - 15 - 1
    # The same items with the keys they were given: every one replays (the decline too).
    keyed = [
        TopUpItem(source, 10, reference="b-1", idempotency_key=results[0].idempotency_key),
        SpendItem(source, 10**9, idempotency_key=results[2].idempotency_key),
    ]
    assert [(result.status, result.replayed) for result in wallet.batch(keyed)] == [(201, True), (409, True)]
    assert balance(client, source) == 99


def test_holds_are_placed_captured_voided_read_and_listed(wallet: Any, client: httpx.Client) -> None:
    wallet_id = funded(wallet, 1000)
    table = wallet.create_hold(
        wallet_id, 300, expires_in_seconds=600, reference="table-1", metadata={"seat": 2}
    )
    assert (table.status, table.amount, table.captured_amount, table.replayed) == ("pending", 300, 0, False)
    assert (table.reference, table.metadata) == ("table-1", {"seat": 2})
    assert table.expires_at - table.created_at == timedelta(seconds=600)
    held = wallet.get_wallet(wallet_id)
    assert (held.balance, held.held, held.available) == (1000, 300, 700)
    assert wallet.get_hold(table.id).status == "pending"

    capture = wallet.capture_hold(table.id, 200, reference="rake")
    assert (capture.type, capture.amount, capture.hold_id, capture.balance_after) == (
        "spend",
        200,
        table.id,
        800,
    )
    captured = wallet.get_hold(table.id)
    assert (captured.status, captured.captured_amount, captured.transaction_id) == (
        "captured",
        200,
        capture.id,
    )

    short = wallet.create_hold(wallet_id, 50)
    void_key = f"void-{uuid.uuid4()}"
    voided = wallet.void_hold(short.id, idempotency_key=void_key)
    assert (voided.status, voided.replayed) == ("voided", False)
    assert wallet.void_hold(short.id, idempotency_key=void_key).replayed
    pending = wallet.create_hold(wallet_id, 5)

    page = wallet.list_holds(wallet_id, limit=2)
    assert [hold.id for hold in page.data] == [pending.id, short.id] and page.next_cursor is not None
    rest = wallet.list_holds(wallet_id, limit=2, cursor=page.next_cursor)
    assert [hold.id for hold in rest.data] == [table.id] and rest.next_cursor is None
    assert [hold.id for hold in wallet.iter_holds(wallet_id, page_size=1)] == [pending.id, short.id, table.id]
    assert [hold.id for hold in wallet.iter_holds(wallet_id, status="pending")] == [pending.id]
    assert [hold.id for hold in wallet.iter_holds(wallet_id, status="captured")] == [table.id]
    assert wallet.get_wallet(wallet_id).available == 800 - 5


def test_reversals_mirror_a_transaction_up_to_its_amount(wallet: Any, client: httpx.Client) -> None:
    wallet_id = funded(wallet, 100)
    purchase = wallet.spend(wallet_id, 60)
    refund = wallet.reverse(purchase.id, 25, reference="refund-1")
    assert (refund.type, refund.reverses, refund.amount, refund.balance_after) == (
        "reversal",
        purchase.id,
        25,
        65,
    )
    rest = wallet.reverse(purchase.id)
    assert (rest.amount, rest.balance_after) == (35, 100)
    try:
        wallet.reverse(purchase.id, 1)
    except ReversalExceedsOriginal as error:
        assert error.status == 409 and error.idempotency_key
    else:
        raise AssertionError("a reversal past the original was accepted")
    assert balance(client, wallet_id) == 100


def test_history_is_read_a_page_at_a_time_newest_first(wallet: Any) -> None:
    wallet_id = funded(wallet, 100)
    made = [wallet.spend(wallet_id, amount).id for amount in (1, 2, 3, 4)]
    page = wallet.list_transactions(wallet_id, limit=2)
    assert [transaction.id for transaction in page.data] == made[::-1][:2]
    assert page.next_cursor is not None
    following = wallet.list_transactions(wallet_id, limit=2, cursor=page.next_cursor)
    assert [transaction.id for transaction in following.data] == made[::-1][2:]
    every = list(wallet.iter_transactions(wallet_id, page_size=2))
    assert [transaction.id for transaction in every][:4] == made[::-1]
    assert [transaction.type for transaction in every] == ["spend"] * 4 + ["topup"]


def end_of_feed(wallet: Any) -> str:
    """A cursor after every event there is now."""
    cursor: str | None = None
    while True:
        page = wallet.events.page(cursor, limit=1000)
        if not page.data:
            assert page.next_cursor is not None
            return str(page.next_cursor)
        cursor = page.next_cursor


def test_the_event_feed_is_followed_from_a_cursor(wallet: Any) -> None:
    cursor = end_of_feed(wallet)
    wallet_id = funded(wallet, 100)
    hold = wallet.create_hold(wallet_id, 10)
    spend = wallet.spend(wallet_id, 5)

    follower = wallet.events.follow(after=cursor, page_size=1, poll_interval_seconds=0.05)
    assert follower.cursor == cursor
    seen: list[tuple[str, str]] = []
    started = time.monotonic()
    for event in follower:
        subject = event.transaction or event.hold
        assert subject is not None
        if getattr(subject, "wallet_id", None) == wallet_id:
            seen.append((event.type, subject.id))
        if (event.type, spend.id) in seen:
            break
        assert time.monotonic() - started < FOLLOW_SECONDS_MAX, seen
    assert seen[1:] == [("hold.created", hold.id), ("transaction.posted", spend.id)]
    assert seen[0][0] == "transaction.posted"  # the top-up

    # The follower's cursor resumes after the last event it yielded.
    after = wallet.events.page(follower.cursor, limit=1000)
    assert spend.id not in {event.data.get("id") for event in after.data}


def test_the_ledger_verifies(wallet: Any) -> None:
    verification = wallet.verify_ledger()
    assert verification.ok, verification.problems
    assert verification.accounts_checked > 0 and verification.transactions_checked > 0
