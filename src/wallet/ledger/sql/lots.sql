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
-- named in its metadata, and its event. The caller holds the wallets' locks. Writes the wallets'
-- balance, entry count, chain head and lot_expires_at; returns per wallet that had any what
-- expired, how many entries that added to it, and its lot_expires_at and chain head now.
CREATE FUNCTION ledger.expire_lots(wallets uuid[], at timestamptz)
RETURNS TABLE (wallet_id uuid, expired bigint, entries integer, lot_expires_at timestamptz, ledger_head bytea)
LANGUAGE plpgsql AS $$
DECLARE
    lot_ids bigint[];           -- the due lots, by wallet and expiry
    lot_wallets uuid[];
    lot_origins uuid[];
    lot_expiries timestamptz[];
    lot_amounts bigint[];
    wallet_ids uuid[];          -- their wallets, as they are (and become)
    wallet_assets text[];
    wallet_balances bigint[];
    wallet_counts bigint[];
    wallet_heads bytea[];
    wallet_expired bigint[];
    wallet_added integer[];
    breakage_ids uuid[];        -- one breakage slot per asset
    breakage_assets text[];
    breakage_slots smallint[];
    breakage_sequences bigint[];
    breakage_heads bytea[];
    transaction_ids uuid[];
    entry_transactions uuid[] := '{}';
    entry_indexes smallint[] := '{}';
    entry_accounts uuid[] := '{}';
    entry_directions text[] := '{}';
    entry_balances bigint[] := '{}';
    entry_slots smallint[] := '{}';
    entry_sequences bigint[] := '{}';
    entry_amounts bigint[] := '{}';
    entry_hashes bytea[] := '{}';
    slot_found smallint;
    sequence_base bigint;
    head bytea;
    w integer;
    b integer;
    k integer;
