"""The general posting core: n-posting transactions, entries keyed by transaction, per-account
entry sequences, idempotency rows that reference their transaction instead of copying it, and
no foreign keys to shared hot rows.

- The v1 functions (`ledger_post` and its helpers) go; the ledger's functions now live in the
  schema `ledger`, re-created from src/wallet/ledger/sql/ by every `wallet db migrate`.
- Foreign keys from transaction, entry and idempotency_key are dropped: each new row took a KEY
  SHARE lock on the asset, API key and system account rows it named, which every posting shares
  (multixacts under concurrency). What they guaranteed now holds by other means: the posting core
  only writes rows naming accounts it has just read or locked, asset, account and api_key rows
  can never be deleted (triggers in ledger/sql/guards.sql), and `verify` checks every reference.
- entry: keyed by (transaction_id, entry_index); `account_sequence` numbers the entries of each
  account (of each slot, for system accounts) 1, 2, 3 ...; `created_at` is the time the entry
  took effect, never earlier than the account's previous entry. One partial index over wallet
  entries serves history pages, balance at a time and statements.
- transaction: type `journal`; `metadata` is `json` (the canonical text the service rendered,
  kept byte for byte); `amount` of a journal is the sum of its postings.
- idempotency_key: a success keeps only its `transaction_id` (the response is rendered again
  from the immutable transaction), a decline its code and detail. v1 rows keep their stored body.
- Single-column rules become domains. PostgreSQL reads every CHECK constraint of a table back
  from its stored text and prepares it again in each statement that writes the table, which for a
  one-row posting costs more than the row itself; a domain's check is prepared from its cached
  form. The rules that span columns stay CHECK constraints, one per table.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-30
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

UPGRADE = r"""
DROP FUNCTION ledger_post, ledger_move_system, ledger_problem_document,
    ledger_transaction_document, ledger_json, ledger_timestamp;

CREATE DOMAIN ledger_amount AS bigint                -- one posting, in the smallest unit
    CONSTRAINT ledger_amount_range_check CHECK (VALUE BETWEEN 1 AND 1000000000000000);
CREATE DOMAIN ledger_transaction_amount AS bigint    -- the sum of at most 64 postings
    CONSTRAINT ledger_transaction_amount_range_check CHECK (VALUE BETWEEN 1 AND 64000000000000000);
CREATE DOMAIN ledger_balance AS bigint               -- a wallet: never negative
    CONSTRAINT ledger_balance_range_check CHECK (VALUE BETWEEN 0 AND 9000000000000000000);
CREATE DOMAIN ledger_slot_balance AS bigint          -- a slot of a system account
    CONSTRAINT ledger_slot_balance_range_check
        CHECK (VALUE BETWEEN -9000000000000000000 AND 9000000000000000000);
CREATE DOMAIN ledger_count AS bigint
    CONSTRAINT ledger_count_nonnegative_check CHECK (VALUE >= 0);
CREATE DOMAIN ledger_sequence AS bigint
    CONSTRAINT ledger_sequence_positive_check CHECK (VALUE >= 1);
CREATE DOMAIN ledger_entry_index AS smallint         -- two entries per posting
    CONSTRAINT ledger_entry_index_range_check CHECK (VALUE BETWEEN 0 AND 127);
CREATE DOMAIN ledger_slot_number AS smallint
    CONSTRAINT ledger_slot_number_range_check CHECK (VALUE BETWEEN 0 AND 255);
CREATE DOMAIN ledger_direction AS text
    CONSTRAINT ledger_direction_check CHECK (VALUE IN ('debit', 'credit'));
CREATE DOMAIN ledger_transaction_type AS text
    CONSTRAINT ledger_transaction_type_check
        CHECK (VALUE IN ('topup', 'bonus', 'spend', 'transfer', 'journal'));
CREATE DOMAIN ledger_account_kind AS text
    CONSTRAINT ledger_account_kind_check CHECK (VALUE IN ('user', 'treasury', 'bonus', 'revenue'));
CREATE DOMAIN ledger_owner_id AS text
    CONSTRAINT ledger_owner_id_length_check CHECK (char_length(VALUE) BETWEEN 1 AND 128);
CREATE DOMAIN ledger_reference AS text
    CONSTRAINT ledger_reference_length_check CHECK (char_length(VALUE) BETWEEN 1 AND 128);
CREATE DOMAIN ledger_metadata AS json
    CONSTRAINT ledger_metadata_object_check CHECK (json_typeof(VALUE) = 'object');
CREATE DOMAIN idempotency_key_text AS text
    CONSTRAINT idempotency_key_text_length_check CHECK (octet_length(VALUE) BETWEEN 1 AND 255);
CREATE DOMAIN sha256_digest AS bytea
    CONSTRAINT sha256_digest_length_check CHECK (octet_length(VALUE) = 32);

ALTER TABLE account
    DROP CONSTRAINT account_kind_check,
    DROP CONSTRAINT account_owner_check,
    DROP CONSTRAINT account_owner_id_length_check,
    DROP CONSTRAINT account_user_balance_nonnegative_check,
    DROP CONSTRAINT account_balance_max_check,
    DROP CONSTRAINT account_system_balance_in_slots_check,
    DROP CONSTRAINT account_asset_fkey;
