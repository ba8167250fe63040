"""The ledger invariants of the API contract, and the checks that stand in for foreign keys,
all on one consistent snapshot.

Invariants (API.md):
1. Every transaction's entries balance: sum of debits = sum of credits (= its amount).
2. Every account's stored balance = credits - debits of its entries.
3. No user wallet balance is negative.
4. For each asset, the balances of all accounts (user and system) sum to zero.
5. For each wallet, held = the sum of its pending, unexpired holds, and held <= balance (the
   stored `held` counts pending holds until they are marked expired: it must be their sum).
6. For each wallet, the remaining amounts of its unexpired lots sum to at most its balance.
7. No transaction is reversed by more than its amount.
8. Events: one `transaction.posted` per transaction (of those since the events kept begin), and
   every event names an existing transaction or hold.

Checks of the ledger's own bookkeeping:
- references: every entry names an existing transaction and account, every transaction an
  existing asset, wallet and API key, every idempotency row an existing transaction (the tables
  have no foreign keys to those rows; see migration 0002);
- sequence: each account's entries (each slot's, for a system account) are numbered 1..n with
  no gap or repeat, n is the count the account keeps, and a wallet's entries never go back in
  time;
- balance_after: each wallet entry's balance_after is the one before it plus or minus its amount;
- statements: a statement until now closes at the wallet's balance: the balance_after of the
  wallet's last entry in time order, read through entry_wallet_index as statements and balances
  at a time read it (ledger/statements.py), is its stored balance (0 with no entry). One index
  lookup per wallet. Statements read the entries with a balance_after, which are those with no
  slot (a CHECK constraint), the entries the sequence and balance_after checks read: with them,
  `opening + credits - debits = closing` holds for every window;
- lots: what a wallet's open lots keep (expired or not) plus what its holds keep is within its
  balance (the rest is its non-expiring funds), no lot keeps more than it was given, the
  wallet's lot_expires_at is its soonest open lot's, a hold's lot_amount is what it took from
  lots, and what lots and their uses name exists.

With `deep`, also:
- chains: every entry's hash is the next link of its wallet's (its slot's) chain, recomputed
  from the entry's content and the hash before it (ledger/sql/chains.sql), and each account's
  (slot's) head is its last entry's hash. The first broken link of each chain is reported: an
  entry changed, removed, added or moved by hand breaks the chain from there on.

The checks run in a REPEATABLE READ, READ ONLY transaction: one snapshot, no row locks, so
writes go on while they run.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from wallet.types import Connection

PROBLEMS_MAX = 100
DEEP_TIMEOUT = "SET LOCAL statement_timeout = '30min'"  # for a deep verify's chain check

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

HELD_MISMATCHES = """
SELECT a.id AS account_id, a.balance, a.held AS stored, coalesce(p.pending, 0) AS pending,
    coalesce(p.unexpired, 0) AS unexpired, a.hold_expires_at, p.soonest
FROM account a
LEFT JOIN (
    SELECT h.wallet_id, sum(h.amount) AS pending,
        sum(h.amount) FILTER (WHERE h.expires_at > now()) AS unexpired, min(h.expires_at) AS soonest
    FROM hold h WHERE h.status = 'pending' GROUP BY h.wallet_id
) p ON p.wallet_id = a.id
WHERE a.kind = 'user' AND (
    a.held <> coalesce(p.pending, 0) OR coalesce(p.unexpired, 0) > a.balance
    OR a.hold_expires_at IS DISTINCT FROM p.soonest)
LIMIT $1
"""

OVER_REVERSED = """
SELECT t.id AS transaction_id, t.amount, sum(r.amount) AS reversed
FROM transaction t JOIN transaction r ON r.reverses = t.id
GROUP BY t.id, t.amount
HAVING sum(r.amount) > t.amount
LIMIT $1
"""

OVERDRAWN_LOTS = """
SELECT a.id AS account_id, a.balance, sum(l.remaining) AS remaining
FROM account a JOIN lot l ON l.wallet_id = a.id AND l.remaining > 0 AND l.expires_at > now()
WHERE a.kind = 'user'
GROUP BY a.id, a.balance
HAVING sum(l.remaining) > a.balance
LIMIT $1
"""

BROKEN_LOTS = """
SELECT 'wallet ' || a.id || ': its open lots keep ' || coalesce(l.remaining, 0) || ' and its holds '
    || a.held || ', more than its balance ' || a.balance AS detail
