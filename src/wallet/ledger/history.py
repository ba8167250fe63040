"""Reading transactions: one by id, and a wallet's history newest first with keyset pagination."""

from __future__ import annotations

import base64
import binascii
import uuid
from dataclasses import dataclass

from wallet.ledger.errors import TransactionNotFound, WalletNotFound
from wallet.ledger.limits import PAGE_SIZE_MAX
from wallet.types import Connection

CURSOR_PREFIX = "e1:"
CURSOR_LENGTH_MAX = 64


class CursorInvalid(ValueError):
    pass


def encode_cursor(entry_id: int) -> str:
    assert entry_id > 0
    return base64.urlsafe_b64encode(f"{CURSOR_PREFIX}{entry_id}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> int:
    """The entry id a cursor stands for; CursorInvalid when it is not one this service made."""
    if not 1 <= len(cursor) <= CURSOR_LENGTH_MAX or not cursor.isascii():
        raise CursorInvalid("cursor is not one this service returned")
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise CursorInvalid("cursor is not one this service returned") from None
    digits = text.removeprefix(CURSOR_PREFIX)
    if digits == text or not digits.isdigit() or len(digits) > 19:
        raise CursorInvalid("cursor is not one this service returned")
    entry_id = int(digits)
    if not 0 < entry_id < 2**63:
        raise CursorInvalid("cursor is not one this service returned")
    return entry_id


@dataclass(frozen=True, slots=True)
class Page:
    documents: list[str]  # Transaction objects as JSON text
    next_cursor: str | None


async def get_transaction(connection: Connection, transaction_id: uuid.UUID) -> str:
    document = await connection.fetchval("SELECT ledger_transaction_document($1)", transaction_id)
    if document is None:
        raise TransactionNotFound(f"Transaction {transaction_id} does not exist.")
    assert isinstance(document, str)
    return document


async def wallet_history(
    connection: Connection, wallet_id: uuid.UUID, limit: int, cursor: str | None
) -> Page:
    """A page of the wallet's transactions, newest first. The cursor is the last entry id shown."""
    assert 1 <= limit <= PAGE_SIZE_MAX, limit
    entry_id_before = decode_cursor(cursor) if cursor is not None else 2**63 - 1
    rows = await connection.fetch(
        """
        SELECT page.entry_id, ledger_transaction_document(page.transaction_id) AS document
        FROM (
            SELECT e.id AS entry_id, e.transaction_id FROM entry e
            WHERE e.account_id = $1 AND e.id < $2
              AND EXISTS (SELECT FROM account a WHERE a.id = $1 AND a.kind = 'user')
            ORDER BY e.id DESC
            LIMIT $3
        ) page
        ORDER BY page.entry_id DESC
        """,
        wallet_id,
        entry_id_before,
        limit + 1,
    )
    if not rows:
        exists = await connection.fetchval(
            "SELECT true FROM account WHERE id = $1 AND kind = 'user'", wallet_id
        )
        if not exists:
            raise WalletNotFound(f"Wallet {wallet_id} does not exist.")
    shown = rows[:limit]
    next_cursor = encode_cursor(shown[-1]["entry_id"]) if len(rows) > limit else None
    return Page(documents=[row["document"] for row in shown], next_cursor=next_cursor)
