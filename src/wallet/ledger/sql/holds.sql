-- Holds: a reservation of part of a wallet's funds. A hold moves no money: it lowers what the
-- wallet has available (account.held) until it is captured (ledger.post, as a spend), voided,
-- or expires. Locks follow the posting core's order: the wallet, then its holds.

-- Marks the due holds of these wallets expired (pending, expires_at <= at), and tells per
-- wallet what that released and the soonest expiry of the pending holds left. The caller holds
-- the wallets' locks and writes account.held and account.hold_expires_at.
CREATE FUNCTION ledger.expire_holds(wallets uuid[], at timestamptz)
RETURNS TABLE (wallet_id uuid, released bigint, next_expiry timestamptz)
LANGUAGE sql AS $$
    WITH expired AS (
        UPDATE hold h SET status = 'expired', updated_at = at
        WHERE h.wallet_id = ANY(wallets) AND h.status = 'pending' AND h.expires_at <= at
        RETURNING h.wallet_id, h.amount
    ), released AS (
        SELECT e.wallet_id, sum(e.amount) AS amount FROM expired e GROUP BY e.wallet_id
    ), remaining AS (
        SELECT h.wallet_id, min(h.expires_at) AS next_expiry FROM hold h
        WHERE h.wallet_id = ANY(wallets) AND h.status = 'pending' AND h.expires_at > at
        GROUP BY h.wallet_id
    )
    SELECT w.id, coalesce(r.amount, 0)::bigint, m.next_expiry
    FROM unnest(wallets) AS w(id)
    LEFT JOIN released r ON r.wallet_id = w.id
    LEFT JOIN remaining m ON m.wallet_id = w.id
$$;

-- The outcome of a hold request's key claimed before: replayed (same request) or reused.
CREATE FUNCTION ledger.hold_replay(
    api_key_id uuid, idempotency_key text, fingerprint bytea,
    OUT state text, OUT code text, OUT detail text, OUT stored_status integer, OUT stored_hold_id uuid,
    OUT stored_body text
) LANGUAGE plpgsql AS $$
BEGIN
    -- As in ledger.post: a replay's commit waits for the synchronous standby too.
    PERFORM pg_current_xact_id();
    SELECT CASE WHEN k.fingerprint = hold_replay.fingerprint THEN 'replayed' ELSE 'reused' END,
        k.decline_code, k.decline_detail, k.status, k.hold_id, k.response_body
    INTO state, code, detail, stored_status, stored_hold_id, stored_body
    FROM idempotency_key k
    WHERE k.api_key_id = hold_replay.api_key_id AND k.key = hold_replay.idempotency_key;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'idempotency key vanished while claiming it' USING ERRCODE = 'serialization_failure';
    END IF;
    IF state = 'reused' THEN
        code := NULL; detail := NULL; stored_status := NULL; stored_hold_id := NULL; stored_body := NULL;
    END IF;
END
$$;

-- A stored decline of a hold request, in place of its claim.
CREATE FUNCTION ledger.hold_decline(api_key_id uuid, idempotency_key text, code text, detail text)
RETURNS void LANGUAGE sql AS $$
    UPDATE idempotency_key k
    SET hold_id = NULL, status = NULL, decline_code = hold_decline.code, decline_detail = hold_decline.detail
    WHERE k.api_key_id = hold_decline.api_key_id AND k.key = hold_decline.idempotency_key
$$;

-- Places a hold of `amount` on the wallet, when it has that much available, for
-- `expires_in_seconds`. state: placed | declined | replayed | reused.
CREATE FUNCTION ledger.place_hold(
    api_key_id uuid, idempotency_key text, fingerprint bytea, hold_id uuid, wallet_id uuid,
    amount bigint, expires_in_seconds integer, reference text, metadata text,
    OUT state text, OUT code text, OUT detail text, OUT stored_status integer, OUT stored_hold_id uuid,
    OUT stored_body text
) LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    wallet record;
    at timestamptz;
    released bigint;
    next_expiry timestamptz;