FROM account a
LEFT JOIN (SELECT wallet_id, sum(remaining) AS remaining, min(expires_at) AS soonest
           FROM lot WHERE remaining > 0 GROUP BY wallet_id) l ON l.wallet_id = a.id
WHERE a.kind = 'user' AND coalesce(l.remaining, 0) + a.held > a.balance
UNION ALL
SELECT 'wallet ' || a.id || ': lot_expires_at ' || coalesce(a.lot_expires_at::text, 'none')
    || ', its soonest open lot ' || coalesce(l.soonest::text, 'none')
FROM account a
LEFT JOIN (SELECT wallet_id, min(expires_at) AS soonest FROM lot WHERE remaining > 0 GROUP BY wallet_id) l
    ON l.wallet_id = a.id
WHERE a.kind = 'user' AND a.lot_expires_at IS DISTINCT FROM l.soonest
UNION ALL
SELECT 'lot ' || l.id || ' keeps ' || l.remaining || ', more than its amount ' || l.amount
FROM lot l WHERE l.remaining > l.amount
UNION ALL
SELECT 'lot ' || l.id || ' names no wallet ' || l.wallet_id || ' or no transaction ' || l.transaction_id
FROM lot l
WHERE NOT EXISTS (SELECT FROM account a WHERE a.id = l.wallet_id AND a.kind = 'user')
   OR NOT EXISTS (SELECT FROM transaction t WHERE t.id = l.transaction_id)
UNION ALL
SELECT 'hold ' || h.id || ' took ' || h.lot_amount || ' from lots, its uses say ' || coalesce(u.amount, 0)
FROM hold h
LEFT JOIN (SELECT owner_id, sum(amount) AS amount FROM lot_use GROUP BY owner_id) u ON u.owner_id = h.id
WHERE h.lot_amount <> coalesce(u.amount, 0)
UNION ALL
SELECT 'lot use ' || u.owner_id || '/' || u.position || ' names no lot ' || u.lot_id
FROM lot_use u WHERE NOT EXISTS (SELECT FROM lot l WHERE l.id = u.lot_id)
UNION ALL
SELECT 'lot use ' || u.owner_id || '/' || u.position || ' names no transaction or hold'
FROM lot_use u
WHERE NOT EXISTS (SELECT FROM transaction t WHERE t.id = u.owner_id)
  AND NOT EXISTS (SELECT FROM hold h WHERE h.id = u.owner_id)
LIMIT $1
"""

EVENT_PROBLEMS = """
SELECT 'transaction ' || t.id || ' has ' || count(e.id) || ' transaction.posted events' AS detail
FROM transaction t
CROSS JOIN event_sequencer s
LEFT JOIN event e ON e.subject_id = t.id AND e.type = 'transaction.posted'
WHERE t.created_at >= s.kept_since
GROUP BY t.id
HAVING count(e.id) <> 1
UNION ALL
SELECT 'event ' || e.id || ' of type ' || e.type || ' names no such subject ' || e.subject_id
FROM event e
WHERE CASE WHEN e.type = 'transaction.posted'
    THEN NOT EXISTS (SELECT FROM transaction t WHERE t.id = e.subject_id)
    ELSE NOT EXISTS (SELECT FROM hold h WHERE h.id = e.subject_id) END
UNION ALL
SELECT 'event position ' || p.position || ' names no event ' || p.event_id
FROM event_position p WHERE NOT EXISTS (SELECT FROM event e WHERE e.id = p.event_id)
LIMIT $1
"""

BROKEN_CHAINS = """
WITH links AS (
    SELECT e.account_id, e.slot, e.account_sequence, e.transaction_id, e.hash,
        ledger.entry_hash(coalesce(lag(e.hash) OVER w, ledger.chain_genesis()), e.transaction_id,
            e.account_id, e.direction, e.amount, e.balance_after, a.asset, e.slot, e.account_sequence,
            e.created_at) AS expected,
        last_value(e.hash) OVER (w ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING) AS last_hash
    FROM entry e JOIN account a ON a.id = e.account_id
    WINDOW w AS (PARTITION BY e.account_id, e.slot ORDER BY e.account_sequence)
), heads AS (
    SELECT a.id AS account_id, NULL::smallint AS slot, a.ledger_head AS head
    FROM account a WHERE a.kind = 'user'
    UNION ALL
    SELECT s.account_id, s.slot, s.head FROM account_slot s
)
SELECT l.account_id, l.slot, min(l.account_sequence) AS entry,
    'breaks at entry ' || min(l.account_sequence) || ' (transaction '
        || (array_agg(l.transaction_id ORDER BY l.account_sequence))[1] || ')' AS detail
