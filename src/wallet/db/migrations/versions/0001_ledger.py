"""The ledger: assets, accounts and their slots, transactions, entries, API keys, idempotency keys.

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

SCHEMA = r"""
CREATE TABLE asset (
    code text PRIMARY KEY,
    name text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT asset_code_format_check CHECK (code ~ '^[A-Z][A-Z0-9_]{1,15}$'),
    CONSTRAINT asset_name_length_check CHECK (char_length(name) BETWEEN 1 AND 128)
);

-- User wallets and the per-asset system accounts (treasury, bonus, revenue) in one table.
-- A user wallet keeps its balance in `balance`. A system account keeps `balance` at 0 and
-- spreads its balance over `account_slot` rows, so unrelated postings never queue on one row.
-- An account's stored balance is therefore `balance + sum(account_slot.balance)`.
CREATE TABLE account (
    id uuid PRIMARY KEY,
    asset text NOT NULL,
    kind text NOT NULL,
    owner_id text,
    balance bigint NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT account_asset_fkey FOREIGN KEY (asset) REFERENCES asset (code),
    CONSTRAINT account_kind_check CHECK (kind IN ('user', 'treasury', 'bonus', 'revenue')),
    CONSTRAINT account_owner_check CHECK ((kind = 'user') = (owner_id IS NOT NULL)),
    CONSTRAINT account_owner_id_length_check CHECK (char_length(owner_id) BETWEEN 1 AND 128),
    CONSTRAINT account_user_balance_nonnegative_check CHECK (kind <> 'user' OR balance >= 0),
    CONSTRAINT account_balance_max_check CHECK (balance <= 9000000000000000000),
    CONSTRAINT account_system_balance_in_slots_check CHECK (kind = 'user' OR balance = 0),
    CONSTRAINT account_owner_asset_unique UNIQUE (owner_id, asset)
);
CREATE UNIQUE INDEX account_system_asset_kind_unique ON account (asset, kind) WHERE kind <> 'user';

CREATE TABLE account_slot (
    account_id uuid NOT NULL,
    slot smallint NOT NULL,
    balance bigint NOT NULL DEFAULT 0,
    CONSTRAINT account_slot_pkey PRIMARY KEY (account_id, slot),
    CONSTRAINT account_slot_account_fkey FOREIGN KEY (account_id) REFERENCES account (id),
    CONSTRAINT account_slot_range_check CHECK (slot >= 0 AND slot < 256)
);

CREATE TABLE api_key (
    id uuid PRIMARY KEY,
    name text NOT NULL,
    key_hash bytea NOT NULL,
    scopes text[] NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    revoked_at timestamptz,
    CONSTRAINT api_key_name_unique UNIQUE (name),
    CONSTRAINT api_key_hash_unique UNIQUE (key_hash),
    CONSTRAINT api_key_name_length_check CHECK (char_length(name) BETWEEN 1 AND 64),
    CONSTRAINT api_key_hash_length_check CHECK (octet_length(key_hash) = 32),
    CONSTRAINT api_key_scopes_check CHECK (
        cardinality(scopes) > 0 AND scopes <@ ARRAY['wallets:read', 'wallets:write', 'admin']
    )
);

CREATE TABLE transaction (
    id uuid PRIMARY KEY,
    type text NOT NULL,
    asset text NOT NULL,
    amount bigint NOT NULL,
    wallet_id uuid NOT NULL,
    reference text,
    metadata jsonb,
    api_key_id uuid NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT transaction_asset_fkey FOREIGN KEY (asset) REFERENCES asset (code),
    CONSTRAINT transaction_wallet_fkey FOREIGN KEY (wallet_id) REFERENCES account (id),
    CONSTRAINT transaction_api_key_fkey FOREIGN KEY (api_key_id) REFERENCES api_key (id),
    CONSTRAINT transaction_type_check CHECK (type IN ('topup', 'bonus', 'spend', 'transfer')),
    CONSTRAINT transaction_amount_range_check CHECK (amount BETWEEN 1 AND 1000000000000000),
    CONSTRAINT transaction_reference_length_check CHECK (char_length(reference) <= 128),
    CONSTRAINT transaction_metadata_object_check CHECK (
        metadata IS NULL OR jsonb_typeof(metadata) = 'object'
    )
);

