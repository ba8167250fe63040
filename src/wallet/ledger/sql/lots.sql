-- Lots: expiring credits. A credit with an expiry gives the wallet a lot; debits and holds take
-- from the wallet's open lots soonest-expiring first, then from its non-expiring funds; a lot
-- that expires leaves the wallet in an `expiry` transaction to the asset's breakage account.
-- Postings do the lot work of their items in ledger.post; holds in ledger.place_hold and
-- ledger.void_hold. All of it under the wallet's lock.
--
-- Per wallet, always: balance = non-expiring funds + the remaining of its open lots + the parts
-- of lots its pending holds took, and held <= balance - the remaining of its open lots (a hold's
-- part of non-expiring funds is there). `verify` checks both.

-- A time-ordered id (UUID version 7) of the time given, with random bits.
CREATE FUNCTION ledger.uuid7(at timestamptz) RETURNS uuid
LANGUAGE sql VOLATILE PARALLEL SAFE AS $$
    SELECT encode(set_byte(
        overlay(uuid_send(gen_random_uuid())
            PLACING substring(int8send((extract(epoch FROM at) * 1000)::bigint) FROM 3) FROM 1 FOR 6),
        6, (get_byte(uuid_send(gen_random_uuid()), 6) & 15) | 112), 'hex')::uuid
$$;

-- The soonest expiry among the wallet's open lots (account.lot_expires_at), NULL: none.
CREATE FUNCTION ledger.lot_soonest(wallet_id uuid) RETURNS timestamptz
LANGUAGE sql STABLE AS $$
    SELECT l.expires_at FROM lot l
    WHERE l.wallet_id = lot_soonest.wallet_id AND l.remaining > 0
    ORDER BY l.expires_at LIMIT 1
$$;

-- Posts the expiry of every lot of these wallets that is due at `at`: per lot, a transaction
-- `expiry` of what remains of it, from the wallet to its asset's breakage account, with the lot
-- named in its metadata. The caller holds the wallets' locks. Writes the wallets' balance, entry
-- count and lot_expires_at; returns per wallet that had any what expired, how many entries that
-- added to it, and its lot_expires_at now.
CREATE FUNCTION ledger.expire_lots(wallets uuid[], at timestamptz)
RETURNS TABLE (wallet_id uuid, expired bigint, entries integer, lot_expires_at timestamptz)
LANGUAGE plpgsql AS $$
DECLARE
    lot_ids bigint[];
    breakage_ids uuid[];
    breakage_delta numeric[];
    breakage_entries integer[];
    breakage_slots smallint[];
    breakage_bases bigint[];
    slot_found smallint;
    sequence_base bigint;
    k integer;
