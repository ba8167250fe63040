"""Holds (reserve now, capture or void later) and reversals.

- hold: one row per hold, its status pending, captured, voided or expired, and the capture's
  transaction. A pending hold past `expires_at` counts as expired at once (every read and every
  posting sees it so); the row itself is marked expired by the next posting of its wallet or by
  the sweeper.
- account.held: the sum of the wallet's pending holds (expired ones included until they are
  marked), and account.hold_expires_at the soonest expiry among them: when that is past, a
  posting of the wallet marks the due holds expired first. `available = balance - held`; every
  debit is checked against it, and `held <= balance` always (account_held_within_balance_check).
- transaction.reverses (the transaction a reversal mirrors) and transaction.hold_id (the hold
  a capture took), both shown in every Transaction object; types `reversal`.
- idempotency_key.hold_id: a hold request's outcome is its hold, with the status it answered
  (201 placed, 200 voided); the response is rendered again from the hold as it was then (as
  placed: pending, nothing captured; as voided: its final state).

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-30
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

UPGRADE = r"""
ALTER DOMAIN ledger_transaction_type DROP CONSTRAINT ledger_transaction_type_check;
ALTER DOMAIN ledger_transaction_type ADD CONSTRAINT ledger_transaction_type_check
    CHECK (VALUE IN ('topup', 'bonus', 'spend', 'transfer', 'journal', 'reversal'));

CREATE DOMAIN ledger_hold_status AS text
    CONSTRAINT ledger_hold_status_check CHECK (VALUE IN ('pending', 'captured', 'voided', 'expired'));

ALTER TABLE transaction
    ADD COLUMN reverses uuid,
    ADD COLUMN hold_id uuid;
-- The reversals of a transaction, to sum what is left to reverse.
CREATE INDEX transaction_reverses_index ON transaction (reverses) WHERE reverses IS NOT NULL;

ALTER TABLE account
    ADD COLUMN held ledger_count NOT NULL DEFAULT 0,
    ADD COLUMN hold_expires_at timestamptz;
ALTER TABLE account DROP CONSTRAINT account_kind_shape_check;
ALTER TABLE account ADD CONSTRAINT account_kind_shape_check CHECK (
    (kind = 'user') = (owner_id IS NOT NULL)
    AND (kind = 'user' OR (balance = 0 AND held = 0))
    AND held <= balance
    AND (held = 0) = (hold_expires_at IS NULL)
);

ALTER TABLE idempotency_key DROP CONSTRAINT idempotency_key_outcome_check;
ALTER TABLE idempotency_key
    ADD COLUMN hold_id uuid,
    ADD CONSTRAINT idempotency_key_outcome_check CHECK (
        num_nonnulls(transaction_id, decline_code, response_body, hold_id) >= 1
        AND num_nonnulls(transaction_id, decline_code, hold_id) <= 1
        AND (decline_code IS NULL) = (decline_detail IS NULL)
        AND (response_body IS NULL OR status IS NOT NULL)
        AND (hold_id IS NULL OR status IN (200, 201))
    );

CREATE TABLE hold (
    id uuid PRIMARY KEY,
    wallet_id uuid NOT NULL,
    asset text NOT NULL,
    amount ledger_amount NOT NULL,
    captured_amount bigint NOT NULL DEFAULT 0,
    status ledger_hold_status NOT NULL DEFAULT 'pending',
    expires_at timestamptz NOT NULL,
    reference ledger_reference,
    metadata ledger_metadata,
    transaction_id uuid,
    api_key_id uuid NOT NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    CONSTRAINT hold_shape_check CHECK (
        captured_amount BETWEEN 0 AND amount
        AND (status = 'captured') = (transaction_id IS NOT NULL)
        AND (status = 'captured') = (captured_amount > 0)
        AND expires_at > created_at
    )
);
-- A wallet's holds, newest first (GET /v1/wallets/{id}/holds); a wallet's pending holds by
-- expiry (what it holds now, what expires next); all pending holds by expiry (the sweeper).
CREATE INDEX hold_wallet_index ON hold (wallet_id, created_at, id);
CREATE INDEX hold_wallet_pending_index ON hold (wallet_id, expires_at) WHERE status = 'pending';
CREATE INDEX hold_pending_expiry_index ON hold (expires_at) WHERE status = 'pending';
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(
        """
        DROP TABLE hold;
        ALTER TABLE idempotency_key DROP CONSTRAINT idempotency_key_outcome_check;
        ALTER TABLE idempotency_key DROP COLUMN hold_id;
        ALTER TABLE idempotency_key ADD CONSTRAINT idempotency_key_outcome_check CHECK (
            num_nonnulls(transaction_id, decline_code, response_body) >= 1
            AND (decline_code IS NULL) = (decline_detail IS NULL)
            AND (status IS NULL) = (response_body IS NULL)
        );
        ALTER TABLE account DROP CONSTRAINT account_kind_shape_check;
        ALTER TABLE account DROP COLUMN held, DROP COLUMN hold_expires_at;
        ALTER TABLE account ADD CONSTRAINT account_kind_shape_check
            CHECK ((kind = 'user') = (owner_id IS NOT NULL) AND (kind = 'user' OR balance = 0));
        DROP INDEX transaction_reverses_index;
        ALTER TABLE transaction DROP COLUMN reverses, DROP COLUMN hold_id;
        DROP DOMAIN ledger_hold_status;
        ALTER DOMAIN ledger_transaction_type DROP CONSTRAINT ledger_transaction_type_check;
        ALTER DOMAIN ledger_transaction_type ADD CONSTRAINT ledger_transaction_type_check
            CHECK (VALUE IN ('topup', 'bonus', 'spend', 'transfer', 'journal'));
        """
    )
