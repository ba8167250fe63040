-- The posting core: every money movement of the service is posted here, alone or in a group.
--
-- A group is a list of items; an item is one transaction of one asset: its idempotency key, its
-- type, reference and metadata, and its postings (debit account, credit account, amount), each
-- posting a debit entry and a credit entry, in posting order. The group is one database
-- transaction and one call, whether it holds one item (a single request) or hundreds (a batch,
-- or concurrent requests coalesced by the service's group commit). Each item keeps its own
-- idempotency row and its own outcome: one item's decline changes nothing of the others.
--
-- Locks, always in this order, so no two groups can wait on each other in a cycle:
--   1. idempotency keys, inserted sorted by (api_key_id, key): a concurrent request with the
--      same key waits here until the first commits, then replays it;
--   2. the group's wallets, sorted by id (FOR UPDATE); without `wait_for_locks`, a wallet
--      another transaction holds is skipped (SKIP LOCKED) and the items that need it are
--      deferred: their claims are taken back, and the service posts them again in a group that
--      waits. So a wallet held long (by a slow or stuck transaction) holds up only the requests
--      that need it, never a whole group of others;
--   3. one slot of each system account the group moves, by account id: a slot whose advisory
--      lock another transaction holds is passed over (tried without waiting), so a system
--      account is never a hot spot; only when every slot is held does a group wait for one.
--
-- Then, for captures, the holds they take (by id), and for reversals, the transactions they
-- reverse (by id): so a hold is captured once, and a transaction reversed by at most its amount.
--
-- Python passes the wallets as positions in `wallet_ids` (sorted, distinct; position 0 means a
-- system account, named by kind) and the postings of each item contiguous and in order. The
-- asset of an item is given (a journal) or is that of its first wallet. An item may come with
-- its decline decided already (item_preset_codes, from what cannot change: a capture of more
-- than its hold, of a hold that does not exist, a reversal of what cannot be reversed): it is
-- claimed and stored like any other decline. Every debit is checked against what the wallet
-- has available: its balance less its pending holds (account.held); a wallet's holds past their
-- expiry are marked expired first.
--
-- Returns one row of arrays, one element per item (item_*), or per entry of the posted items in
-- item and entry order (entry_*):
--   item_state     posted | declined | replayed | reused | deferred
--                  posted: written now; declined: a business decline (asset_not_found,
--                  wallet_not_found, asset_mismatch, insufficient_funds, balance_limit_exceeded,
--                  hold_not_pending, reversal_exceeds_original, or a preset one) stored with the key; replayed: the key was used before for the same request
--                  (its stored transaction id, decline, or v1 response); reused: the key was used
--                  before for another request (nothing stored); deferred: a wallet it needs was
--                  held by another transaction (nothing stored)
--   item_asset     the asset of a posted item
--   entry_accounts, entry_balances   each entry's account and balance after (NULL: a system
--                  account); a posted item has two entries per posting
--
-- Written for few statements and few expressions: PostgreSQL prepares each statement, CHECK
-- constraint and PL/pgSQL expression again in every transaction, and for a single spend that
-- costs more than writing the rows. Single-column rules are domains (compiled, not parsed).
CREATE FUNCTION ledger.post(
    item_api_key_ids uuid[],
    item_keys text[],
    item_fingerprints bytea[],
    item_transaction_ids uuid[],
    item_types text[],
    item_assets text[],
    item_references text[],
    item_metadata text[],
    wallet_ids uuid[],
    posting_items integer[],
    posting_debit_wallets integer[],
    posting_debit_systems text[],
    posting_credit_wallets integer[],
    posting_credit_systems text[],
    posting_amounts bigint[],
    item_hold_ids uuid[],          -- per item: the hold a capture takes, else NULL (or all NULL)
    item_reverses uuid[],          -- per item: the transaction a reversal reverses, else NULL
    item_preset_codes text[],      -- per item: a decline decided already, else NULL
    item_preset_details text[],
    item_expires_at timestamptz[], -- per item: the expiry of a credit's lot, else NULL (or all NULL)
    wait_for_locks boolean,
    OUT item_state text[],
    OUT item_asset text[],
    OUT item_code text[],
    OUT item_detail text[],
    OUT item_stored_id uuid[],
    OUT item_stored_status integer[],
    OUT item_stored_body text[],
    OUT created timestamptz,
    OUT entry_accounts uuid[],
    OUT entry_balances bigint[]
)
LANGUAGE plpgsql
-- Every statement here looks rows up by key: plan each once for the session (generic plans), and
-- never by a sequential scan, which the small, busy account_slot table would otherwise get.
SET plan_cache_mode = force_generic_plan
SET enable_seqscan = off
AS $$
DECLARE
    item_count constant integer := cardinality(item_transaction_ids);
    posting_count constant integer := coalesce(cardinality(posting_amounts), 0);
    claimed integer;
    wallet_asset text[];        -- per wallet position; NULL: no such wallet
    wallet_balance bigint[];
    wallet_entries bigint[];    -- entry count: the account_sequence of the wallet's last entry
    wallet_held bigint[];       -- sum of the wallet's pending holds; available = balance - held
    wallet_hold_expires_at timestamptz[];
    wallet_held_before bigint[];
    wallet_lot_at timestamptz[];  -- the soonest expiry of the wallet's open lots
    wallet_head bytea[];        -- the hash of the wallet's last entry (its chain, chains.sql)
    system_head bytea[];        -- per system account moved: the hash of its slot's last entry
    entry_position integer[];   -- per entry: its wallet's position (0: a system account's)
    entry_asset text[];
    entry_hash bytea[];
    slot_head bytea;
    wallet_expiring bigint[];   -- given back in this call to lots that have expired: not available
    lots_active boolean;        -- the group does lot work (else none of its wallets has lots)
    lot_ids bigint[];           -- the lots of the group's wallets: the open ones, and those
    lot_wallet integer[];       -- that captured holds and reversed transactions took from;
    lot_origin uuid[];          -- each wallet's lots are a list in expiry order, from
    lot_expires timestamptz[];  -- wallet_lot_head through lot_next (0 ends it). Lots made in
    lot_remaining bigint[];     -- this call follow the loaded ones (lot_loaded).
    lot_amount bigint[];
    lot_next integer[];
    lot_before bigint[];
    lot_loaded integer := 0;
    lot_count integer := 0;
    wallet_lot_head integer[];
    prior_owner uuid[];         -- what the captured holds and reversed transactions took from
    prior_lot integer[];        -- lots (lot_use), in the order taken
    prior_amount bigint[];
    use_owner uuid[];           -- what the posted debits take from lots now
    use_lot integer[];
    use_amount bigint[];
    use_count integer := 0;
    part_lot integer[];         -- the parts of lots one debit took
    part_amount bigint[];
    part_count integer;
    lot_undo_index integer[];   -- while an item is posted: the lots it changed, as they were
    lot_undo_remaining bigint[];
    lot_undo_count integer;
    saved_lot_count integer;
    saved_use_count integer;
    undo_expiring bigint[];
    hold_lot_amount bigint[];
    item_first integer;
    total numeric;
    before numeric;
    skip numeric;
    give bigint;
    left_over bigint;
    prev integer;
    j integer;
    pass integer;
    posting_lots integer;
    lot_at timestamptz;
    due_wallets uuid[];
    hold_ids uuid[];            -- the holds the captures take, sorted, and as locked
    hold_status text[];
    hold_amount bigint[];
    hold_wallet uuid[];
    hold_expires_at timestamptz[];
    original_ids uuid[];        -- the transactions the reversals reverse, sorted, and as locked
    original_amount bigint[];
    original_reversed numeric[];
    saved_reversed numeric[];
    h integer;
    system_key text[];          -- 'ASSET:kind' of every system account
    system_id uuid[];
    system_delta numeric[];     -- per system account: what the group moves, and its entries
    system_entries integer[];
    system_slot smallint[];
    entry_transaction uuid[];
    entry_index smallint[];     -- position in its transaction
    entry_direction text[];
    entry_amount bigint[];
    entry_sequence bigint[];
    entry_system integer[];     -- position in system_*, or 0 for a wallet entry
    posted_amount bigint[];     -- per item: the sum of its postings; its first wallet debited,
    posted_wallet uuid[];       -- else its first wallet credited
    posted_credited uuid[];
    undo_account integer[];     -- while an item is posted: the wallets it moved, as they were
    undo_balance bigint[];
    undo_entries bigint[];
    undo_held bigint[];
    undo_count integer;
    saved_delta numeric[];
    saved_system_entries integer[];
    saved_entry_count integer;
    busy integer[] := '{}';     -- wallet positions another transaction holds
    entry_count integer := 0;
    side integer;
    account integer;
    amount bigint;
    code text;
    detail text;
    row record;
    slot_found smallint;
    sequence_base bigint;
    i integer := 0;
    p integer;
    k integer;