BEGIN
    SELECT array_agg(l.id ORDER BY l.id) INTO lot_ids FROM lot l
    WHERE l.wallet_id = ANY(wallets) AND l.remaining > 0 AND l.expires_at <= at;
    IF lot_ids IS NULL THEN
        RETURN;
    END IF;
    -- One breakage slot per asset, taken for all of that asset's expiries here.
    SELECT array_agg(b.id ORDER BY b.id), array_agg(d.delta ORDER BY b.id), array_agg(d.entries ORDER BY b.id)
    INTO breakage_ids, breakage_delta, breakage_entries
    FROM (
        SELECT l.asset, sum(l.remaining) AS delta, count(*)::integer AS entries
        FROM (SELECT a.asset, o.remaining FROM lot o JOIN account a ON a.id = o.wallet_id
              WHERE o.id = ANY(lot_ids)) l
        GROUP BY l.asset
    ) d JOIN account b ON b.asset = d.asset AND b.kind = 'breakage';
    breakage_slots := array_fill(NULL::smallint, ARRAY[cardinality(breakage_ids)]);
    breakage_bases := array_fill(NULL::bigint, ARRAY[cardinality(breakage_ids)]);
    FOR k IN 1..cardinality(breakage_ids) LOOP
        SELECT t.slot, t.last_sequence INTO slot_found, sequence_base
        FROM ledger.take_slot(breakage_ids[k], breakage_delta[k], breakage_entries[k]) t;
        breakage_slots[k] := slot_found;
        breakage_bases[k] := sequence_base;
        IF slot_found IS NULL THEN
            RAISE EXCEPTION 'no slot of breakage account % has room for %', breakage_ids[k], breakage_delta[k]
                USING ERRCODE = 'WL001';
        END IF;
    END LOOP;

    RETURN QUERY
    WITH due AS (
        SELECT o.id, o.wallet_id, o.transaction_id AS credit_id, o.expires_at, o.remaining AS amount,
            a.asset, ledger.uuid7(at) AS transaction_id,
            a.balance - sum(o.remaining) OVER w AS balance_after,
            a.entry_count + row_number() OVER w AS wallet_sequence,
            array_position(breakage_ids, b.id) AS breakage,
            row_number() OVER (PARTITION BY a.asset ORDER BY o.wallet_id, o.expires_at, o.id) AS asset_number
        FROM lot o
        JOIN account a ON a.id = o.wallet_id
        JOIN account b ON b.asset = a.asset AND b.kind = 'breakage'
        WHERE o.id = ANY(lot_ids)
        WINDOW w AS (PARTITION BY o.wallet_id ORDER BY o.expires_at, o.id)
    ), spent AS (
        UPDATE lot l SET remaining = 0 FROM due d WHERE l.id = d.id
    ), written_transactions AS (
        INSERT INTO transaction (id, type, asset, amount, wallet_id, reference, metadata, api_key_id, created_at)
        SELECT d.transaction_id, 'expiry', d.asset, d.amount, d.wallet_id, NULL,
            format('{"lot_expires_at":"%s","lot_transaction_id":"%s"}',
                to_char(d.expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'), d.credit_id)::json,
            NULL, at
        FROM due d
    ), written_events AS (
        INSERT INTO event (id, type, subject_id, created_at, xid)
        SELECT d.transaction_id, 'transaction.posted', d.transaction_id, at, pg_current_xact_id() FROM due d
        ORDER BY d.wallet_sequence, d.wallet_id
    ), written_entries AS (
        INSERT INTO entry (transaction_id, entry_index, account_id, direction, amount, balance_after, slot,
            account_sequence, created_at)
        SELECT d.transaction_id, 0, d.wallet_id, 'debit', d.amount, d.balance_after, NULL, d.wallet_sequence, at
        FROM due d
        UNION ALL
        SELECT d.transaction_id, 1, breakage_ids[d.breakage], 'credit', d.amount, NULL,
            breakage_slots[d.breakage], breakage_bases[d.breakage] + d.asset_number, at
        FROM due d
    ), per_wallet AS (
        -- This statement sees the lots as they were: the next expiry is among the others.
        SELECT d.wallet_id, sum(d.amount)::bigint AS amount, count(*)::integer AS entries,
            (SELECT min(l.expires_at) FROM lot l
             WHERE l.wallet_id = d.wallet_id AND l.remaining > 0 AND l.id <> ALL(lot_ids)) AS next_expiry
        FROM due d GROUP BY d.wallet_id
    ), moved_wallets AS (
        UPDATE account a
        SET balance = a.balance - w.amount, entry_count = a.entry_count + w.entries,
            lot_expires_at = w.next_expiry, updated_at = greatest(a.updated_at, at)
        FROM per_wallet w
        WHERE a.id = w.wallet_id
    )
    SELECT w.wallet_id, w.amount, w.entries, w.next_expiry FROM per_wallet w;
END
$$;

-- Gives back to their lots the parts these holds took (holds voided or expired). Returns per
-- wallet the soonest expiry among the lots given to (the caller keeps lot_expires_at).
CREATE FUNCTION ledger.return_hold_lots(holds uuid[])
RETURNS TABLE (wallet_id uuid, soonest timestamptz)
LANGUAGE sql AS $$
    WITH parts AS (
        SELECT u.lot_id, sum(u.amount) AS amount FROM lot_use u WHERE u.owner_id = ANY(holds)
        GROUP BY u.lot_id
    ), returned AS (
        UPDATE lot l SET remaining = l.remaining + p.amount FROM parts p WHERE l.id = p.lot_id
        RETURNING l.wallet_id, l.expires_at
    )
    SELECT r.wallet_id, min(r.expires_at) FROM returned r GROUP BY r.wallet_id
$$;

-- A new hold takes up to `amount` from the wallet's open lots, soonest first (none is due: the
-- caller expired those). Returns what it took, and the wallet's lot_expires_at after.
CREATE FUNCTION ledger.hold_lots(hold_id uuid, wallet_id uuid, amount bigint,
    OUT taken bigint, OUT lot_expires_at timestamptz)
LANGUAGE sql AS $$
    WITH open AS (
        SELECT l.id, l.remaining, l.expires_at,
            sum(l.remaining) OVER (ORDER BY l.expires_at, l.id) AS through
        FROM lot l WHERE l.wallet_id = hold_lots.wallet_id AND l.remaining > 0
    ), parts AS (
        SELECT o.id, least(o.remaining, amount - (o.through - o.remaining)) AS amount,
            row_number() OVER (ORDER BY o.through) AS position
        FROM open o WHERE o.through - o.remaining < amount
    ), taken AS (
        UPDATE lot l SET remaining = l.remaining - p.amount FROM parts p WHERE l.id = p.id
    ), uses AS (
        INSERT INTO lot_use (owner_id, position, lot_id, amount)
        SELECT hold_lots.hold_id, p.position, p.id, p.amount FROM parts p
    )
    SELECT coalesce((SELECT sum(p.amount) FROM parts p), 0)::bigint,
        (SELECT min(o.expires_at) FROM open o LEFT JOIN parts p ON p.id = o.id
         WHERE o.remaining > coalesce(p.amount, 0))
$$;

-- Wallets as the API shows them: `held` counts only pending holds not past their expiry (a
-- wallet's holds past it count as expired at once, marked or not), and the next expiry is the
-- soonest unexpired open lot (with every lot expiring at that instant).
CREATE VIEW ledger.wallet AS
SELECT a.id, a.owner_id, a.asset, a.balance,
    CASE WHEN a.hold_expires_at <= now() THEN (
        SELECT coalesce(sum(h.amount), 0)::bigint FROM hold h
        WHERE h.wallet_id = a.id AND h.status = 'pending' AND h.expires_at > now()
    ) ELSE a.held END AS held,
    n.amount AS next_expiry_amount, n.expires_at AS next_expiry_at,
    a.created_at, a.updated_at
FROM account a
LEFT JOIN LATERAL (
    SELECT l.expires_at, sum(l.remaining)::bigint AS amount FROM lot l
    WHERE a.lot_expires_at IS NOT NULL AND l.wallet_id = a.id AND l.remaining > 0 AND l.expires_at > now()
    GROUP BY l.expires_at ORDER BY l.expires_at LIMIT 1
) n ON true
WHERE a.kind = 'user';
