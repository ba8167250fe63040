-- Hash chains: each account's entries (each slot's, for a system account) form a chain: an
-- entry's hash is SHA-256 of the hash before it in the chain (32 zero bytes for the first) and
-- of the entry's content. The account (the slot) keeps the hash of its last entry: its head. An
-- entry changed, removed, added or moved behind the service's back breaks the chain from there
-- on, which `verify --deep` finds (ledger/verify.py). Migration 0006 has the same definitions.

-- The content an entry's hash covers: its transaction, account, direction, amount, balance after
-- (none for a slot), asset, slot (none for a wallet), its number in its chain and its time in
-- microseconds since 1970, as text joined by '|'. STABLE, not IMMUTABLE: convert_to is STABLE,
-- and a function that claims more than it calls is not inlined (before PostgreSQL 18 it is then
-- planned again in every transaction).
CREATE FUNCTION ledger.entry_content(transaction_id uuid, account_id uuid, direction text, amount bigint,
    balance_after bigint, asset text, slot smallint, account_sequence bigint, created_at timestamptz)
RETURNS bytea
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT convert_to(transaction_id::text || '|' || account_id::text || '|' || direction || '|'
        || amount::text || '|' || coalesce(balance_after::text, '') || '|' || asset || '|'
        || coalesce(slot::text, '') || '|' || account_sequence::text || '|'
        || (extract(epoch FROM created_at - '1970-01-01 00:00:00+00'::timestamptz) * 1000000)::bigint::text,
        'UTF8')
$$;

-- The hash of an entry that follows `previous` in its chain.
CREATE FUNCTION ledger.entry_hash(previous bytea, transaction_id uuid, account_id uuid, direction text,
    amount bigint, balance_after bigint, asset text, slot smallint, account_sequence bigint,
    created_at timestamptz)
RETURNS bytea
LANGUAGE sql STABLE PARALLEL SAFE AS $$
    SELECT sha256(previous || ledger.entry_content(transaction_id, account_id, direction, amount,
        balance_after, asset, slot, account_sequence, created_at))
$$;

-- Where every chain begins.
CREATE FUNCTION ledger.chain_genesis() RETURNS bytea
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT decode(repeat('00', 32), 'hex')
$$;
