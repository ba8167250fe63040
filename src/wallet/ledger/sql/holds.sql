-- Holds: a reservation of part of a wallet's funds. A hold moves no money: it lowers what the
-- wallet has available (account.held) until it is captured (ledger.post, as a spend), voided,
-- or expires. Locks follow the posting core's order: the wallet, then its holds.

-- Marks the due holds of these wallets expired (pending, expires_at <= at) and gives the parts
-- of lots they took back to their lots; tells per wallet what that released, the soonest expiry
-- of the pending holds left, and the soonest expiry among the lots given to. The caller holds
-- the wallets' locks and writes lot_expires_at. account.held and hold_expires_at are written
-- here, at once: the lots' expiry that may follow in the same transaction lowers the balance,
-- which must never pass below a `held` that still counts the expired holds.
CREATE FUNCTION ledger.expire_holds(wallets uuid[], at timestamptz)
RETURNS TABLE (wallet_id uuid, released bigint, next_expiry timestamptz, lots_returned timestamptz)
LANGUAGE sql AS $$
    WITH expired AS (
        UPDATE hold h SET status = 'expired', updated_at = at
        WHERE h.wallet_id = ANY(wallets) AND h.status = 'pending' AND h.expires_at <= at
        RETURNING h.id, h.wallet_id, h.amount, h.lot_amount
    ), released AS (
        SELECT e.wallet_id, sum(e.amount) AS amount FROM expired e GROUP BY e.wallet_id
    ), remaining AS (
        SELECT h.wallet_id, min(h.expires_at) AS next_expiry FROM hold h
        WHERE h.wallet_id = ANY(wallets) AND h.status = 'pending' AND h.expires_at > at
        GROUP BY h.wallet_id
    ), events AS (
        INSERT INTO event (id, type, subject_id, created_at, xid)
        SELECT ledger.uuid7(at), 'hold.expired', e.id, at, pg_current_xact_id() FROM expired e
    ), held AS (
        UPDATE account a SET held = a.held - r.amount, hold_expires_at = m.next_expiry
        FROM released r LEFT JOIN remaining m ON m.wallet_id = r.wallet_id
        WHERE a.id = r.wallet_id
    ), parts AS (
        SELECT u.lot_id, sum(u.amount) AS amount FROM expired e JOIN lot_use u ON u.owner_id = e.id
        WHERE e.lot_amount > 0 GROUP BY u.lot_id
    ), returned AS (
        UPDATE lot l SET remaining = l.remaining + p.amount FROM parts p WHERE l.id = p.lot_id
        RETURNING l.wallet_id, l.expires_at
    )
    SELECT w.id, coalesce(r.amount, 0)::bigint, m.next_expiry,
        (SELECT min(t.expires_at) FROM returned t WHERE t.wallet_id = w.id)
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

-- Expires what is due of a locked wallet at `at`: its holds, then its lots (with the parts that
-- expired holds gave back). Takes the wallet's balance, held, hold_expires_at and
-- lot_expires_at and gives them back up to date; balance and lot_expires_at are written here,
-- held and hold_expires_at are the caller's to write.
CREATE FUNCTION ledger.expire_due(wallet_id uuid, at timestamptz, INOUT balance bigint, INOUT held bigint,
    INOUT hold_expires_at timestamptz, INOUT lot_expires_at timestamptz)
LANGUAGE plpgsql AS $$
DECLARE
    row record;
BEGIN
    IF hold_expires_at <= at THEN
        SELECT * INTO row FROM ledger.expire_holds(ARRAY[expire_due.wallet_id], at);
        held := held - row.released;
        hold_expires_at := row.next_expiry;
        lot_expires_at := least(lot_expires_at, row.lots_returned);
    END IF;
    IF lot_expires_at <= at THEN
        SELECT * INTO row FROM ledger.expire_lots(ARRAY[expire_due.wallet_id], at);
        balance := balance - coalesce(row.expired, 0);
        lot_expires_at := CASE WHEN row.wallet_id IS NULL THEN ledger.lot_soonest(expire_due.wallet_id)
            ELSE row.lot_expires_at END;
    END IF;
END
$$;

