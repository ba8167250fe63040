-- The ledger's limits, named once for SQL. src/wallet/ledger/limits.py holds the same values for
-- Python; tests/ledger/test_limits.py checks that both, and the CHECK constraints of the schema,
-- agree.

-- The largest amount of one posting: 10^15 units of the asset's smallest unit.
CREATE FUNCTION ledger.amount_max() RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT 1000000000000000::bigint $$;

-- No stored balance (a wallet, or a system account's slot) leaves [-balance_max, balance_max];
-- a wallet never goes below 0.
CREATE FUNCTION ledger.balance_max() RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT 9000000000000000000::bigint $$;

-- Postings in one transaction (a journal); its amount is at most postings_max * amount_max.
CREATE FUNCTION ledger.postings_max() RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT 64 $$;

-- Slots per system account, numbered 0 .. slot_count - 1 (ledger.take_slot picks among them).
CREATE FUNCTION ledger.slot_count() RETURNS integer
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$ SELECT 32 $$;