FROM links l WHERE l.hash IS DISTINCT FROM l.expected
GROUP BY l.account_id, l.slot
UNION ALL
SELECT h.account_id, h.slot, NULL, 'the head is not the hash of the last entry'
FROM heads h
LEFT JOIN (SELECT DISTINCT account_id, slot, last_hash FROM links) l
    ON l.account_id = h.account_id AND l.slot IS NOT DISTINCT FROM h.slot
WHERE h.head IS DISTINCT FROM coalesce(l.last_hash, ledger.chain_genesis())
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

BROKEN_REFERENCES = """
SELECT 'entry ' || e.transaction_id || '/' || e.entry_index || ' names no transaction' AS detail
FROM entry e WHERE NOT EXISTS (SELECT FROM transaction t WHERE t.id = e.transaction_id)
UNION ALL
SELECT 'entry ' || e.transaction_id || '/' || e.entry_index || ' names no account ' || e.account_id
FROM entry e WHERE NOT EXISTS (SELECT FROM account a WHERE a.id = e.account_id)
UNION ALL
SELECT 'entry ' || e.transaction_id || '/' || e.entry_index || ' of a system account names no slot'
FROM entry e
WHERE e.slot IS NOT NULL
  AND NOT EXISTS (SELECT FROM account_slot s WHERE s.account_id = e.account_id AND s.slot = e.slot)
UNION ALL
SELECT 'transaction ' || t.id || ' names no asset ' || t.asset
FROM transaction t WHERE NOT EXISTS (SELECT FROM asset s WHERE s.code = t.asset)
UNION ALL
SELECT 'transaction ' || t.id || ' names no wallet ' || t.wallet_id
FROM transaction t
WHERE NOT EXISTS (SELECT FROM account a WHERE a.id = t.wallet_id AND a.kind = 'user' AND a.asset = t.asset)
UNION ALL
SELECT 'transaction ' || t.id || ' names no API key ' || coalesce(t.api_key_id::text, '(none)')
FROM transaction t
WHERE (t.api_key_id IS NULL) <> (t.type = 'expiry')
   OR (t.api_key_id IS NOT NULL AND NOT EXISTS (SELECT FROM api_key k WHERE k.id = t.api_key_id))
UNION ALL
SELECT 'entry ' || e.transaction_id || '/' || e.entry_index || ' is of another asset than its transaction'
FROM entry e JOIN transaction t ON t.id = e.transaction_id JOIN account a ON a.id = e.account_id
WHERE a.asset <> t.asset
UNION ALL
SELECT 'idempotency key ' || i.key || ' names no transaction ' || i.transaction_id
FROM idempotency_key i
WHERE i.transaction_id IS NOT NULL AND NOT EXISTS (SELECT FROM transaction t WHERE t.id = i.transaction_id)
LIMIT $1
"""

BROKEN_SEQUENCES = """
WITH numbered AS (
    SELECT e.account_id, e.slot, e.account_sequence, e.created_at,
        row_number() OVER w AS expected,
        lag(e.created_at) OVER w AS previous_at,
        count(*) OVER (PARTITION BY e.account_id, e.slot) AS entries
    FROM entry e
    WINDOW w AS (PARTITION BY e.account_id, e.slot ORDER BY e.account_sequence)
), kept AS (
    SELECT a.id AS account_id, NULL::smallint AS slot, a.entry_count FROM account a WHERE a.kind = 'user'
    UNION ALL
    SELECT s.account_id, s.slot, s.entry_count FROM account_slot s
)
SELECT 'account ' || n.account_id || coalesce(' slot ' || n.slot, '') || ': entry '
    || n.account_sequence || ' is number ' || n.expected || ' of its entries' AS detail
FROM numbered n WHERE n.account_sequence <> n.expected
UNION ALL
SELECT 'account ' || n.account_id || ': entry ' || n.account_sequence || ' is older than the one before it'
FROM numbered n WHERE n.slot IS NULL AND n.created_at < n.previous_at
UNION ALL
SELECT 'account ' || k.account_id || coalesce(' slot ' || k.slot, '') || ' counts '
    || k.entry_count || ' entries, has ' || coalesce(c.entries, 0)
FROM kept k
LEFT JOIN (SELECT account_id, slot, count(*) AS entries FROM entry GROUP BY account_id, slot) c
    ON c.account_id = k.account_id AND c.slot IS NOT DISTINCT FROM k.slot
WHERE k.entry_count <> coalesce(c.entries, 0)
LIMIT $1
"""

