"""Events: an outbox written with every posted transaction and every change of a hold's status,
and the positions that put it in commit order.

- event: one row per posted transaction (`transaction.posted`, its id the transaction's) and per
  change of a hold's status (`hold.created`, `hold.captured`, `hold.voided`, `hold.expired`),
  written in the same database transaction, with that transaction's id (`xid`) and its order
  among that transaction's events (`ordinal`). What an event
  shows (the Transaction, the Hold) is rendered from those rows when it is read.
- event_position: the event's position in the feed, given after its transaction has committed
  by the sequencer (ledger.sequence_events, one at a time), so positions follow commit order: a
  position is never given to an event that commits later than an event with a higher one.
- event_sequencer: the last position given, and the snapshot horizon below which every
  transaction's events have a position; `kept_since`: events before it were purged (verify
  checks one `transaction.posted` per transaction from then on). Events start with this
  migration: transactions posted before it have none.
- event_relay: how far each relay has published (per JetStream stream), moved only after the
  stream acknowledged.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-30
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

UPGRADE = r"""
CREATE DOMAIN ledger_event_type AS text
    CONSTRAINT ledger_event_type_check CHECK (VALUE IN
        ('transaction.posted', 'hold.created', 'hold.captured', 'hold.voided', 'hold.expired'));

-- The order of a database transaction's events (from its own backend's cache of values: they
-- rise within a transaction, which is all the feed needs of them).
CREATE SEQUENCE event_ordinal_seq CACHE 100;
CREATE TABLE event (
    id uuid PRIMARY KEY,
    type ledger_event_type NOT NULL,
    subject_id uuid NOT NULL,           -- the transaction, or the hold
    created_at timestamptz NOT NULL,
    xid xid8 NOT NULL,                  -- the database transaction that wrote it
    ordinal bigint NOT NULL DEFAULT nextval('event_ordinal_seq')
);
-- The sequencer's candidates: the events of transactions at or above its horizon.
CREATE INDEX event_xid_index ON event (xid);
CREATE INDEX event_created_at_index ON event (created_at);

CREATE TABLE event_position (
    position bigint PRIMARY KEY,
    event_id uuid NOT NULL,
    CONSTRAINT event_position_event_unique UNIQUE (event_id)
);

CREATE TABLE event_sequencer (
    singleton boolean PRIMARY KEY DEFAULT true CONSTRAINT event_sequencer_singleton_check CHECK (singleton),
    last_position bigint NOT NULL DEFAULT 0,
    horizon xid8 NOT NULL DEFAULT '0',
    kept_since timestamptz NOT NULL DEFAULT now()
);
INSERT INTO event_sequencer DEFAULT VALUES;

CREATE TABLE event_relay (
    stream text PRIMARY KEY,
    position bigint NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now()
);
"""

DOWNGRADE = r"""
DROP TABLE event_relay;
DROP TABLE event_sequencer;
DROP TABLE event_position;
DROP TABLE event;
DROP SEQUENCE event_ordinal_seq;
DROP DOMAIN ledger_event_type;
"""


def upgrade() -> None:
    op.execute(UPGRADE)


def downgrade() -> None:
    op.execute(DOWNGRADE)
