"""Expiring credits: a wallet's lots, and expiry on demand.

A top-up or bonus with `expires_at` gives the wallet a lot; debits and holds take from its lots
soonest-expiring first; a lot that expires leaves the wallet in an `expiry` transaction to the
asset's breakage account. All of that happens in the database (ledger/sql/lots.sql, and the lot
work of ledger.post); this module reads lots and runs the sweep.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from wallet.ledger.errors import WalletNotFound
from wallet.ledger.transactions import timestamp_text
from wallet.types import Connection

LOTS_MAX = 1000  # lots one read lists, soonest first
SWEEP_BATCH_SIZE = 100  # wallets per sweep transaction


@dataclass(frozen=True, slots=True)
class LotRecord:
    transaction_id: uuid.UUID  # the credit that made it
    amount: int
    remaining: int  # neither spent nor held
    expires_at: datetime
    created_at: datetime

    def to_document(self) -> dict[str, Any]:
        return {
            "transaction_id": str(self.transaction_id),
            "amount": self.amount,
            "remaining": self.remaining,
            "expires_at": timestamp_text(self.expires_at),
            "created_at": timestamp_text(self.created_at),
        }


WALLET_LOTS = """
SELECT l.transaction_id, l.amount, l.remaining, l.expires_at, l.created_at
FROM account a
JOIN lot l ON l.wallet_id = a.id AND l.remaining > 0 AND l.expires_at > now()
WHERE a.id = $1 AND a.kind = 'user'
ORDER BY l.expires_at, l.id
LIMIT $2
"""
WALLET_EXISTS = "SELECT EXISTS (SELECT FROM account WHERE id = $1 AND kind = 'user')"


async def wallet_lots(connection: Connection, wallet_id: uuid.UUID, limit: int = LOTS_MAX) -> list[LotRecord]:
    """The wallet's unexpired lots with something remaining, soonest first."""
    assert 1 <= limit <= LOTS_MAX
    rows = await connection.fetch(WALLET_LOTS, wallet_id, limit)
    if not rows and not await connection.fetchval(WALLET_EXISTS, wallet_id):
        raise WalletNotFound(f"Wallet {wallet_id} does not exist.")
    return [LotRecord(**dict(row)) for row in rows]


SWEEP = "SELECT ledger.sweep($1)"
# One sweeper at a time across processes (serving workers and `wallet lots expire`): each batch
# holds this advisory lock of its transaction: "wallet" in ASCII, then 3.
SWEEP_LOCK_KEY = 0x77616C6C6574_0003


async def sweep_batch(connection: Connection, batch_size: int, *, wait_for_lock: bool) -> int | None:
    """Expire what is due (holds, then lots) of up to batch_size wallets, in one transaction;
    how many wallets it took: fewer than batch_size when no more are due (or the rest are
    locked by postings, which expire their own). With `wait_for_lock` false, None when another
    process's batch holds the sweep lock."""
    assert 1 <= batch_size <= 10_000
    async with connection.transaction(isolation="read_committed"):
        if wait_for_lock:
            await connection.execute("SELECT pg_advisory_xact_lock($1)", SWEEP_LOCK_KEY)
        elif not await connection.fetchval("SELECT pg_try_advisory_xact_lock($1)", SWEEP_LOCK_KEY):
            return None
        taken = await connection.fetchval(SWEEP, batch_size)
    assert isinstance(taken, int) and 0 <= taken <= batch_size
    return taken


async def sweep(connection: Connection, batch_size: int = SWEEP_BATCH_SIZE) -> int:
    """Expire everything due now, batch after batch, waiting for another sweeper when one runs;
    how many wallets it took."""
    total = 0
    while True:
        taken = await sweep_batch(connection, batch_size, wait_for_lock=True)
        assert taken is not None
        total += taken
        if taken < batch_size:
            return total
