-- The reference spend's tables: the least a durable, idempotent spend must write, made without
-- the service's schema or functions, so the benchmark can tell how far the service's own SQL is
-- from it. One wallet balance, a transaction, its two entries, and the idempotency key with the
-- response stored whole. Ids are time-ordered UUIDs, as the service's are.
CREATE TABLE reference_wallet (
    id bigint PRIMARY KEY,
    balance bigint NOT NULL CHECK (balance >= 0)
);
CREATE TABLE reference_transaction (
    id uuid PRIMARY KEY,
    wallet_id bigint NOT NULL,
    amount bigint NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE reference_entry (
    transaction_id uuid NOT NULL,
    side smallint NOT NULL,
    account bigint NOT NULL,
    amount bigint NOT NULL,
    balance_after bigint,
    PRIMARY KEY (transaction_id, side)
);
CREATE TABLE reference_idempotency (
    key text PRIMARY KEY,
    response text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