-- Places a hold of `amount` on the wallet, when it has that much available, for
-- `expires_in_seconds`; it takes its parts of the wallet's lots, soonest first.
-- state: placed | declined | replayed | reused.
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
    expires_at timestamptz;
    lot_amount bigint := 0;
BEGIN
    INSERT INTO idempotency_key AS k (api_key_id, key, fingerprint, hold_id, status)
    VALUES (place_hold.api_key_id, place_hold.idempotency_key, place_hold.fingerprint, place_hold.hold_id, 201)
    ON CONFLICT DO NOTHING;
    IF NOT FOUND THEN
        SELECT * INTO state, code, detail, stored_status, stored_hold_id, stored_body
        FROM ledger.hold_replay(place_hold.api_key_id, place_hold.idempotency_key, place_hold.fingerprint);
        RETURN;
    END IF;

    SELECT a.asset, a.balance, a.held, a.hold_expires_at, a.lot_expires_at, a.updated_at INTO wallet
    FROM account a WHERE a.id = place_hold.wallet_id AND a.kind = 'user'
    FOR UPDATE;
    IF NOT FOUND THEN
        state := 'declined';
        code := 'wallet_not_found';
        detail := format('Wallet %s does not exist.', place_hold.wallet_id);
        PERFORM ledger.hold_decline(place_hold.api_key_id, place_hold.idempotency_key, code, detail);
        RETURN;
    END IF;
    at := greatest(clock_timestamp(), wallet.updated_at + interval '1 microsecond');
    IF wallet.hold_expires_at <= at OR wallet.lot_expires_at <= at THEN
        SELECT e.balance, e.held, e.hold_expires_at, e.lot_expires_at
        INTO wallet.balance, wallet.held, wallet.hold_expires_at, wallet.lot_expires_at
        FROM ledger.expire_due(place_hold.wallet_id, at, wallet.balance, wallet.held, wallet.hold_expires_at,
            wallet.lot_expires_at) e;
    END IF;
    IF wallet.balance - wallet.held < amount THEN
        state := 'declined';
        code := 'insufficient_funds';
        detail := format('Wallet %s has %s available, less than %s.',
            place_hold.wallet_id, wallet.balance - wallet.held, amount);
        PERFORM ledger.hold_decline(place_hold.api_key_id, place_hold.idempotency_key, code, detail);
    ELSE
        expires_at := at + make_interval(secs => expires_in_seconds);
        IF wallet.lot_expires_at IS NOT NULL THEN
            SELECT t.taken, t.lot_expires_at INTO lot_amount, wallet.lot_expires_at
            FROM ledger.hold_lots(place_hold.hold_id, place_hold.wallet_id, amount) t;
        END IF;
        INSERT INTO hold (id, wallet_id, asset, amount, expires_at, reference, metadata, api_key_id,
            created_at, updated_at, lot_amount)
        VALUES (place_hold.hold_id, place_hold.wallet_id, wallet.asset, amount, expires_at, reference,
            metadata::json, place_hold.api_key_id, at, at, lot_amount);
        INSERT INTO event (id, type, subject_id, created_at, xid)
        VALUES (ledger.uuid7(at), 'hold.created', place_hold.hold_id, at, pg_current_xact_id());
        wallet.held := wallet.held + amount;
        wallet.hold_expires_at := least(wallet.hold_expires_at, expires_at);
        state := 'placed';
    END IF;
    -- Holds marked expired above stay so, declined or not: the wallet's sums follow them.
    UPDATE account a
    SET held = wallet.held, hold_expires_at = wallet.hold_expires_at, lot_expires_at = wallet.lot_expires_at,
        updated_at = at
    WHERE a.id = place_hold.wallet_id;
END
$$;

