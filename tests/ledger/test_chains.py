"""The hash chains make tampering visible: each edit here is made by hand in SQL behind the
service's back, keeping every invariant of the plain verify true where it can, and the deep
verify names the account whose chain it breaks."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable

import asyncpg
import pytest

from wallet import keys, seed
from wallet.ledger import accounts, posting, verify

Tamper = Callable[[asyncpg.Connection, uuid.UUID], Awaitable[None]]


async def _ledger(connection: asyncpg.Connection) -> uuid.UUID:
    """A seeded ledger with a wallet that had three top-ups of 10 and a spend of 5."""
    await seed.seed(connection)
    api_key, _ = await keys.create(connection, f"chains-{uuid.uuid4().hex[:8]}", {keys.Scope.WRITE})
    wallet = (await accounts.create_wallet(connection, f"chains-{uuid.uuid4()}", "GOLD"))[0].id
    for movement in (
        posting.topup(wallet, 10, "first", None),
        posting.topup(wallet, 10, "second", None),
        posting.topup(wallet, 10, "third", None),
        posting.spend(wallet, 5, "last", None),
    ):
        request = posting.Request(api_key.id, f"chains-{uuid.uuid4()}", bytes(32), movement)
        outcome = (await posting.post(connection, [request], wait_for_locks=True))[0]
        assert outcome.result is posting.Result.POSTED
    return wallet


async def _entries(connection: asyncpg.Connection, wallet: uuid.UUID) -> list[asyncpg.Record]:
    return await connection.fetch(
        "SELECT * FROM entry WHERE account_id = $1 ORDER BY account_sequence", wallet
    )


async def change_an_amount_and_the_balance_with_it(connection: asyncpg.Connection, wallet: uuid.UUID) -> None:
    """The spend becomes a spend of 1: its two entries, the transaction, the wallet's balance and
    the revenue slot's balance, all made to agree."""
    spend = (await _entries(connection, wallet))[-1]
    await connection.execute(
        """
        UPDATE entry SET amount = 1, balance_after = CASE WHEN balance_after IS NULL THEN NULL ELSE 29 END
        WHERE transaction_id = $1;
        """,
        spend["transaction_id"],
    )
    await connection.execute("UPDATE transaction SET amount = 1 WHERE id = $1", spend["transaction_id"])
    await connection.execute("UPDATE account SET balance = 29 WHERE id = $1", wallet)
    await connection.execute(
        """
        UPDATE account_slot s SET balance = s.balance - 4
        FROM entry e WHERE e.transaction_id = $1 AND e.slot IS NOT NULL
          AND s.account_id = e.account_id AND s.slot = e.slot
        """,
        spend["transaction_id"],
    )


async def delete_a_whole_transaction(connection: asyncpg.Connection, wallet: uuid.UUID) -> None:
    """The second top-up goes, with its entries; the wallet's later entries are renumbered and
    their balances lowered, the treasury slot's balance raised: every count and sum agrees."""
    second = (await _entries(connection, wallet))[1]
    removed = await connection.fetch(
        "DELETE FROM entry WHERE transaction_id = $1 RETURNING *", second["transaction_id"]
    )
    await connection.execute("DELETE FROM transaction WHERE id = $1", second["transaction_id"])
    await connection.execute("DELETE FROM event WHERE subject_id = $1", second["transaction_id"])
    await connection.execute(
        "DELETE FROM idempotency_key WHERE transaction_id = $1", second["transaction_id"]
    )
    await connection.execute(
        """
        UPDATE entry SET account_sequence = account_sequence - 1, balance_after = balance_after - 10
        WHERE account_id = $1 AND account_sequence > 2
        """,
        wallet,
    )
    await connection.execute(
        "UPDATE account SET balance = balance - 10, entry_count = entry_count - 1 WHERE id = $1", wallet
    )
    system = next(entry for entry in removed if entry["slot"] is not None)
    await connection.execute(
        """
        UPDATE entry SET account_sequence = account_sequence - 1
        WHERE account_id = $1 AND slot = $2 AND account_sequence > $3
        """,
        system["account_id"],
        system["slot"],
        system["account_sequence"],
    )
    await connection.execute(
        """
        UPDATE account_slot SET balance = balance + 10, entry_count = entry_count - 1
        WHERE account_id = $1 AND slot = $2
        """,
        system["account_id"],
        system["slot"],
    )


