"""Assets and wallets: creating and reading them."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from wallet._ids import uuid7
from wallet.ledger.errors import AssetConflict, AssetNotFound, WalletNotFound
from wallet.ledger.limits import SLOT_COUNT, SYSTEM_ACCOUNT_KINDS
from wallet.ledger.transactions import timestamp_text
from wallet.types import Connection


@dataclass(frozen=True, slots=True)
class Asset:
    code: str
    name: str
    created_at: datetime

    def to_document(self) -> dict[str, Any]:
        return {"code": self.code, "name": self.name, "created_at": timestamp_text(self.created_at)}


@dataclass(frozen=True, slots=True)
class Wallet:
    id: uuid.UUID
    owner_id: str
    asset: str
    balance: int
    held: int  # the pending holds not past their expiry
    created_at: datetime
    updated_at: datetime
    ledger_head_hash: str  # the hex hash of the wallet's last entry (its chain's head)
    ledger_head_entries: int  # and how many entries the chain has
    next_expiry_amount: int | None = None  # the soonest unexpired lot(s): what remains of them,
    next_expiry_at: datetime | None = None  # and when they expire

    def __post_init__(self) -> None:
        assert 0 <= self.held <= self.balance, (self.id, self.held, self.balance)

    @property
    def available(self) -> int:
        return self.balance - self.held

    def to_document(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "owner_id": self.owner_id,
            "asset": self.asset,
            "balance": self.balance,
            "held": self.held,
            "available": self.available,
            "next_expiry": None
            if self.next_expiry_at is None
            else {"amount": self.next_expiry_amount, "expires_at": timestamp_text(self.next_expiry_at)},
            "ledger_head": {"hash": self.ledger_head_hash, "entries": self.ledger_head_entries},
            "created_at": timestamp_text(self.created_at),
            "updated_at": timestamp_text(self.updated_at),
        }


def _wallet(row: asyncpg.Record) -> Wallet:
    return Wallet(**dict(row))


async def list_assets(connection: Connection) -> list[Asset]:
    rows = await connection.fetch("SELECT code, name, created_at FROM asset ORDER BY code")
    return [Asset(**dict(row)) for row in rows]


async def create_asset(connection: Connection, code: str, name: str) -> tuple[Asset, bool]:
    """Create an asset and its system accounts with their slots. Returns (asset, created)."""
    async with connection.transaction(isolation="read_committed"):
        row = await connection.fetchrow(
            """
            INSERT INTO asset (code, name) VALUES ($1, $2)
            ON CONFLICT (code) DO NOTHING
            RETURNING code, name, created_at
            """,
            code,
            name,
        )
        if row is None:
            existing = await connection.fetchrow(
                "SELECT code, name, created_at FROM asset WHERE code = $1", code
            )
            assert existing is not None, "asset conflict without a row"
            if existing["name"] != name:
                raise AssetConflict(f"Asset {code} exists with the name {existing['name']!r}.")
            return Asset(**dict(existing)), False
        await _create_system_accounts(connection, code)
        return Asset(**dict(row)), True


async def _create_system_accounts(connection: Connection, asset: str) -> None:
    account_ids = [uuid7() for _ in SYSTEM_ACCOUNT_KINDS]
    await connection.executemany(
        "INSERT INTO account (id, asset, kind) VALUES ($1, $2, $3)",
        [
            (account_id, asset, kind)
            for account_id, kind in zip(account_ids, SYSTEM_ACCOUNT_KINDS, strict=True)
        ],
    )
    await connection.execute(
        """
        INSERT INTO account_slot (account_id, slot)
        SELECT account_id, slot FROM unnest($1::uuid[]) AS account_id,
            generate_series(0, $2 - 1) AS slot
        """,
        account_ids,
        SLOT_COUNT,
    )


async def create_wallet(connection: Connection, owner_id: str, asset: str) -> tuple[Wallet, bool]:
    """Create the owner's wallet for an asset, or return the existing one. Returns (wallet, created)."""
    row = await connection.fetchrow(
        """
        INSERT INTO account (id, asset, kind, owner_id)
        SELECT $1, code, 'user', $2 FROM asset WHERE code = $3
        ON CONFLICT (owner_id, asset) DO NOTHING
        RETURNING id, owner_id, asset, balance, 0::bigint AS held, created_at, updated_at,
            encode(ledger_head, 'hex') AS ledger_head_hash, entry_count AS ledger_head_entries
        """,
        uuid7(),
        owner_id,
        asset,
    )
    if row is not None:
        return _wallet(row), True
    # Either the asset is unknown or the wallet exists (perhaps committed by a concurrent request
    # after this statement's snapshot was taken): a new statement sees it.
    existing = await connection.fetchrow(
        "SELECT * FROM ledger.wallet WHERE owner_id = $1 AND asset = $2", owner_id, asset
    )
    if existing is not None:
        return _wallet(existing), False
    raise AssetNotFound(f"Asset {asset} does not exist.")


async def get_wallet(connection: Connection, wallet_id: uuid.UUID) -> Wallet:
    row = await connection.fetchrow("SELECT * FROM ledger.wallet WHERE id = $1", wallet_id)
    if row is None:
        raise WalletNotFound(f"Wallet {wallet_id} does not exist.")
    return _wallet(row)


async def list_wallets(connection: Connection, owner_id: str) -> list[Wallet]:
    rows = await connection.fetch("SELECT * FROM ledger.wallet WHERE owner_id = $1 ORDER BY asset", owner_id)
    return [_wallet(row) for row in rows]