-- Voids a pending hold: what it held is available again, its parts of lots back in them (a part
-- of a lot that has expired meanwhile expires now). `wallet_id` is the hold's wallet (read
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
    hold_lot_amount bigint;
    at timestamptz;
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
        SELECT a.balance, a.held, a.hold_expires_at, a.lot_expires_at, a.updated_at INTO wallet
        FROM account a WHERE a.id = void_hold.wallet_id AND a.kind = 'user'
        FOR UPDATE;
        SELECT h.status, h.amount, h.lot_amount INTO hold_status, hold_amount, hold_lot_amount
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
    at := greatest(clock_timestamp(), wallet.updated_at + interval '1 microsecond');
    IF wallet.hold_expires_at <= at OR wallet.lot_expires_at <= at THEN
        SELECT e.balance, e.held, e.hold_expires_at, e.lot_expires_at
        INTO wallet.balance, wallet.held, wallet.hold_expires_at, wallet.lot_expires_at
        FROM ledger.expire_due(void_hold.wallet_id, at, wallet.balance, wallet.held, wallet.hold_expires_at, wallet.lot_expires_at) e;
        SELECT h.status INTO hold_status FROM hold h WHERE h.id = void_hold.hold_id;
    END IF;
    IF hold_status <> 'pending' THEN
        state := 'declined';
        code := 'hold_not_pending';
        detail := format('Hold %s is %s.', void_hold.hold_id, hold_status);
        PERFORM ledger.hold_decline(void_hold.api_key_id, void_hold.idempotency_key, code, detail);
    ELSE
        UPDATE hold h SET status = 'voided', updated_at = at WHERE h.id = void_hold.hold_id;
        INSERT INTO event (id, type, subject_id, created_at, xid)
        VALUES (ledger.uuid7(at), 'hold.voided', void_hold.hold_id, at, pg_current_xact_id());
        wallet.held := wallet.held - hold_amount;
        IF hold_lot_amount > 0 THEN
            wallet.lot_expires_at := least(wallet.lot_expires_at,
                (SELECT min(r.soonest) FROM ledger.return_hold_lots(ARRAY[void_hold.hold_id]) r));
        END IF;
        state := 'voided';
    END IF;
    UPDATE account a
    SET held = wallet.held,
        hold_expires_at = CASE WHEN wallet.held = 0 THEN NULL ELSE (
            SELECT min(h.expires_at) FROM hold h WHERE h.wallet_id = void_hold.wallet_id AND h.status = 'pending'
        ) END,
        lot_expires_at = wallet.lot_expires_at, updated_at = at
    WHERE a.id = void_hold.wallet_id;
    -- Parts given back to a lot that has expired meanwhile expire now.
    IF wallet.lot_expires_at <= at THEN
        PERFORM ledger.expire_lots(ARRAY[void_hold.wallet_id], at);
    END IF;
END
$$;

-- The sweeper: expires what is due (holds, then lots) of up to `batch_size` wallets whose locks
-- are free (SKIP LOCKED: a wallet being posted to expires its own). Returns how many wallets it
-- took; fewer than batch_size means it found no more.
CREATE FUNCTION ledger.sweep(batch_size integer) RETURNS integer
LANGUAGE plpgsql
SET plan_cache_mode = force_generic_plan
AS $$
DECLARE
    wallet record;
    taken integer := 0;
    at timestamptz;
BEGIN
    FOR wallet IN
        SELECT a.id, a.balance, a.held, a.hold_expires_at, a.lot_expires_at, a.updated_at FROM account a
        WHERE a.id IN (
            (SELECT d.id FROM account d WHERE d.lot_expires_at <= now() ORDER BY d.lot_expires_at LIMIT batch_size)
            UNION
            (SELECT d.id FROM account d WHERE d.hold_expires_at <= now() ORDER BY d.hold_expires_at LIMIT batch_size))
        ORDER BY a.id
        LIMIT batch_size
        FOR UPDATE SKIP LOCKED
    LOOP
        at := greatest(clock_timestamp(), wallet.updated_at + interval '1 microsecond');
        SELECT e.balance, e.held, e.hold_expires_at, e.lot_expires_at
        INTO wallet.balance, wallet.held, wallet.hold_expires_at, wallet.lot_expires_at
        FROM ledger.expire_due(wallet.id, at, wallet.balance, wallet.held, wallet.hold_expires_at, wallet.lot_expires_at) e;
        UPDATE account a
        SET held = wallet.held, hold_expires_at = wallet.hold_expires_at, lot_expires_at = wallet.lot_expires_at,
            updated_at = at
        WHERE a.id = wallet.id;
        taken := taken + 1;
    END LOOP;
    RETURN taken;
END
$$;