-- One row per side of a transaction. A credit raises an account's balance, a debit lowers it.
-- User-wallet entries record the wallet's balance after the posting; system-account entries
-- record the slot they moved instead.
CREATE TABLE entry (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    transaction_id uuid NOT NULL,
    account_id uuid NOT NULL,
    direction text NOT NULL,
    amount bigint NOT NULL,
    balance_after bigint,
    slot smallint,
    CONSTRAINT entry_transaction_fkey FOREIGN KEY (transaction_id) REFERENCES transaction (id),
    CONSTRAINT entry_account_fkey FOREIGN KEY (account_id) REFERENCES account (id),
    CONSTRAINT entry_direction_check CHECK (direction IN ('debit', 'credit')),
    CONSTRAINT entry_amount_positive_check CHECK (amount > 0),
    CONSTRAINT entry_balance_after_nonnegative_check CHECK (balance_after >= 0),
    CONSTRAINT entry_balance_or_slot_check CHECK ((balance_after IS NULL) <> (slot IS NULL))
);
CREATE INDEX entry_account_id_index ON entry (account_id, id);
CREATE INDEX entry_transaction_id_index ON entry (transaction_id);

CREATE TABLE idempotency_key (
    api_key_id uuid NOT NULL,
    key text NOT NULL,
    fingerprint bytea NOT NULL,
    status smallint,
    response_body text,
    transaction_id uuid,
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT idempotency_key_pkey PRIMARY KEY (api_key_id, key),
    CONSTRAINT idempotency_key_api_key_fkey FOREIGN KEY (api_key_id) REFERENCES api_key (id),
    CONSTRAINT idempotency_key_transaction_fkey FOREIGN KEY (transaction_id)
        REFERENCES transaction (id),
    CONSTRAINT idempotency_key_length_check CHECK (octet_length(key) BETWEEN 1 AND 255),
    CONSTRAINT idempotency_key_fingerprint_length_check CHECK (octet_length(fingerprint) = 32),
    CONSTRAINT idempotency_key_response_check CHECK ((status IS NULL) = (response_body IS NULL))
);
CREATE INDEX idempotency_key_created_at_index ON idempotency_key (created_at);
"""

FUNCTIONS = r"""
-- RFC 3339 UTC with microseconds, the one timestamp format of every response.
CREATE FUNCTION ledger_timestamp(value timestamptz) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT to_char(value AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
$$;

-- A JSON value as compact text; SQL NULL becomes JSON null.
CREATE FUNCTION ledger_json(value anyelement) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT coalesce(to_json(value)::text, 'null')
$$;

-- The Transaction object of the API, rendered once as compact JSON, stored for replay and
-- served by every read, so all of them are byte-identical.
CREATE FUNCTION ledger_transaction_document(transaction_id uuid) RETURNS text
LANGUAGE sql STABLE AS $$
    SELECT format(
        '{"id":%s,"type":%s,"asset":%s,"amount":%s,"wallet_id":%s,"balance_after":%s,'
        '"reference":%s,"metadata":%s,"created_at":%s,"entries":[%s]}',
        ledger_json(t.id), ledger_json(t.type), ledger_json(t.asset), t.amount,
        ledger_json(t.wallet_id),
        ledger_json((
            SELECT e.balance_after FROM entry e
            WHERE e.transaction_id = t.id AND e.account_id = t.wallet_id
            ORDER BY e.id LIMIT 1
        )),
        ledger_json(t.reference), coalesce(t.metadata::text, 'null'),
        ledger_json(ledger_timestamp(t.created_at)),
        (
            SELECT string_agg(format(
                '{"account_id":%s,"account":%s,"direction":%s,"amount":%s,"balance_after":%s}',
                ledger_json(a.id),
                ledger_json(CASE WHEN a.kind = 'user' THEN a.id::text ELSE a.kind || ':' || a.asset END),
                ledger_json(e.direction), e.amount, ledger_json(e.balance_after)
            ), ',' ORDER BY e.id)
            FROM entry e JOIN account a ON a.id = e.account_id
            WHERE e.transaction_id = t.id
        )
    )
    FROM transaction t
    WHERE t.id = ledger_transaction_document.transaction_id
$$;

-- RFC 9457 problem document for the business declines that are stored for replay; the same
-- shape and titles as the service's other problem responses (api/problems.py).
CREATE FUNCTION ledger_problem_document(status integer, code text, detail text) RETURNS text
LANGUAGE sql IMMUTABLE AS $$
    SELECT format(
        '{"type":%s,"title":%s,"status":%s,"detail":%s,"code":%s}',
        ledger_json('urn:wallet:problem:' || code),
        ledger_json(CASE code
            WHEN 'insufficient_funds' THEN 'Insufficient funds'
            WHEN 'balance_limit_exceeded' THEN 'Balance limit exceeded'
            WHEN 'asset_mismatch' THEN 'Asset mismatch'
            WHEN 'wallet_not_found' THEN 'Wallet not found'
            WHEN 'idempotency_key_reused' THEN 'Idempotency key reused'
        END),
        status, ledger_json(detail), ledger_json(code)
    )
$$;

-- Moves `amount` from one side to the other on a system account of `asset`: picks a slot no
-- other transaction holds (SKIP LOCKED), so concurrent postings on one system account do not
-- queue behind each other; waits only when every slot is held.
CREATE FUNCTION ledger_move_system(
    system_account_id uuid, delta bigint, OUT slot smallint
) LANGUAGE plpgsql AS $$
DECLARE
    balance_limit constant bigint := 9000000000000000000;
    slot_first smallint := floor(random() * 32)::smallint;
BEGIN
    SELECT s.slot INTO slot FROM account_slot s
    WHERE s.account_id = system_account_id
      AND s.balance + delta BETWEEN -balance_limit AND balance_limit
    ORDER BY s.slot < slot_first, s.slot
    LIMIT 1 FOR UPDATE SKIP LOCKED;
    IF NOT FOUND THEN
        SELECT s.slot INTO slot FROM account_slot s
        WHERE s.account_id = system_account_id
          AND s.balance + delta BETWEEN -balance_limit AND balance_limit
        ORDER BY s.slot < slot_first, s.slot
        LIMIT 1 FOR UPDATE;
    END IF;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'system account % has no slot with room for %', system_account_id, delta
            USING ERRCODE = 'WL001';
    END IF;
    UPDATE account_slot s SET balance = s.balance + delta
    WHERE s.account_id = system_account_id AND s.slot = ledger_move_system.slot;
END
$$;

-- One money movement, in one statement: claim the idempotency key, lock and move the wallet
-- balance(s), post the balanced entries, store the response for replay.
--   kind     topup | bonus | spend | transfer
--   source   the debited user wallet (spend, transfer), else NULL
--   target   the credited user wallet (topup, bonus, transfer), else NULL
-- Returns the HTTP-independent outcome as (status, body, replayed); a business decline is a
-- stored problem document, a replay is the stored response of the first request.
CREATE FUNCTION ledger_post(
    api_key_id uuid, idempotency_key text, fingerprint bytea, transaction_id uuid,
    kind text, source_wallet_id uuid, target_wallet_id uuid, amount bigint,
    reference text, metadata jsonb,
    OUT status integer, OUT body text, OUT replayed boolean
) LANGUAGE plpgsql AS $$
DECLARE
    balance_limit constant bigint := 9000000000000000000;
    stored_fingerprint bytea;
    claimed integer;
    asset_code text;
    target_asset text;
    source_balance bigint;
    target_balance bigint;
    wallet record;
    system_kind text;
    system_account_id uuid;
    system_slot smallint;
BEGIN
    ASSERT amount BETWEEN 1 AND 1000000000000000, 'amount out of range';
    ASSERT kind IN ('topup', 'bonus', 'spend', 'transfer'), 'unknown kind';
    ASSERT (source_wallet_id IS NULL) = (kind IN ('topup', 'bonus')), 'source wallet mismatch';
    ASSERT (target_wallet_id IS NULL) = (kind = 'spend'), 'target wallet mismatch';

    INSERT INTO idempotency_key AS i (api_key_id, key, fingerprint)
    VALUES (ledger_post.api_key_id, ledger_post.idempotency_key, ledger_post.fingerprint)
    ON CONFLICT DO NOTHING;
    GET DIAGNOSTICS claimed = ROW_COUNT;
    IF claimed = 0 THEN
        SELECT i.fingerprint, i.status, i.response_body INTO stored_fingerprint, status, body
        FROM idempotency_key i
        WHERE i.api_key_id = ledger_post.api_key_id AND i.key = ledger_post.idempotency_key;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'idempotency key vanished while claiming it' USING ERRCODE = '40001';
        END IF;
        IF stored_fingerprint <> ledger_post.fingerprint THEN
            status := 422;
            body := ledger_problem_document(422, 'idempotency_key_reused',
                'This Idempotency-Key was used for a different request.');
            replayed := false;
        ELSE
            replayed := true;
        END IF;
        RETURN;
    END IF;
    replayed := false;

    IF kind = 'transfer' THEN
        FOR wallet IN
            SELECT a.id, a.asset, a.balance FROM account a
            WHERE a.id IN (source_wallet_id, target_wallet_id) AND a.kind = 'user'
            ORDER BY a.id FOR UPDATE
        LOOP
            IF wallet.id = source_wallet_id THEN
                asset_code := wallet.asset;
                source_balance := wallet.balance;
            ELSE
                target_asset := wallet.asset;
                target_balance := wallet.balance;
            END IF;
        END LOOP;
        IF source_balance IS NULL THEN
            status := 404;
            body := ledger_problem_document(404, 'wallet_not_found',
                format('Wallet %s does not exist.', source_wallet_id));
        ELSIF target_balance IS NULL THEN
            status := 404;
            body := ledger_problem_document(404, 'wallet_not_found',
                format('Wallet %s does not exist.', target_wallet_id));
        ELSIF asset_code <> target_asset THEN
            status := 422;
            body := ledger_problem_document(422, 'asset_mismatch',
                format('Cannot transfer %s to a %s wallet.', asset_code, target_asset));
        ELSIF source_balance < amount THEN
            status := 409;
            body := ledger_problem_document(409, 'insufficient_funds',
                format('Wallet %s holds %s, less than %s.', source_wallet_id, source_balance, amount));
        ELSIF target_balance > balance_limit - amount THEN
            status := 422;
            body := ledger_problem_document(422, 'balance_limit_exceeded',
                format('Wallet %s would exceed the balance limit.', target_wallet_id));
        ELSE
            UPDATE account a SET balance = a.balance - amount, updated_at = now()
            WHERE a.id = source_wallet_id RETURNING a.balance INTO source_balance;
            UPDATE account a SET balance = a.balance + amount, updated_at = now()
            WHERE a.id = target_wallet_id RETURNING a.balance INTO target_balance;
        END IF;
    ELSIF kind = 'spend' THEN
        UPDATE account a SET balance = a.balance - amount, updated_at = now()
        WHERE a.id = source_wallet_id AND a.kind = 'user' AND a.balance >= amount
        RETURNING a.asset, a.balance INTO asset_code, source_balance;
        IF NOT FOUND THEN
            SELECT a.asset, a.balance INTO asset_code, source_balance FROM account a
            WHERE a.id = source_wallet_id AND a.kind = 'user';
            IF NOT FOUND THEN
                status := 404;
                body := ledger_problem_document(404, 'wallet_not_found',
                    format('Wallet %s does not exist.', source_wallet_id));
            ELSE
                status := 409;
                body := ledger_problem_document(409, 'insufficient_funds',
                    format('Wallet %s holds %s, less than %s.', source_wallet_id, source_balance, amount));
            END IF;
        END IF;
        system_kind := 'revenue';
    ELSE
        UPDATE account a SET balance = a.balance + amount, updated_at = now()
        WHERE a.id = target_wallet_id AND a.kind = 'user' AND a.balance <= balance_limit - amount
        RETURNING a.asset, a.balance INTO asset_code, target_balance;
        IF NOT FOUND THEN
            PERFORM FROM account a WHERE a.id = target_wallet_id AND a.kind = 'user';
            IF NOT FOUND THEN
                status := 404;
                body := ledger_problem_document(404, 'wallet_not_found',
                    format('Wallet %s does not exist.', target_wallet_id));
            ELSE
                status := 422;
                body := ledger_problem_document(422, 'balance_limit_exceeded',
                    format('Wallet %s would exceed the balance limit.', target_wallet_id));
            END IF;
        END IF;
        system_kind := CASE kind WHEN 'topup' THEN 'treasury' ELSE 'bonus' END;
    END IF;

    IF status IS NULL THEN
        IF system_kind IS NOT NULL THEN
            SELECT a.id INTO STRICT system_account_id FROM account a
            WHERE a.asset = asset_code AND a.kind = system_kind;
            system_slot := ledger_move_system(
                system_account_id, CASE WHEN kind = 'spend' THEN amount ELSE -amount END);
        END IF;

        INSERT INTO transaction AS t (id, type, asset, amount, wallet_id, reference, metadata, api_key_id)
        VALUES (ledger_post.transaction_id, kind, asset_code, amount,
                coalesce(source_wallet_id, target_wallet_id), reference, metadata,
                ledger_post.api_key_id);
        INSERT INTO entry (transaction_id, account_id, direction, amount, balance_after, slot)
        VALUES
            (ledger_post.transaction_id, coalesce(source_wallet_id, system_account_id), 'debit',
             amount, source_balance, CASE WHEN source_wallet_id IS NULL THEN system_slot END),
            (ledger_post.transaction_id, coalesce(target_wallet_id, system_account_id), 'credit',
             amount, target_balance, CASE WHEN target_wallet_id IS NULL THEN system_slot END);
        status := 201;
        body := ledger_transaction_document(ledger_post.transaction_id);
    END IF;

    UPDATE idempotency_key i
    SET status = ledger_post.status, response_body = ledger_post.body,
        transaction_id = CASE WHEN ledger_post.status = 201 THEN ledger_post.transaction_id END
    WHERE i.api_key_id = ledger_post.api_key_id AND i.key = ledger_post.idempotency_key;
END
$$;
"""


def upgrade() -> None:
    op.execute(SCHEMA)
    op.execute(FUNCTIONS)


def downgrade() -> None:
    op.execute(
        """
        DROP FUNCTION ledger_post, ledger_move_system, ledger_problem_document,
            ledger_transaction_document, ledger_json, ledger_timestamp;
        DROP TABLE idempotency_key, entry, transaction, api_key, account_slot, account, asset;
        """
    )