BEGIN
    SELECT array_agg(l.id ORDER BY l.wallet_id, l.expires_at, l.id),
        array_agg(l.wallet_id ORDER BY l.wallet_id, l.expires_at, l.id),
        array_agg(l.transaction_id ORDER BY l.wallet_id, l.expires_at, l.id),
        array_agg(l.expires_at ORDER BY l.wallet_id, l.expires_at, l.id),
        array_agg(l.remaining ORDER BY l.wallet_id, l.expires_at, l.id)
    INTO lot_ids, lot_wallets, lot_origins, lot_expiries, lot_amounts
    FROM lot l
    WHERE l.wallet_id = ANY(wallets) AND l.remaining > 0 AND l.expires_at <= at;
    IF lot_ids IS NULL THEN
        RETURN;
    END IF;
    SELECT array_agg(a.id ORDER BY a.id), array_agg(a.asset ORDER BY a.id), array_agg(a.balance ORDER BY a.id),
        array_agg(a.entry_count ORDER BY a.id), array_agg(a.ledger_head ORDER BY a.id)
    INTO wallet_ids, wallet_assets, wallet_balances, wallet_counts, wallet_heads
    FROM account a WHERE a.id = ANY(lot_wallets);
    wallet_expired := array_fill(0::bigint, ARRAY[cardinality(wallet_ids)]);
    wallet_added := array_fill(0, ARRAY[cardinality(wallet_ids)]);
    -- One breakage slot per asset, taken for all of that asset's expiries here.
    SELECT array_agg(b.id ORDER BY b.id), array_agg(b.asset ORDER BY b.id)
    INTO breakage_ids, breakage_assets
    FROM account b WHERE b.kind = 'breakage' AND b.asset = ANY(wallet_assets);
    FOR b IN 1..cardinality(breakage_ids) LOOP
        SELECT t.slot, t.last_sequence, t.head INTO slot_found, sequence_base, head
        FROM ledger.take_slot(breakage_ids[b],
            (SELECT sum(x.amount) FROM unnest(lot_wallets, lot_amounts) AS x(wallet, amount)
             WHERE wallet_assets[array_position(wallet_ids, x.wallet)] = breakage_assets[b]),
            (SELECT count(*)::integer FROM unnest(lot_wallets) AS x(wallet)
             WHERE wallet_assets[array_position(wallet_ids, x.wallet)] = breakage_assets[b])) t;
        IF slot_found IS NULL THEN
            RAISE EXCEPTION 'no slot of breakage account % has room', breakage_ids[b] USING ERRCODE = 'WL001';
        END IF;
        breakage_slots[b] := slot_found;
        breakage_sequences[b] := sequence_base;
        breakage_heads[b] := head;
    END LOOP;

    -- Each lot's transaction: the wallet's debit entry, then the breakage slot's credit entry,
    -- each the next link of its chain.
    FOR k IN 1..cardinality(lot_ids) LOOP
        w := array_position(wallet_ids, lot_wallets[k]);
        b := array_position(breakage_assets, wallet_assets[w]);
        transaction_ids[k] := ledger.uuid7(at);
        wallet_balances[w] := wallet_balances[w] - lot_amounts[k];
        wallet_counts[w] := wallet_counts[w] + 1;
        wallet_expired[w] := wallet_expired[w] + lot_amounts[k];
        wallet_added[w] := wallet_added[w] + 1;
        wallet_heads[w] := ledger.entry_hash(wallet_heads[w], transaction_ids[k], wallet_ids[w], 'debit',
            lot_amounts[k], wallet_balances[w], wallet_assets[w], NULL, wallet_counts[w], at);
        breakage_sequences[b] := breakage_sequences[b] + 1;
        breakage_heads[b] := ledger.entry_hash(breakage_heads[b], transaction_ids[k], breakage_ids[b], 'credit',
            lot_amounts[k], NULL, wallet_assets[w], breakage_slots[b], breakage_sequences[b], at);
        entry_transactions := entry_transactions || transaction_ids[k] || transaction_ids[k];
        entry_indexes := entry_indexes || 0::smallint || 1::smallint;
        entry_accounts := entry_accounts || wallet_ids[w] || breakage_ids[b];
        entry_directions := entry_directions || 'debit'::text || 'credit'::text;
        entry_amounts := entry_amounts || lot_amounts[k] || lot_amounts[k];
        entry_balances := entry_balances || wallet_balances[w] || NULL::bigint;
        entry_slots := entry_slots || NULL::smallint || breakage_slots[b];
        entry_sequences := entry_sequences || wallet_counts[w] || breakage_sequences[b];
        entry_hashes := entry_hashes || wallet_heads[w] || breakage_heads[b];
    END LOOP;

    INSERT INTO transaction (id, type, asset, amount, wallet_id, reference, metadata, api_key_id, created_at)
    SELECT transaction_ids[n], 'expiry', wallet_assets[array_position(wallet_ids, lot_wallets[n])], lot_amounts[n],
        lot_wallets[n], NULL,
        format('{"lot_expires_at":"%s","lot_transaction_id":"%s"}',
            to_char(lot_expiries[n] AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'), lot_origins[n])::json,
        NULL, at
    FROM generate_subscripts(lot_ids, 1) AS n;
    INSERT INTO entry (transaction_id, entry_index, account_id, direction, amount, balance_after, slot,
        account_sequence, created_at, hash)
    SELECT entry_transactions[n], entry_indexes[n], entry_accounts[n], entry_directions[n], entry_amounts[n],
        entry_balances[n], entry_slots[n], entry_sequences[n], at, entry_hashes[n]
    FROM generate_subscripts(entry_transactions, 1) AS n;
    INSERT INTO event (id, type, subject_id, created_at, xid)
    SELECT transaction_ids[n], 'transaction.posted', transaction_ids[n], at, pg_current_xact_id()
    FROM generate_subscripts(transaction_ids, 1) AS n
    ORDER BY n;
    UPDATE lot l SET remaining = 0 WHERE l.id = ANY(lot_ids);
    UPDATE account_slot s SET head = v.head
    FROM unnest(breakage_ids, breakage_slots, breakage_heads) AS v(id, slot, head)
    WHERE s.account_id = v.id AND s.slot = v.slot;
    RETURN QUERY
    WITH moved AS (
        UPDATE account a
        SET balance = v.balance, entry_count = v.entries, ledger_head = v.head,
            lot_expires_at = ledger.lot_soonest(a.id), updated_at = greatest(a.updated_at, at)
        FROM unnest(wallet_ids, wallet_balances, wallet_counts, wallet_heads, wallet_expired, wallet_added)
            AS v(id, balance, entries, head, expired, added)
        WHERE a.id = v.id
        RETURNING a.id, v.expired, v.added, a.lot_expires_at, a.ledger_head
    )
    SELECT m.id, m.expired, m.added, m.lot_expires_at, m.ledger_head::bytea FROM moved m;
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
-- soonest unexpired open lot (with every lot expiring at that instant); the head of its hash
-- chain (chains.sql) is the hash of its last entry and how many entries it has.
CREATE VIEW ledger.wallet AS
SELECT a.id, a.owner_id, a.asset, a.balance,
    CASE WHEN a.hold_expires_at <= now() THEN (
        SELECT coalesce(sum(h.amount), 0)::bigint FROM hold h
        WHERE h.wallet_id = a.id AND h.status = 'pending' AND h.expires_at > now()
    ) ELSE a.held END AS held,
    n.amount AS next_expiry_amount, n.expires_at AS next_expiry_at,
    encode(a.ledger_head, 'hex') AS ledger_head_hash, a.entry_count AS ledger_head_entries,
    a.created_at, a.updated_at
FROM account a
LEFT JOIN LATERAL (
    SELECT l.expires_at, sum(l.remaining)::bigint AS amount FROM lot l
    WHERE a.lot_expires_at IS NOT NULL AND l.wallet_id = a.id AND l.remaining > 0 AND l.expires_at > now()
    GROUP BY l.expires_at ORDER BY l.expires_at LIMIT 1
) n ON true
WHERE a.kind = 'user';