ALTER TABLE account
    ALTER COLUMN kind TYPE ledger_account_kind,
    ALTER COLUMN owner_id TYPE ledger_owner_id,
    ALTER COLUMN balance TYPE ledger_balance,
    ADD COLUMN entry_count ledger_count NOT NULL DEFAULT 0,
    -- A wallet has an owner; a system account has none and keeps its balance in its slots.
    ADD CONSTRAINT account_kind_shape_check
        CHECK ((kind = 'user') = (owner_id IS NOT NULL) AND (kind = 'user' OR balance = 0));

ALTER TABLE transaction
    DROP CONSTRAINT transaction_asset_fkey,
    DROP CONSTRAINT transaction_wallet_fkey,
    DROP CONSTRAINT transaction_api_key_fkey,
    DROP CONSTRAINT transaction_type_check,
    DROP CONSTRAINT transaction_amount_range_check,
    DROP CONSTRAINT transaction_reference_length_check,
    DROP CONSTRAINT transaction_metadata_object_check;
ALTER TABLE transaction
    ALTER COLUMN type TYPE ledger_transaction_type,
    ALTER COLUMN amount TYPE ledger_transaction_amount,
    ALTER COLUMN reference TYPE ledger_reference,
    ALTER COLUMN metadata TYPE ledger_metadata USING metadata::text::json;

ALTER TABLE idempotency_key
    DROP CONSTRAINT idempotency_key_api_key_fkey,
    DROP CONSTRAINT idempotency_key_transaction_fkey,
    DROP CONSTRAINT idempotency_key_length_check,
    DROP CONSTRAINT idempotency_key_fingerprint_length_check,
    DROP CONSTRAINT idempotency_key_response_check;
ALTER TABLE idempotency_key
    ALTER COLUMN key TYPE idempotency_key_text,
    ALTER COLUMN fingerprint TYPE sha256_digest,
    ADD COLUMN decline_code text,
    ADD COLUMN decline_detail text,
    -- A key's outcome: its transaction, or its decline, or (rows made before 0002) its response.
    ADD CONSTRAINT idempotency_key_outcome_check CHECK (
        num_nonnulls(transaction_id, decline_code, response_body) >= 1
        AND (decline_code IS NULL) = (decline_detail IS NULL)
        AND (status IS NULL) = (response_body IS NULL)
    );

ALTER TABLE account_slot
    DROP CONSTRAINT account_slot_account_fkey,
    DROP CONSTRAINT account_slot_range_check;
ALTER TABLE account_slot
    ALTER COLUMN slot TYPE ledger_slot_number,
    ALTER COLUMN balance TYPE ledger_slot_balance,
    ADD COLUMN entry_count ledger_count NOT NULL DEFAULT 0;

CREATE TABLE entry_v2 (
    transaction_id uuid NOT NULL,
    entry_index ledger_entry_index NOT NULL,
    account_id uuid NOT NULL,
    direction ledger_direction NOT NULL,
    amount ledger_amount NOT NULL,
    balance_after ledger_balance,
    slot ledger_slot_number,
    account_sequence ledger_sequence NOT NULL,
    created_at timestamptz NOT NULL
);
INSERT INTO entry_v2
SELECT e.transaction_id,
    (row_number() OVER (PARTITION BY e.transaction_id ORDER BY e.id) - 1)::smallint,
    e.account_id, e.direction, e.amount, e.balance_after, e.slot,
    row_number() OVER (PARTITION BY e.account_id, e.slot ORDER BY e.id),
    max(t.created_at) OVER (PARTITION BY e.account_id, e.slot ORDER BY e.id)
FROM entry e JOIN transaction t ON t.id = e.transaction_id;
DROP TABLE entry;
ALTER TABLE entry_v2 RENAME TO entry;
ALTER TABLE entry
    ADD CONSTRAINT entry_pkey PRIMARY KEY (transaction_id, entry_index),
    -- A wallet's entry records the wallet's balance after it, a system account's its slot.
    ADD CONSTRAINT entry_balance_or_slot_check CHECK ((balance_after IS NULL) <> (slot IS NULL));
-- Wallet entries only: history pages (newest first), balance at a time, statements.
CREATE INDEX entry_wallet_index ON entry (account_id, created_at, account_sequence)
    WHERE balance_after IS NOT NULL;

UPDATE account a SET entry_count = c.entries
FROM (SELECT account_id, count(*) AS entries FROM entry WHERE slot IS NULL GROUP BY account_id) c
WHERE a.id = c.account_id;
UPDATE account_slot s SET entry_count = c.entries
FROM (
    SELECT account_id, slot, count(*) AS entries FROM entry WHERE slot IS NOT NULL
    GROUP BY account_id, slot
) c
WHERE s.account_id = c.account_id AND s.slot = c.slot;
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    raise NotImplementedError("0002 rewrites the entry table; restore a backup to go back to 0001")