BROKEN_BALANCES_AFTER = """
SELECT 'wallet ' || e.account_id || ': entry ' || e.account_sequence || ' says balance after '
    || e.balance_after || ', the entries before it and its amount make ' || e.expected AS detail
FROM (
    SELECT e.account_id, e.account_sequence, e.balance_after,
        sum(CASE WHEN e.direction = 'credit' THEN e.amount ELSE -e.amount END)
            OVER (PARTITION BY e.account_id ORDER BY e.account_sequence) AS expected
    FROM entry e
    WHERE e.slot IS NULL
) e
WHERE e.balance_after <> e.expected
LIMIT $1
"""

# A statement until now closes where ledger/statements.py would read it: at the wallet's balance.
BROKEN_STATEMENTS = """
SELECT 'wallet ' || a.id || ': a statement until now closes at ' || coalesce(l.balance_after, 0)
    || ', its balance is ' || a.balance AS detail
FROM account a
LEFT JOIN LATERAL (
    SELECT e.balance_after FROM entry e
    WHERE e.account_id = a.id AND e.balance_after IS NOT NULL
    ORDER BY e.created_at DESC, e.account_sequence DESC
    LIMIT 1
) l ON true
WHERE a.kind = 'user' AND coalesce(l.balance_after, 0) <> a.balance
LIMIT $1
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


async def verify(connection: Connection, *, deep: bool = False) -> Verification:
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
        for row in await connection.fetch(HELD_MISMATCHES, PROBLEMS_MAX):
            result.problems.append(
                {
                    "invariant": 5,
                    "account_id": str(row["account_id"]),
                    "detail": f"held {row['stored']} (soonest expiry {row['hold_expires_at']}), "
                    f"pending holds {row['pending']} (unexpired {row['unexpired']}, soonest "
                    f"{row['soonest']}), balance {row['balance']}",
                }
            )
        for row in await connection.fetch(OVERDRAWN_LOTS, PROBLEMS_MAX):
            result.problems.append(
                {
                    "invariant": 6,
                    "account_id": str(row["account_id"]),
                    "detail": f"unexpired lots keep {row['remaining']}, "
                    f"more than the balance {row['balance']}",
                }
            )
        for row in await connection.fetch(OVER_REVERSED, PROBLEMS_MAX):
            result.problems.append(
                {
                    "invariant": 7,
                    "transaction_id": str(row["transaction_id"]),
                    "detail": f"reversed by {row['reversed']}, more than its amount {row['amount']}",
                }
            )
        for row in await connection.fetch(EVENT_PROBLEMS, PROBLEMS_MAX):
            result.problems.append({"invariant": 8, "detail": row["detail"]})
        for row in await connection.fetch(BROKEN_REFERENCES, PROBLEMS_MAX):
            result.problems.append({"check": "references", "detail": row["detail"]})
        for row in await connection.fetch(BROKEN_SEQUENCES, PROBLEMS_MAX):
            result.problems.append({"check": "sequence", "detail": row["detail"]})
        for row in await connection.fetch(BROKEN_BALANCES_AFTER, PROBLEMS_MAX):
            result.problems.append({"check": "balance_after", "detail": row["detail"]})
        for row in await connection.fetch(BROKEN_STATEMENTS, PROBLEMS_MAX):
            result.problems.append({"check": "statements", "detail": row["detail"]})
        for row in await connection.fetch(BROKEN_LOTS, PROBLEMS_MAX):
            result.problems.append({"check": "lots", "detail": row["detail"]})
        if deep:
            # Reading every entry takes longer than any request's statement timeout allows.
            await connection.execute(DEEP_TIMEOUT)
            for row in await connection.fetch(BROKEN_CHAINS, PROBLEMS_MAX):
                problem = {"check": "chain", "account_id": str(row["account_id"]), "detail": row["detail"]}
                if row["slot"] is not None:
                    problem["slot"] = row["slot"]
                result.problems.append(problem)
    del result.problems[PROBLEMS_MAX:]
    return result