async def insert_a_balanced_fake_transaction(connection: asyncpg.Connection, wallet: uuid.UUID) -> None:
    """A top-up of 1000 that never was: a transaction, its two entries (with made-up hashes), its
    event, the balances and counts that go with it, and the wallet's head moved to it."""
    last = (await _entries(connection, wallet))[-1]
    treasury_slot = await connection.fetchrow(
        """
        SELECT s.account_id, s.slot, s.entry_count FROM account_slot s JOIN account a ON a.id = s.account_id
        WHERE a.kind = 'treasury' AND a.asset = 'GOLD' ORDER BY s.slot LIMIT 1
        """
    )
    assert treasury_slot is not None

    fake = uuid.uuid4()
    api_key_id = await connection.fetchval("SELECT id FROM api_key LIMIT 1")
    await connection.execute(
        """
        INSERT INTO transaction (id, type, asset, amount, wallet_id, api_key_id, created_at)
        VALUES ($1, 'topup', 'GOLD', 1000, $2, $3, now())
        """,
        fake,
        wallet,
        api_key_id,
    )
    await connection.execute(
        """
        INSERT INTO entry (transaction_id, entry_index, account_id, direction, amount, balance_after, slot,
            account_sequence, created_at, hash)
        VALUES ($1, 0, $2, 'debit', 1000, NULL, $3, $4, now(), sha256('fake-1'::bytea)),
               ($1, 1, $5, 'credit', 1000, $6, NULL, $7, now(), sha256('fake-2'::bytea))
        """,
        fake,
        treasury_slot["account_id"],
        treasury_slot["slot"],
        treasury_slot["entry_count"] + 1,
        wallet,
        last["balance_after"] + 1000,
        last["account_sequence"] + 1,
    )
    await connection.execute(
        """
        INSERT INTO event (id, type, subject_id, created_at, xid)
        VALUES ($1, 'transaction.posted', $1, now(), pg_current_xact_id())
        """,
        fake,
    )
    await connection.execute(
        """
        UPDATE account SET balance = balance + 1000, entry_count = entry_count + 1,
            ledger_head = sha256('fake-2'::bytea)
        WHERE id = $1
        """,
        wallet,
    )
    await connection.execute(
        """
        UPDATE account_slot
        SET balance = balance - 1000, entry_count = entry_count + 1, head = sha256('fake-1'::bytea)
        WHERE account_id = $1 AND slot = $2
        """,
        treasury_slot["account_id"],
        treasury_slot["slot"],
    )


async def swap_two_entries(connection: asyncpg.Connection, wallet: uuid.UUID) -> None:
    """The first and second top-ups (10 each) trade places in the wallet's history: their
    numbers and times swap; every balance after still adds up."""
    first, second = (await _entries(connection, wallet))[:2]
    for entry, other in ((first, second), (second, first)):
        await connection.execute(
            """
            UPDATE entry SET account_sequence = $3, balance_after = $4, created_at = $5
            WHERE transaction_id = $1 AND account_id = $2
            """,
            entry["transaction_id"],
            wallet,
            other["account_sequence"],
            other["balance_after"],
            other["created_at"],
        )


async def change_a_balance_after(connection: asyncpg.Connection, wallet: uuid.UUID) -> None:
    last = (await _entries(connection, wallet))[-1]
    await connection.execute(
        "UPDATE entry SET balance_after = balance_after + 1 WHERE transaction_id = $1 AND account_id = $2",
        last["transaction_id"],
        wallet,
    )


async def _tampered(
    database_url: str, tamper: Tamper
) -> tuple[verify.Verification, verify.Verification, uuid.UUID]:
    connection = await asyncpg.connect(database_url, timeout=10)
    try:
        wallet = await _ledger(connection)
        clean = await verify.verify(connection, deep=True)
        assert clean.ok, clean.problems
        async with connection.transaction():
            await tamper(connection, wallet)
        return await verify.verify(connection), await verify.verify(connection, deep=True), wallet
    finally:
        await connection.close()


@pytest.mark.parametrize(
    "tamper",
    [
        change_an_amount_and_the_balance_with_it,
        delete_a_whole_transaction,
        insert_a_balanced_fake_transaction,
        swap_two_entries,
        change_a_balance_after,
    ],
)
def test_a_deep_verify_names_the_account_whose_chain_was_tampered_with(
    create_database: Callable[[], str], tamper: Tamper
) -> None:
    plain, deep, wallet = asyncio.run(_tampered(create_database(), tamper))
    chains = [problem for problem in deep.problems if problem.get("check") == "chain"]
    assert any(problem["account_id"] == str(wallet) for problem in chains), deep.problems
    if tamper is not change_a_balance_after:
        # Behind the plain checks' back: only the chains tell.
        assert plain.ok, plain.problems
