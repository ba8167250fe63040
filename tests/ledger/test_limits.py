"""The ledger's limits are named once in Python (wallet.ledger.limits) and once in SQL
(ledger/sql/limits.sql); the schema's domains and the demo UI repeat some of them. These tests
hold all of them to the Python values, so none can drift."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable
from pathlib import Path

import asyncpg
import pytest

from wallet.ledger import limits

STATIC_DIR = Path(__file__).resolve().parents[2] / "src" / "wallet" / "web" / "static"


@pytest.fixture(scope="module")
def database_url(create_database: Callable[[], str]) -> str:
    return create_database()


async def _fetch(database_url: str, query: str) -> list[asyncpg.Record]:
    connection = await asyncpg.connect(database_url, timeout=10)
    try:
        return await connection.fetch(query)
    finally:
        await connection.close()


def fetch(database_url: str, query: str) -> list[asyncpg.Record]:
    return asyncio.run(_fetch(database_url, query))


def test_the_sql_functions_name_the_python_limits(database_url: str) -> None:
    [row] = fetch(
        database_url,
        "SELECT ledger.amount_max() AS amount_max, ledger.balance_max() AS balance_max, "
        "ledger.postings_max() AS postings_max, ledger.slot_count() AS slot_count",
    )
    assert dict(row) == {
        "amount_max": limits.AMOUNT_MAX,
        "balance_max": limits.BALANCE_MAX,
        "postings_max": limits.POSTINGS_MAX,
        "slot_count": limits.SLOT_COUNT,
    }


def _bounds(definition: str) -> tuple[int, int]:
    """(low, high) of a `VALUE >= low AND VALUE <= high` check, as PostgreSQL prints it back."""
    match = re.fullmatch(
        r"CHECK \(\(\(VALUE >= '?(-?\d+)'?(?:::bigint)?\) AND \(VALUE <= '?(-?\d+)'?(?:::bigint)?\)\)\)",
        definition,
    )
    assert match is not None, definition
    return int(match.group(1)), int(match.group(2))


def test_the_schema_domains_hold_the_same_limits(database_url: str) -> None:
    rows = fetch(
        database_url,
        """
        SELECT t.typname AS domain, pg_get_constraintdef(c.oid) AS definition
        FROM pg_constraint c JOIN pg_type t ON t.oid = c.contypid
        WHERE t.typname IN ('ledger_amount', 'ledger_transaction_amount', 'ledger_balance',
            'ledger_slot_balance')
        """,
    )
    bounds = {row["domain"]: _bounds(row["definition"]) for row in rows}
    assert bounds == {
        "ledger_amount": (limits.AMOUNT_MIN, limits.AMOUNT_MAX),
        "ledger_transaction_amount": (limits.AMOUNT_MIN, limits.TRANSACTION_AMOUNT_MAX),
        "ledger_balance": (0, limits.BALANCE_MAX),
        "ledger_slot_balance": (-limits.BALANCE_MAX, limits.BALANCE_MAX),
    }


def test_every_system_account_has_exactly_the_slots_the_core_picks_among(
    seeded_database: str,
) -> None:
    rows = fetch(
        seeded_database,
        """
        SELECT a.kind, count(s.slot) AS slots, min(s.slot) AS first, max(s.slot) AS last
        FROM account a JOIN account_slot s ON s.account_id = a.id
        GROUP BY a.id, a.kind
        """,
    )
    assert rows and {row["kind"] for row in rows} == set(limits.SYSTEM_ACCOUNT_KINDS)
    assert {(row["slots"], row["first"], row["last"]) for row in rows} == {
        (limits.SLOT_COUNT, 0, limits.SLOT_COUNT - 1)
    }


def test_the_demo_ui_checks_amounts_against_the_same_limits() -> None:
    source = (STATIC_DIR / "api.js").read_text()
    minimum = re.search(r"export const AMOUNT_MIN = (\d+)n;", source)
    maximum = re.search(r"export const AMOUNT_MAX = 10n \*\* (\d+)n;", source)
    assert minimum and maximum, "api.js no longer states AMOUNT_MIN and AMOUNT_MAX as this test reads them"
    assert (int(minimum.group(1)), 10 ** int(maximum.group(1))) == (limits.AMOUNT_MIN, limits.AMOUNT_MAX)