BEGIN
    INSERT INTO idempotency_key AS k (api_key_id, key, fingerprint, hold_id, status)
    VALUES (place_hold.api_key_id, place_hold.idempotency_key, place_hold.fingerprint, place_hold.hold_id, 201)
    ON CONFLICT DO NOTHING;
    IF NOT FOUND THEN
        SELECT * INTO state, code, detail, stored_status, stored_hold_id, stored_body
        FROM ledger.hold_replay(place_hold.api_key_id, place_hold.idempotency_key, place_hold.fingerprint);
        RETURN;
    END IF;

    SELECT a.asset, a.balance, a.held, a.hold_expires_at, a.updated_at INTO wallet
    FROM account a WHERE a.id = place_hold.wallet_id AND a.kind = 'user'
    FOR UPDATE;
    IF NOT FOUND THEN
        state := 'declined';
        code := 'wallet_not_found';
        detail := format('Wallet %s does not exist.', place_hold.wallet_id);
        PERFORM ledger.hold_decline(place_hold.api_key_id, place_hold.idempotency_key, code, detail);
        RETURN;
    END IF;
    at := greatest(clock_timestamp(), wallet.updated_at);
    IF wallet.hold_expires_at <= at THEN
        SELECT e.released, e.next_expiry INTO released, next_expiry
        FROM ledger.expire_holds(ARRAY[place_hold.wallet_id], at) e;
        wallet.held := wallet.held - released;
        wallet.hold_expires_at := next_expiry;
    END IF;
    IF wallet.balance - wallet.held < amount THEN
        state := 'declined';
        code := 'insufficient_funds';
        detail := format('Wallet %s has %s available, less than %s.',
            place_hold.wallet_id, wallet.balance - wallet.held, amount);
        PERFORM ledger.hold_decline(place_hold.api_key_id, place_hold.idempotency_key, code, detail);
        -- Holds marked expired above stay so: the wallet's sums follow them.
        UPDATE account a SET held = wallet.held, hold_expires_at = wallet.hold_expires_at
        WHERE a.id = place_hold.wallet_id;
        RETURN;
    END IF;
    INSERT INTO hold (id, wallet_id, asset, amount, expires_at, reference, metadata, api_key_id,
        created_at, updated_at)
    VALUES (place_hold.hold_id, place_hold.wallet_id, wallet.asset, amount,
        at + make_interval(secs => expires_in_seconds), reference, metadata::json,
        place_hold.api_key_id, at, at);
    UPDATE account a
    SET held = wallet.held + amount,
        hold_expires_at = least(wallet.hold_expires_at, at + make_interval(secs => expires_in_seconds))
    WHERE a.id = place_hold.wallet_id;
    state := 'placed';
END
$$;

-- Voids a pending hold: what it held is available again. `wallet_id` is the hold's wallet (read
-- before, to lock the wallet first); NULL when there is no such hold.
-- state: voided | declined | replayed | reused.
CREATE FUNCTION ledger.void_hold(
    api_key_id uuid, idempotency_key text, fingerprint bytea, hold_id uuid, wallet_id uuid,
    OUT state text, OUT code text, OUT detail text, OUT stored_status integer, OUT stored_hold_id uuid,
    OUT stored_body text
) LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    wallet record;
    hold_status text;
    hold_amount bigint;
    at timestamptz;
    released bigint;
    next_expiry timestamptz;
BEGIN
    INSERT INTO idempotency_key AS k (api_key_id, key, fingerprint, hold_id, status)
    VALUES (void_hold.api_key_id, void_hold.idempotency_key, void_hold.fingerprint, void_hold.hold_id, 200)
    ON CONFLICT DO NOTHING;
    IF NOT FOUND THEN
        SELECT * INTO state, code, detail, stored_status, stored_hold_id, stored_body
        FROM ledger.hold_replay(void_hold.api_key_id, void_hold.idempotency_key, void_hold.fingerprint);
        RETURN;
    END IF;
    IF wallet_id IS NOT NULL THEN
        SELECT a.held, a.hold_expires_at, a.updated_at INTO wallet
        FROM account a WHERE a.id = void_hold.wallet_id AND a.kind = 'user'
        FOR UPDATE;
        SELECT h.status, h.amount INTO hold_status, hold_amount
        FROM hold h WHERE h.id = void_hold.hold_id AND h.wallet_id = void_hold.wallet_id
        FOR UPDATE;
    END IF;
    IF hold_status IS NULL THEN
        state := 'declined';
        code := 'hold_not_found';
        detail := format('Hold %s does not exist.', void_hold.hold_id);
        PERFORM ledger.hold_decline(void_hold.api_key_id, void_hold.idempotency_key, code, detail);
        RETURN;
    END IF;
    at := greatest(clock_timestamp(), wallet.updated_at);
    IF wallet.hold_expires_at <= at THEN
        SELECT e.released, e.next_expiry INTO released, next_expiry
        FROM ledger.expire_holds(ARRAY[void_hold.wallet_id], at) e;
        wallet.held := wallet.held - released;
        wallet.hold_expires_at := next_expiry;
        SELECT h.status INTO hold_status FROM hold h WHERE h.id = void_hold.hold_id;
    END IF;
    IF hold_status <> 'pending' THEN
        state := 'declined';
        code := 'hold_not_pending';
        detail := format('Hold %s is %s.', void_hold.hold_id, hold_status);
        PERFORM ledger.hold_decline(void_hold.api_key_id, void_hold.idempotency_key, code, detail);
    ELSE
        UPDATE hold h SET status = 'voided', updated_at = at WHERE h.id = void_hold.hold_id;
        wallet.held := wallet.held - hold_amount;
        state := 'voided';
    END IF;
    UPDATE account a
    SET held = wallet.held,
        hold_expires_at = CASE WHEN wallet.held = 0 THEN NULL ELSE (
            SELECT min(h.expires_at) FROM hold h WHERE h.wallet_id = void_hold.wallet_id AND h.status = 'pending'
        ) END
    WHERE a.id = void_hold.wallet_id;
END
$$;
