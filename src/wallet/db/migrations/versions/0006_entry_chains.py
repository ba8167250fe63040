"""A hash chain per account: every entry's `hash` is SHA-256 of the hash of the entry before it
in its chain and the entry's own content; the account keeps the hash of its last entry.

- A chain per wallet, and per slot of a system account (each slot numbers its entries itself).
  The first entry of a chain follows 32 zero bytes.
- The content (ledger.entry_content, ledger/sql/chains.sql): transaction id, account id,
  direction, amount, balance after (none for a slot), asset, slot (none for a wallet), the
  entry's number in its chain and its time in microseconds since 1970, as text joined by '|'.
- account.ledger_head, account_slot.head: the hash of the chain's last entry.

Chains of the entries that exist are computed here, in one statement per table: a window
aggregate folds each chain in account_sequence order.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-30
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

UPGRADE = r"""
ALTER TABLE entry ADD COLUMN hash bytea;
ALTER TABLE account ADD COLUMN ledger_head sha256_digest NOT NULL DEFAULT decode(repeat('00', 32), 'hex');
ALTER TABLE account_slot ADD COLUMN head sha256_digest NOT NULL DEFAULT decode(repeat('00', 32), 'hex');

-- What the chains are built from, as ledger/sql/chains.sql defines it (the code's schema is
-- installed after the migrations).
CREATE FUNCTION pg_temp.entry_content(transaction_id uuid, account_id uuid, direction text, amount bigint,
    balance_after bigint, asset text, slot smallint, account_sequence bigint, created_at timestamptz)
RETURNS bytea LANGUAGE sql IMMUTABLE AS $$
    SELECT convert_to(transaction_id::text || '|' || account_id::text || '|' || direction || '|'
        || amount::text || '|' || coalesce(balance_after::text, '') || '|' || asset || '|'
        || coalesce(slot::text, '') || '|' || account_sequence::text || '|'
        || (extract(epoch FROM created_at - '1970-01-01 00:00:00+00'::timestamptz) * 1000000)::bigint::text,
        'UTF8')
$$;
CREATE FUNCTION pg_temp.chain_step(previous bytea, content bytea) RETURNS bytea
LANGUAGE sql IMMUTABLE AS $$ SELECT sha256(coalesce(previous, decode(repeat('00', 32), 'hex')) || content) $$;
CREATE AGGREGATE pg_temp.chain(bytea) (SFUNC = pg_temp.chain_step, STYPE = bytea);

CREATE TEMP TABLE chained ON COMMIT DROP AS
SELECT e.transaction_id, e.entry_index, e.account_id, e.slot, e.account_sequence,
    pg_temp.chain(pg_temp.entry_content(e.transaction_id, e.account_id, e.direction, e.amount,
        e.balance_after, a.asset, e.slot, e.account_sequence, e.created_at))
        OVER (PARTITION BY e.account_id, e.slot ORDER BY e.account_sequence) AS hash
FROM entry e JOIN account a ON a.id = e.account_id;

UPDATE entry e SET hash = c.hash
FROM chained c WHERE e.transaction_id = c.transaction_id AND e.entry_index = c.entry_index;
UPDATE account a SET ledger_head = c.hash
FROM (SELECT DISTINCT ON (account_id) account_id, hash FROM chained WHERE slot IS NULL
      ORDER BY account_id, account_sequence DESC) c
WHERE a.id = c.account_id;
UPDATE account_slot s SET head = c.hash
FROM (SELECT DISTINCT ON (account_id, slot) account_id, slot, hash FROM chained WHERE slot IS NOT NULL
      ORDER BY account_id, slot, account_sequence DESC) c
WHERE s.account_id = c.account_id AND s.slot = c.slot;

ALTER TABLE entry ALTER COLUMN hash TYPE sha256_digest, ALTER COLUMN hash SET NOT NULL;
"""

DOWNGRADE = r"""
ALTER TABLE account_slot DROP COLUMN head;
ALTER TABLE account DROP COLUMN ledger_head;
ALTER TABLE entry DROP COLUMN hash;
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
