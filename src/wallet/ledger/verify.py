"""The four ledger invariants of the API contract, checked on one consistent snapshot.

1. Every transaction's entries balance: sum of debits = sum of credits.
2. Every account's stored balance = credits - debits of its entries.
3. No user wallet balance is negative.
4. For each asset, the balances of all accounts (user and system) sum to zero.

The check runs in a REPEATABLE READ, READ ONLY transaction: it reads one snapshot and takes no
row locks, so writes go on while it runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from wallet.types import Connection

PROBLEMS_MAX = 100

UNBALANCED_TRANSACTIONS = """
SELECT t.id AS transaction_id, t.amount,
    coalesce(sum(e.amount) FILTER (WHERE e.direction = 'debit'), 0) AS debits,
    coalesce(sum(e.amount) FILTER (WHERE e.direction = 'credit'), 0) AS credits
FROM transaction t LEFT JOIN entry e ON e.transaction_id = t.id
GROUP BY t.id, t.amount
HAVING coalesce(sum(e.amount) FILTER (WHERE e.direction = 'debit'), 0)
    <> coalesce(sum(e.amount) FILTER (WHERE e.direction = 'credit'), 0)
    OR coalesce(sum(e.amount) FILTER (WHERE e.direction = 'debit'), 0) <> t.amount
LIMIT $1
"""

ACCOUNT_MISMATCHES = """
WITH posted AS (
    SELECT account_id,
        sum(CASE WHEN direction = 'credit' THEN amount ELSE -amount END) AS balance
    FROM entry GROUP BY account_id
), slotted AS (
    SELECT account_id, sum(balance) AS balance FROM account_slot GROUP BY account_id
)
SELECT a.id AS account_id, a.kind, a.asset,
    a.balance + coalesce(s.balance, 0) AS stored, coalesce(p.balance, 0) AS posted
FROM account a
LEFT JOIN posted p ON p.account_id = a.id
LEFT JOIN slotted s ON s.account_id = a.id
WHERE a.balance + coalesce(s.balance, 0) <> coalesce(p.balance, 0)
LIMIT $1
"""

NEGATIVE_WALLETS = """
SELECT id AS account_id, balance FROM account WHERE kind = 'user' AND balance < 0 LIMIT $1
"""

UNBALANCED_ASSETS = """
SELECT a.asset, sum(a.balance + coalesce(s.balance, 0)) AS total
FROM account a
LEFT JOIN (SELECT account_id, sum(balance) AS balance FROM account_slot GROUP BY account_id) s
    ON s.account_id = a.id
GROUP BY a.asset
HAVING sum(a.balance + coalesce(s.balance, 0)) <> 0
"""


@dataclass(slots=True)
class Verification:
    accounts_checked: int = 0
    transactions_checked: int = 0
    problems: list[dict[str, Any]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_document(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "accounts_checked": self.accounts_checked,
            "transactions_checked": self.transactions_checked,
            "problems": self.problems,
        }


async def verify(connection: Connection) -> Verification:
    result = Verification()
    async with connection.transaction(isolation="repeatable_read", readonly=True):
        result.accounts_checked = await connection.fetchval("SELECT count(*) FROM account")
        result.transactions_checked = await connection.fetchval("SELECT count(*) FROM transaction")
        for row in await connection.fetch(UNBALANCED_TRANSACTIONS, PROBLEMS_MAX):
            result.problems.append(
                {
                    "invariant": 1,
                    "transaction_id": str(row["transaction_id"]),
                    "detail": f"debits {row['debits']}, credits {row['credits']}, amount {row['amount']}",
                }
            )
        for row in await connection.fetch(ACCOUNT_MISMATCHES, PROBLEMS_MAX):
            result.problems.append(
                {
                    "invariant": 2,
                    "account_id": str(row["account_id"]),
                    "detail": f"{row['kind']} account of {row['asset']}: stored balance "
                    f"{row['stored']}, entries say {row['posted']}",
                }
            )
        for row in await connection.fetch(NEGATIVE_WALLETS, PROBLEMS_MAX):
            result.problems.append(
                {
                    "invariant": 3,
                    "account_id": str(row["account_id"]),
                    "detail": f"wallet balance is {row['balance']}",
                }
            )
        for row in await connection.fetch(UNBALANCED_ASSETS):
            result.problems.append(
                {
                    "invariant": 4,
                    "asset": row["asset"],
                    "detail": f"balances of all {row['asset']} accounts sum to {row['total']}",
                }
            )
    del result.problems[PROBLEMS_MAX:]
    return result
