-- Rows that ledger rows name are never deleted. The ledger's tables carry no foreign keys to
-- assets, accounts or API keys (each would take a KEY SHARE lock on a row that every posting
-- shares); these triggers keep what the keys guaranteed: a row that a transaction, entry or
-- idempotency key names stays there. Revoke an API key instead of deleting it. `verify` checks
-- the references too.

CREATE FUNCTION ledger.refuse_delete() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'rows of % are never deleted: the ledger refers to them', TG_TABLE_NAME
        USING ERRCODE = 'restrict_violation';
END
$$;

CREATE TRIGGER asset_refuse_delete BEFORE DELETE OR TRUNCATE ON asset
    FOR EACH STATEMENT EXECUTE FUNCTION ledger.refuse_delete();
CREATE TRIGGER account_refuse_delete BEFORE DELETE OR TRUNCATE ON account
    FOR EACH STATEMENT EXECUTE FUNCTION ledger.refuse_delete();
CREATE TRIGGER account_slot_refuse_delete BEFORE DELETE OR TRUNCATE ON account_slot
    FOR EACH STATEMENT EXECUTE FUNCTION ledger.refuse_delete();
CREATE TRIGGER api_key_refuse_delete BEFORE DELETE OR TRUNCATE ON api_key
    FOR EACH STATEMENT EXECUTE FUNCTION ledger.refuse_delete();

-- Every change of an API key tells the serving processes, which drop the keys they keep in
-- memory (src/wallet/api/auth.py): a revocation takes effect as soon as they hear it.
CREATE FUNCTION ledger.api_key_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('wallet_api_key', TG_OP);
    RETURN NULL;
END
$$;

CREATE TRIGGER api_key_changed AFTER INSERT OR UPDATE OR DELETE ON api_key
    FOR EACH STATEMENT EXECUTE FUNCTION ledger.api_key_changed();