BEGIN
    ASSERT item_count BETWEEN 1 AND 10000 AND coalesce(posting_count, 0) <= 64 * item_count,
        'group size out of range';
    item_state := array_fill('posted'::text, ARRAY[item_count]);
    item_asset := item_assets;
    item_code := array_fill(NULL::text, ARRAY[item_count]);
    item_detail := item_code;
    posted_amount := array_fill(0::bigint, ARRAY[item_count]);
    posted_wallet := array_fill(NULL::uuid, ARRAY[item_count]);
    posted_credited := posted_wallet;

    -- 1. Claim the keys. A key another transaction holds makes this wait for it to end.
    INSERT INTO idempotency_key (api_key_id, key, fingerprint, transaction_id)
    SELECT item_api_key_ids[n], item_keys[n], item_fingerprints[n], item_transaction_ids[n]
    FROM generate_subscripts(item_transaction_ids, 1) AS n
    ORDER BY item_api_key_ids[n], item_keys[n]
    ON CONFLICT DO NOTHING;
    GET DIAGNOSTICS claimed = ROW_COUNT;
    IF claimed < item_count THEN
        -- A replay must not be answered before the original is safe: under synchronous
        -- replication, the original's commit may have been seen here (its wait for the standby
        -- cancelled) before the standby has it. A transaction id makes this transaction's commit
        -- write a record and wait for the standby, which then has the original too.
        PERFORM pg_current_xact_id();
        -- Keys claimed before, by a committed transaction (the insert waited for it), unlike those
        -- this transaction has just inserted.
        SELECT array_agg(CASE
                WHEN k.xmin::text::bigint = pg_current_xact_id()::text::bigint % 4294967296 THEN 'posted'
                WHEN k.fingerprint IS NULL THEN 'vanished'
                WHEN k.fingerprint = u.fingerprint THEN 'replayed'
                ELSE 'reused' END ORDER BY u.number),
            array_agg(k.transaction_id ORDER BY u.number),
            array_agg(k.decline_code ORDER BY u.number),
            array_agg(k.decline_detail ORDER BY u.number),
            array_agg(k.status ORDER BY u.number),
            array_agg(k.response_body ORDER BY u.number)
        INTO item_state, item_stored_id, item_code, item_detail, item_stored_status, item_stored_body
        FROM unnest(item_api_key_ids, item_keys, item_fingerprints, item_transaction_ids)
            WITH ORDINALITY AS u(api_key_id, key, fingerprint, transaction_id, number)
        LEFT JOIN idempotency_key k ON k.api_key_id = u.api_key_id AND k.key = u.key;
        IF 'vanished' = ANY(item_state) THEN  -- purged between the insert and this read
            RAISE EXCEPTION 'idempotency key vanished while claiming it' USING ERRCODE = 'serialization_failure';
        END IF;
    END IF;

    IF item_preset_codes IS NOT NULL THEN
        FOR i IN 1..item_count LOOP
            CONTINUE WHEN item_preset_codes[i] IS NULL OR item_state[i] <> 'posted';
            item_state[i] := 'declined';
            item_code[i] := item_preset_codes[i];
            item_detail[i] := item_preset_details[i];
        END LOOP;
        i := 0;
    END IF;

    -- 2. Lock the group's wallets in id order (or those not held by others); read every system
    -- account.
    IF wait_for_locks THEN
        SELECT array_agg(l.asset ORDER BY g.position), array_agg(l.balance ORDER BY g.position),
            array_agg(l.entry_count ORDER BY g.position), array_agg(l.held ORDER BY g.position),
            array_agg(l.hold_expires_at ORDER BY g.position), array_agg(l.lot_expires_at ORDER BY g.position),
            array_agg(l.ledger_head ORDER BY g.position),
            greatest(clock_timestamp(), max(l.updated_at) + interval '1 microsecond'),
            (SELECT array_agg(a.asset || ':' || a.kind ORDER BY a.id) FROM account a WHERE a.kind <> 'user'),
            (SELECT array_agg(a.id ORDER BY a.id) FROM account a WHERE a.kind <> 'user')
        INTO wallet_asset, wallet_balance, wallet_entries, wallet_held, wallet_hold_expires_at, wallet_lot_at,
            wallet_head, created,
            system_key, system_id
        FROM generate_series(1, cardinality(wallet_ids)) AS g(position)
        LEFT JOIN (
            SELECT u.position, a.asset, a.balance, a.entry_count, a.held, a.hold_expires_at, a.lot_expires_at,
                a.ledger_head, a.updated_at
            FROM unnest(wallet_ids) WITH ORDINALITY AS u(id, position)
            JOIN account a ON a.id = u.id AND a.kind = 'user'
            ORDER BY a.id
            FOR UPDATE OF a
        ) l ON l.position = g.position;
    ELSE
        SELECT array_agg(l.asset ORDER BY g.position), array_agg(l.balance ORDER BY g.position),
            array_agg(l.entry_count ORDER BY g.position), array_agg(l.held ORDER BY g.position),
            array_agg(l.hold_expires_at ORDER BY g.position), array_agg(l.lot_expires_at ORDER BY g.position),
            array_agg(l.ledger_head ORDER BY g.position),
            greatest(clock_timestamp(), max(l.updated_at) + interval '1 microsecond'),
            (SELECT array_agg(a.asset || ':' || a.kind ORDER BY a.id) FROM account a WHERE a.kind <> 'user'),
            (SELECT array_agg(a.id ORDER BY a.id) FROM account a WHERE a.kind <> 'user')
        INTO wallet_asset, wallet_balance, wallet_entries, wallet_held, wallet_hold_expires_at, wallet_lot_at,
            wallet_head, created,
            system_key, system_id
        FROM generate_series(1, cardinality(wallet_ids)) AS g(position)
        LEFT JOIN (
            SELECT u.position, a.asset, a.balance, a.entry_count, a.held, a.hold_expires_at, a.lot_expires_at,
                a.ledger_head, a.updated_at
            FROM unnest(wallet_ids) WITH ORDINALITY AS u(id, position)
            JOIN account a ON a.id = u.id AND a.kind = 'user'
            ORDER BY a.id
            FOR UPDATE OF a SKIP LOCKED
        ) l ON l.position = g.position;
        IF array_position(wallet_asset, NULL) IS NOT NULL THEN
            -- Not locked: no such wallet, or another transaction holds it.
            busy := ARRAY(
                SELECT u.position FROM unnest(wallet_ids, wallet_asset) WITH ORDINALITY AS u(id, asset, position)
                WHERE u.asset IS NULL AND EXISTS (SELECT FROM account a WHERE a.id = u.id AND a.kind = 'user'));
        END IF;
    END IF;
    -- `created`, read after the locks, is later than any entry of these wallets: a wallet's
    -- postings (and events) have strictly increasing times.

    -- The holds of these wallets that are past their expiry are expired from now on (their parts
    -- of lots given back), then their lots that are due: a debit never takes from a lot that has
    -- expired, and its expiry comes before it in the wallet's history.
    wallet_held_before := wallet_held;
    IF created >= ANY(wallet_hold_expires_at) THEN
        due_wallets := ARRAY(
            SELECT u.id FROM unnest(wallet_ids, wallet_hold_expires_at) AS u(id, expires_at)
            WHERE u.expires_at <= created);
        FOR row IN SELECT * FROM ledger.expire_holds(due_wallets, created) LOOP
            k := array_position(wallet_ids, row.wallet_id);
            wallet_held[k] := wallet_held[k] - row.released;
            wallet_lot_at[k] := least(wallet_lot_at[k], row.lots_returned);
        END LOOP;
    END IF;
    IF created >= ANY(wallet_lot_at) THEN
        due_wallets := ARRAY(
            SELECT u.id FROM unnest(wallet_ids, wallet_lot_at) AS u(id, expires_at) WHERE u.expires_at <= created);
        FOR row IN SELECT * FROM ledger.expire_lots(due_wallets, created) LOOP
            k := array_position(wallet_ids, row.wallet_id);
            wallet_balance[k] := wallet_balance[k] - row.expired;
            wallet_entries[k] := wallet_entries[k] + row.entries;
            wallet_lot_at[k] := row.lot_expires_at;
            wallet_head[k] := row.ledger_head;
        END LOOP;
    END IF;
    -- The holds the captures take, and the transactions the reversals reverse, locked in id order.
    -- (Without wait_for_locks, one another transaction holds is skipped: its item is deferred.)
    IF item_hold_ids IS NOT NULL AND wait_for_locks THEN
        SELECT array_agg(l.id), array_agg(l.status), array_agg(l.amount), array_agg(l.wallet_id),
            array_agg(l.expires_at), array_agg(l.lot_amount)
        INTO hold_ids, hold_status, hold_amount, hold_wallet, hold_expires_at, hold_lot_amount
        FROM (
            SELECT h.id, h.status, h.amount, h.wallet_id, h.expires_at, h.lot_amount FROM hold h
            WHERE h.id = ANY(item_hold_ids) ORDER BY h.id FOR UPDATE
        ) l;
    ELSIF item_hold_ids IS NOT NULL THEN
        SELECT array_agg(l.id), array_agg(l.status), array_agg(l.amount), array_agg(l.wallet_id),
            array_agg(l.expires_at), array_agg(l.lot_amount)
        INTO hold_ids, hold_status, hold_amount, hold_wallet, hold_expires_at, hold_lot_amount
        FROM (
            SELECT h.id, h.status, h.amount, h.wallet_id, h.expires_at, h.lot_amount FROM hold h
            WHERE h.id = ANY(item_hold_ids) ORDER BY h.id FOR UPDATE SKIP LOCKED
        ) l;
    END IF;
    IF item_reverses IS NOT NULL AND wait_for_locks THEN
        SELECT array_agg(l.id), array_agg(l.amount),
            array_agg((SELECT coalesce(sum(r.amount), 0) FROM transaction r WHERE r.reverses = l.id))
        INTO original_ids, original_amount, original_reversed
        FROM (
            SELECT t.id, t.amount FROM transaction t
            WHERE t.id = ANY(item_reverses) ORDER BY t.id FOR UPDATE
        ) l;
    ELSIF item_reverses IS NOT NULL THEN
        SELECT array_agg(l.id), array_agg(l.amount),
            array_agg((SELECT coalesce(sum(r.amount), 0) FROM transaction r WHERE r.reverses = l.id))
        INTO original_ids, original_amount, original_reversed
        FROM (
            SELECT t.id, t.amount FROM transaction t
            WHERE t.id = ANY(item_reverses) ORDER BY t.id FOR UPDATE SKIP LOCKED
        ) l;
    END IF;

    -- Lots, when the group has anything to do with them: each wallet's in a list, soonest first.
    wallet_expiring := array_fill(0::bigint, ARRAY[cardinality(wallet_ids)]);
    lots_active := coalesce(cardinality(array_remove(wallet_lot_at, NULL)), 0) > 0
        OR item_expires_at IS NOT NULL OR item_reverses IS NOT NULL
        OR coalesce(cardinality(array_remove(hold_lot_amount, 0)), 0) > 0;
    IF lots_active THEN
        SELECT array_agg(l.id ORDER BY l.wallet_id, l.expires_at, l.id),
            array_agg(array_position(wallet_ids, l.wallet_id) ORDER BY l.wallet_id, l.expires_at, l.id),
            array_agg(l.transaction_id ORDER BY l.wallet_id, l.expires_at, l.id),
            array_agg(l.expires_at ORDER BY l.wallet_id, l.expires_at, l.id),
            array_agg(l.remaining ORDER BY l.wallet_id, l.expires_at, l.id),
            array_agg(l.amount ORDER BY l.wallet_id, l.expires_at, l.id)
        INTO lot_ids, lot_wallet, lot_origin, lot_expires, lot_remaining, lot_amount
        FROM lot l
        WHERE l.id IN (
            SELECT o.id FROM lot o
            WHERE o.remaining > 0 AND o.wallet_id = ANY(ARRAY(
                SELECT u.id FROM unnest(wallet_ids, wallet_lot_at) AS u(id, soonest) WHERE u.soonest IS NOT NULL))
            UNION ALL
            SELECT u.lot_id FROM lot_use u WHERE u.owner_id = ANY(array_cat(hold_ids, item_reverses)));
        lot_loaded := coalesce(cardinality(lot_ids), 0);
        lot_count := lot_loaded;
        lot_before := lot_remaining;
        wallet_lot_head := array_fill(0, ARRAY[cardinality(wallet_ids)]);
        lot_next := array_fill(0, ARRAY[lot_count]);
        FOR j IN 1..lot_count LOOP
            ASSERT lot_wallet[j] IS NOT NULL, 'a lot of a wallet not in the group';
            IF j > 1 AND lot_wallet[j] = lot_wallet[j - 1] THEN
                lot_next[j - 1] := j;
            ELSE
                wallet_lot_head[lot_wallet[j]] := j;
            END IF;
        END LOOP;
        SELECT array_agg(u.owner_id ORDER BY u.owner_id, u.position),
            array_agg(array_position(lot_ids, u.lot_id) ORDER BY u.owner_id, u.position),
            array_agg(u.amount ORDER BY u.owner_id, u.position)
        INTO prior_owner, prior_lot, prior_amount
        FROM lot_use u WHERE u.owner_id = ANY(array_cat(hold_ids, item_reverses));
    END IF;

    system_delta := array_fill(0::numeric, ARRAY[cardinality(system_id)]);
    system_entries := array_fill(0, ARRAY[cardinality(system_id)]);
    system_slot := array_fill(NULL::smallint, ARRAY[cardinality(system_id)]);
    system_head := array_fill(NULL::bytea, ARRAY[cardinality(system_id)]);

    -- 3. Each posting of the items to post, item by item: at an item's first posting, check
    -- its wallets and asset; then move the working balances; on a decline, put them back.
    FOR p IN 1..posting_count + 1 LOOP
        IF posting_items[p] IS DISTINCT FROM i THEN
            IF code IS NOT NULL THEN  -- the item that ends here is declined, or deferred
                item_state[i] := CASE code WHEN 'deferred' THEN 'deferred' ELSE 'declined' END;
                item_code[i] := nullif(code, 'deferred');
                item_detail[i] := CASE WHEN code <> 'deferred' THEN detail END;
                FOR k IN REVERSE undo_count..1 LOOP
                    wallet_balance[undo_account[k]] := undo_balance[k];
                    wallet_entries[undo_account[k]] := undo_entries[k];
                    wallet_held[undo_account[k]] := undo_held[k];
                    wallet_expiring[undo_account[k]] := undo_expiring[k];
                END LOOP;
                IF lots_active THEN
                    FOR k IN REVERSE lot_undo_count..1 LOOP
                        lot_remaining[lot_undo_index[k]] := lot_undo_remaining[k];
                    END LOOP;
                    FOR k IN saved_lot_count + 1..lot_count LOOP  -- lots it made: none now
                        lot_amount[k] := 0;
                        lot_remaining[k] := 0;
                    END LOOP;
                    use_count := saved_use_count;
                END IF;
                IF item_reverses IS NOT NULL THEN
                    original_reversed := saved_reversed;
                END IF;
                system_delta := saved_delta;
                system_entries := saved_system_entries;
                entry_count := saved_entry_count;
            END IF;
            i := posting_items[p];
            EXIT WHEN i IS NULL;
            code := NULL;
            CONTINUE WHEN item_state[i] <> 'posted';
            undo_count := 0;
            lot_undo_count := 0;
            saved_lot_count := lot_count;
            saved_use_count := use_count;
            item_first := p;
            saved_delta := system_delta;
            saved_reversed := original_reversed;
            saved_system_entries := system_entries;
            saved_entry_count := entry_count;
            <<check>>
            FOR k IN p..p + 63 LOOP
                EXIT WHEN posting_items[k] IS DISTINCT FROM i;
                FOREACH account IN ARRAY ARRAY[posting_debit_wallets[k], posting_credit_wallets[k]] LOOP
                    CONTINUE WHEN account = 0;
                    item_asset[i] := coalesce(item_asset[i], wallet_asset[account]);
                    IF account = ANY(busy) THEN
                        code := 'deferred';
                        EXIT check;
                    ELSIF wallet_asset[account] IS NULL THEN
                        code := 'wallet_not_found';
                        detail := format('Wallet %s does not exist.', wallet_ids[account]);
                        EXIT check;
                    ELSIF wallet_asset[account] <> item_asset[i] AND code IS NULL THEN
                        code := 'asset_mismatch';
                        detail := format('Wallet %s holds %s, not %s.',
                            wallet_ids[account], wallet_asset[account], item_asset[i]);
                    END IF;
                END LOOP;
            END LOOP;
            -- A journal names its asset: one that does not exist is the first thing wrong with it.
            IF item_asset[i] IS NOT NULL AND code IS DISTINCT FROM 'deferred'
                    AND array_position(system_key, item_asset[i] || ':treasury') IS NULL THEN
                code := 'asset_not_found';
                detail := format('Asset %s does not exist.', item_asset[i]);
            END IF;
            -- A capture: its hold is pending and not past its expiry; release it. What it held
            -- is then available to the spend that follows.
            IF code IS NULL AND item_hold_ids[i] IS NOT NULL THEN
                h := array_position(hold_ids, item_hold_ids[i]);
                ASSERT h IS NOT NULL OR NOT wait_for_locks, 'a capture of a hold that does not exist';
                IF h IS NULL THEN  -- held by another transaction
                    code := 'deferred';
                ELSIF hold_status[h] <> 'pending' OR hold_expires_at[h] <= created THEN
                    code := 'hold_not_pending';
                    detail := format('Hold %s is %s.', hold_ids[h],
                        CASE WHEN hold_status[h] = 'pending' THEN 'expired' ELSE hold_status[h] END);
                ELSE
                    account := array_position(wallet_ids, hold_wallet[h]);
                    undo_count := undo_count + 1;
                    undo_account[undo_count] := account;
                    undo_balance[undo_count] := wallet_balance[account];
                    undo_entries[undo_count] := wallet_entries[account];
                    undo_held[undo_count] := wallet_held[account];
                    undo_expiring[undo_count] := wallet_expiring[account];
                    wallet_held[account] := wallet_held[account] - hold_amount[h];
                END IF;
            END IF;
            -- A reversal: at most what is left of its transaction to reverse.
            IF code IS NULL AND item_reverses[i] IS NOT NULL THEN
                h := array_position(original_ids, item_reverses[i]);
                ASSERT h IS NOT NULL OR NOT wait_for_locks, 'a reversal of a transaction that does not exist';
                amount := (SELECT sum(a) FROM unnest(posting_amounts[p:p + 63]) WITH ORDINALITY AS x(a, n)
                    WHERE posting_items[p + n - 1] = i);
                IF h IS NULL THEN  -- held by another transaction
                    code := 'deferred';
                ELSIF original_reversed[h] + amount > original_amount[h] THEN
                    code := 'reversal_exceeds_original';
                    detail := format('Transaction %s has %s left to reverse, less than %s.',
                        original_ids[h], original_amount[h] - original_reversed[h], amount);
                ELSE
                    original_reversed[h] := original_reversed[h] + amount;
                END IF;
            END IF;
        END IF;
        CONTINUE WHEN code IS NOT NULL OR item_state[i] <> 'posted';

        amount := posting_amounts[p];
        posted_amount[i] := posted_amount[i] + amount;
        FOR side IN 1..2 LOOP
            account := CASE side WHEN 1 THEN posting_debit_wallets[p] ELSE posting_credit_wallets[p] END;
            entry_count := entry_count + 1;
            entry_transaction[entry_count] := item_transaction_ids[i];
            entry_index[entry_count] := entry_count - saved_entry_count - 1;
            entry_direction[entry_count] := CASE side WHEN 1 THEN 'debit' ELSE 'credit' END;
            entry_amount[entry_count] := amount;
            entry_asset[entry_count] := item_asset[i];
            entry_position[entry_count] := account;
            IF account = 0 THEN
                k := array_position(system_key,
                    item_asset[i] || ':' || CASE side WHEN 1 THEN posting_debit_systems[p] ELSE posting_credit_systems[p] END);
                system_delta[k] := system_delta[k] + CASE side WHEN 1 THEN -amount ELSE amount END;
                system_entries[k] := system_entries[k] + 1;
                entry_accounts[entry_count] := system_id[k];
                entry_balances[entry_count] := NULL;
                entry_system[entry_count] := k;
                CONTINUE;
            ELSIF side = 1 AND wallet_balance[account] - wallet_held[account] - wallet_expiring[account] < amount THEN
                code := 'insufficient_funds';
                detail := format('Wallet %s has %s available, less than %s.', wallet_ids[account],
                    wallet_balance[account] - wallet_held[account] - wallet_expiring[account], amount);
                EXIT;
            ELSIF side = 2 AND wallet_balance[account] > ledger.balance_max() - amount THEN
                code := 'balance_limit_exceeded';
                detail := format('Wallet %s would exceed the balance limit.', wallet_ids[account]);
                EXIT;
            END IF;
            undo_count := undo_count + 1;
            undo_account[undo_count] := account;
            undo_balance[undo_count] := wallet_balance[account];
            undo_entries[undo_count] := wallet_entries[account];
            undo_held[undo_count] := wallet_held[account];
            undo_expiring[undo_count] := wallet_expiring[account];
            wallet_balance[account] := wallet_balance[account] + CASE side WHEN 1 THEN -amount ELSE amount END;
            wallet_entries[account] := wallet_entries[account] + 1;
            IF side = 1 THEN
                posted_wallet[i] := coalesce(posted_wallet[i], wallet_ids[account]);
            ELSE
                posted_credited[i] := coalesce(posted_credited[i], wallet_ids[account]);
            END IF;
            entry_accounts[entry_count] := wallet_ids[account];
            entry_balances[entry_count] := wallet_balance[account];
            entry_sequence[entry_count] := wallet_entries[account];
            entry_system[entry_count] := 0;
        END LOOP;

        -- The posting's lot work. The debit takes from the wallet's lots, soonest first (a
        -- capture: from its hold's parts, giving back what it does not use; a reversal: from the
        -- lots its original made first). The credit carries the parts' expiry to a receiving
        -- wallet, makes the lot of a credit with an expiry, or (a reversal) gives back to the
        -- lots its original took from. A part given back to a lot that has expired is not
        -- available: it expires at the end of the call.
        CONTINUE WHEN code IS NOT NULL OR NOT lots_active;
        part_count := 0;
        posting_lots := lot_count;
        account := posting_debit_wallets[p];
        IF account <> 0 THEN
            left_over := amount;
            IF item_hold_ids[i] IS NOT NULL THEN
                FOR k IN 1..coalesce(cardinality(prior_owner), 0) LOOP
                    CONTINUE WHEN prior_owner[k] <> item_hold_ids[i];
                    j := prior_lot[k];
                    give := least(left_over, prior_amount[k]);
                    IF give > 0 THEN
                        part_count := part_count + 1;
                        part_lot[part_count] := j;
                        part_amount[part_count] := give;
                        left_over := left_over - give;
                    END IF;
                    CONTINUE WHEN prior_amount[k] = give;
                    lot_undo_count := lot_undo_count + 1;
                    lot_undo_index[lot_undo_count] := j;
                    lot_undo_remaining[lot_undo_count] := lot_remaining[j];
                    lot_remaining[j] := lot_remaining[j] + prior_amount[k] - give;
                    IF lot_expires[j] <= created THEN
                        wallet_expiring[account] := wallet_expiring[account] + prior_amount[k] - give;
                    END IF;
                END LOOP;
            ELSE
                FOR pass IN CASE WHEN item_reverses[i] IS NULL THEN 2 ELSE 1 END..2 LOOP
                    j := wallet_lot_head[account];
                    WHILE j <> 0 AND left_over > 0 LOOP
                        IF lot_remaining[j] > 0 AND lot_expires[j] > created
                                AND (pass = 2 OR lot_origin[j] = item_reverses[i]) THEN
                            give := least(left_over, lot_remaining[j]);
                            lot_undo_count := lot_undo_count + 1;
                            lot_undo_index[lot_undo_count] := j;
                            lot_undo_remaining[lot_undo_count] := lot_remaining[j];
                            lot_remaining[j] := lot_remaining[j] - give;
                            part_count := part_count + 1;
                            part_lot[part_count] := j;
                            part_amount[part_count] := give;
                            left_over := left_over - give;
                        END IF;
                        j := lot_next[j];
                    END LOOP;
                END LOOP;
            END IF;
            FOR k IN 1..part_count LOOP
                use_count := use_count + 1;
                use_owner[use_count] := item_transaction_ids[i];
                use_lot[use_count] := part_lot[k];
                use_amount[use_count] := part_amount[k];
            END LOOP;
        END IF;
        account := posting_credit_wallets[p];
        CONTINUE WHEN account = 0;
        IF item_reverses[i] IS NOT NULL THEN
            -- What the original debited this wallet came first from its non-expiring funds (when
            -- reversed: given back first), then from lots in the order taken (given back last
            -- taken first); `before` of it was given back by earlier reversals or postings.
            h := array_position(original_ids, item_reverses[i]);
            IF posting_items[item_first + 1] IS DISTINCT FROM i THEN  -- a transaction of one posting
                total := original_amount[h];
                before := original_reversed[h] - amount;
            ELSE  -- a journal, reversed whole: what of this wallet's share earlier postings gave
                total := 0;
                before := 0;
                FOR k IN item_first..item_first + 63 LOOP
                    EXIT WHEN posting_items[k] IS DISTINCT FROM i;
                    CONTINUE WHEN posting_credit_wallets[k] <> account;
                    total := total + posting_amounts[k];
                    before := before + CASE WHEN k < p THEN posting_amounts[k] ELSE 0 END;
                END LOOP;
            END IF;
            FOR k IN 1..coalesce(cardinality(prior_owner), 0) LOOP
                IF prior_owner[k] = item_reverses[i] AND lot_wallet[prior_lot[k]] = account THEN
                    total := total - prior_amount[k];
                END IF;
            END LOOP;
            skip := greatest(0, before - total);
            give := greatest(0, before + amount - total) - skip;
            FOR k IN REVERSE coalesce(cardinality(prior_owner), 0)..1 LOOP
                EXIT WHEN give = 0;
                CONTINUE WHEN prior_owner[k] <> item_reverses[i] OR lot_wallet[prior_lot[k]] <> account;
                j := prior_lot[k];
                left_over := least(give, prior_amount[k] - least(skip, prior_amount[k]));
                skip := skip - least(skip, prior_amount[k]);
                CONTINUE WHEN left_over = 0;
                lot_undo_count := lot_undo_count + 1;
                lot_undo_index[lot_undo_count] := j;
                lot_undo_remaining[lot_undo_count] := lot_remaining[j];
                lot_remaining[j] := lot_remaining[j] + left_over;
                give := give - left_over;
                IF lot_expires[j] <= created THEN
                    wallet_expiring[account] := wallet_expiring[account] + left_over;
                END IF;
            END LOOP;
        ELSIF posting_debit_wallets[p] <> 0 OR item_expires_at[i] IS NOT NULL THEN
            FOR k IN 1..CASE WHEN posting_debit_wallets[p] <> 0 THEN part_count ELSE 1 END LOOP
                IF posting_debit_wallets[p] <> 0 THEN
                    lot_at := lot_expires[part_lot[k]];
                    give := part_amount[k];
                ELSE
                    lot_at := item_expires_at[i];
                    give := amount;
                    IF lot_at <= created THEN  -- come and gone while the request travelled
                        wallet_expiring[account] := wallet_expiring[account] + give;
                    END IF;
                END IF;
                -- Into the wallet's list after its lots expiring no later; one lot per expiry
                -- from one posting.
                prev := 0;
                j := wallet_lot_head[account];
                WHILE j <> 0 AND lot_expires[j] <= lot_at LOOP
                    prev := j;
                    j := lot_next[j];
                END LOOP;
                IF prev > posting_lots AND lot_expires[prev] = lot_at THEN
                    lot_amount[prev] := lot_amount[prev] + give;
                    lot_remaining[prev] := lot_remaining[prev] + give;
                    CONTINUE;
                END IF;
                lot_count := lot_count + 1;
                lot_ids[lot_count] := nextval('lot_id_seq');
                lot_wallet[lot_count] := account;
                lot_origin[lot_count] := item_transaction_ids[i];
                lot_expires[lot_count] := lot_at;
                lot_amount[lot_count] := give;
                lot_remaining[lot_count] := give;
                lot_next[lot_count] := j;
                IF prev = 0 THEN
                    wallet_lot_head[account] := lot_count;
                ELSE
                    lot_next[prev] := lot_count;
                END IF;
            END LOOP;
        END IF;
    END LOOP;

    -- 4. A slot of each system account moved, with room for the group's net amount.
    FOR k IN 1..cardinality(system_id) LOOP
        CONTINUE WHEN system_entries[k] = 0;
        SELECT t.slot, t.last_sequence, t.head INTO slot_found, sequence_base, slot_head
        FROM ledger.take_slot(system_id[k], system_delta[k], system_entries[k]) t;
        IF slot_found IS NULL THEN
            IF item_count > 1 THEN
                -- The service posts the items again one by one; each then gets its own answer.
                RAISE EXCEPTION 'no slot of system account % has room for %', system_key[k], system_delta[k]
                    USING ERRCODE = 'WL001';
            END IF;
            item_state[1] := 'declined';
            item_code[1] := 'balance_limit_exceeded';
            item_detail[1] := format('The %s account would exceed the balance limit.', system_key[k]);
            entry_count := 0;
            FOR k IN REVERSE undo_count..1 LOOP  -- the item's changes of its wallets, undone
                wallet_balance[undo_account[k]] := undo_balance[k];
                wallet_entries[undo_account[k]] := undo_entries[k];
                wallet_held[undo_account[k]] := undo_held[k];
            END LOOP;
            EXIT;
        END IF;
        system_slot[k] := slot_found;
        system_entries[k] := sequence_base;  -- from here on: the slot's last account_sequence
        system_head[k] := slot_head;         -- and its chain's head
    END LOOP;
    -- Each entry's number in its slot (a wallet's are numbered already), and its hash: the next
    -- link of its wallet's or slot's chain.
    FOR p IN 1..entry_count LOOP
        k := entry_system[p];
        IF k = 0 THEN
            account := entry_position[p];
            wallet_head[account] := ledger.entry_hash(wallet_head[account], entry_transaction[p], entry_accounts[p],
                entry_direction[p], entry_amount[p], entry_balances[p], entry_asset[p], NULL, entry_sequence[p],
                created);
            entry_hash[p] := wallet_head[account];
        ELSE
            system_entries[k] := system_entries[k] + 1;
            entry_sequence[p] := system_entries[k];
            system_head[k] := ledger.entry_hash(system_head[k], entry_transaction[p], entry_accounts[p],
                entry_direction[p], entry_amount[p], NULL, entry_asset[p], system_slot[k], entry_sequence[p],
                created);
            entry_hash[p] := system_head[k];
        END IF;
    END LOOP;

    -- 5. Write the posted items' captured holds, wallets, transactions and entries, and the
    -- declines.
    IF item_hold_ids IS NOT NULL THEN
        UPDATE hold h
        SET status = 'captured', captured_amount = u.amount, transaction_id = u.id, updated_at = created
        FROM unnest(item_hold_ids, item_transaction_ids, posted_amount, item_state) AS u(hold_id, id, amount, state)
        WHERE u.state = 'posted' AND u.hold_id IS NOT NULL AND h.id = u.hold_id;
    END IF;
    IF lots_active AND entry_count > 0 THEN  -- each wallet's soonest open lot now
        FOR k IN 1..cardinality(wallet_ids) LOOP
            j := wallet_lot_head[k];
            WHILE j <> 0 AND lot_remaining[j] = 0 LOOP
                j := lot_next[j];
            END LOOP;
            wallet_lot_at[k] := CASE WHEN j <> 0 THEN lot_expires[j] END;
        END LOOP;
    END IF;
    IF entry_count > 0 OR wallet_held IS DISTINCT FROM wallet_held_before THEN
        entry_accounts := entry_accounts[1:entry_count];
        entry_balances := entry_balances[1:entry_count];
        UPDATE account a
        SET balance = w.balance, entry_count = w.entries, held = w.held, lot_expires_at = w.lot_at,
            ledger_head = w.head,
            hold_expires_at = CASE
                WHEN w.held = 0 THEN NULL
                WHEN w.held = w.held_before AND a.hold_expires_at > created THEN a.hold_expires_at
                ELSE (SELECT min(h.expires_at) FROM hold h WHERE h.wallet_id = a.id AND h.status = 'pending') END,
            updated_at = created
        FROM unnest(wallet_ids, wallet_balance, wallet_entries, wallet_held, wallet_held_before, wallet_lot_at,
                wallet_head)
            AS w(id, balance, entries, held, held_before, lot_at, head)
        WHERE a.id = w.id AND (w.id = ANY(entry_accounts) OR w.held <> w.held_before);
    END IF;
    IF entry_count > 0 THEN
        INSERT INTO transaction (id, type, asset, amount, wallet_id, reference, metadata, api_key_id, created_at,
            reverses, hold_id)
        SELECT item_transaction_ids[n], item_types[n], item_asset[n], posted_amount[n],
            coalesce(posted_wallet[n], posted_credited[n]), item_references[n], item_metadata[n]::json,
            item_api_key_ids[n], created, item_reverses[n], item_hold_ids[n]
        FROM generate_subscripts(item_transaction_ids, 1) AS n
        WHERE item_state[n] = 'posted';
        INSERT INTO entry (transaction_id, entry_index, account_id, direction, amount, balance_after, slot,
            account_sequence, created_at, hash)
        SELECT entry_transaction[n], entry_index[n], entry_accounts[n], entry_direction[n], entry_amount[n],
            entry_balances[n], system_slot[nullif(entry_system[n], 0)], entry_sequence[n], created, entry_hash[n]
        FROM generate_series(1, entry_count) AS n;
        UPDATE account_slot s SET head = v.head
        FROM unnest(system_id, system_slot, system_head) AS v(id, slot, head)
        WHERE v.slot IS NOT NULL AND s.account_id = v.id AND s.slot = v.slot;
    END IF;
    IF entry_count > 0 THEN  -- the events: the posted transactions, and the holds captured
        INSERT INTO event (id, type, subject_id, created_at, xid)
        SELECT item_transaction_ids[n], 'transaction.posted', item_transaction_ids[n], created, pg_current_xact_id()
        FROM generate_subscripts(item_transaction_ids, 1) AS n
        WHERE item_state[n] = 'posted';
        IF item_hold_ids IS NOT NULL THEN
            INSERT INTO event (id, type, subject_id, created_at, xid)
            SELECT ledger.uuid7(created), 'hold.captured', item_hold_ids[n], created, pg_current_xact_id()
            FROM generate_subscripts(item_hold_ids, 1) AS n
            WHERE item_state[n] = 'posted' AND item_hold_ids[n] IS NOT NULL;
        END IF;
    END IF;
    IF lots_active AND entry_count > 0 THEN
        UPDATE lot l SET remaining = v.remaining
        FROM unnest(lot_ids[1:lot_loaded], lot_remaining[1:lot_loaded], lot_before) AS v(id, remaining, before)
        WHERE v.remaining <> v.before AND l.id = v.id;
        IF lot_count > lot_loaded THEN  -- made by a posted item (an undone one's have no amount)
            INSERT INTO lot (id, wallet_id, transaction_id, amount, remaining, expires_at, created_at)
            SELECT v.id, wallet_ids[v.wallet], v.origin, v.amount, v.remaining, v.expires_at, created
            FROM unnest(lot_ids[lot_loaded + 1:lot_count], lot_wallet[lot_loaded + 1:lot_count],
                    lot_origin[lot_loaded + 1:lot_count], lot_amount[lot_loaded + 1:lot_count],
                    lot_remaining[lot_loaded + 1:lot_count], lot_expires[lot_loaded + 1:lot_count])
                AS v(id, wallet, origin, amount, remaining, expires_at)
            WHERE v.amount > 0;
        END IF;
        IF use_count > 0 THEN
            INSERT INTO lot_use (owner_id, position, lot_id, amount)
            SELECT v.owner, row_number() OVER (PARTITION BY v.owner ORDER BY v.n), lot_ids[v.lot], v.amount
            FROM unnest(use_owner[1:use_count], use_lot[1:use_count], use_amount[1:use_count])
                WITH ORDINALITY AS v(owner, lot, amount, n);
        END IF;
        -- Parts given back to lots that have expired expire now, after the items.
        IF array_remove(wallet_expiring, 0::bigint) <> '{}' THEN
            PERFORM ledger.expire_lots(ARRAY(
                SELECT u.id FROM unnest(wallet_ids, wallet_expiring) AS u(id, amount) WHERE u.amount > 0), created);
        END IF;
    END IF;
    IF entry_count = 0 THEN
        entry_accounts := '{}';
        entry_balances := '{}';
    END IF;
    IF 'deferred' = ANY(item_state) THEN
        DELETE FROM idempotency_key k
        USING unnest(item_api_key_ids, item_keys, item_state) AS u(api_key_id, key, state)
        WHERE u.state = 'deferred' AND k.api_key_id = u.api_key_id AND k.key = u.key;
    END IF;
    IF 'declined' = ANY(item_state) THEN
        UPDATE idempotency_key k
        SET transaction_id = NULL, decline_code = u.code, decline_detail = u.detail
        FROM unnest(item_api_key_ids, item_keys, item_code, item_detail, item_state)
            AS u(api_key_id, key, code, detail, state)
        WHERE u.state = 'declined' AND k.api_key_id = u.api_key_id AND k.key = u.key;
    END IF;
END
$$;
