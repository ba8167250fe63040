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
    slot_first integer;
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
    SELECT u.api_key_id, u.key, u.fingerprint, u.transaction_id
    FROM unnest(item_api_key_ids, item_keys, item_fingerprints, item_transaction_ids)
        AS u(api_key_id, key, fingerprint, transaction_id)
    ORDER BY u.api_key_id, u.key
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
            array_agg(l.hold_expires_at ORDER BY g.position),
            greatest(clock_timestamp(), max(l.updated_at)),
            (SELECT array_agg(a.asset || ':' || a.kind ORDER BY a.id) FROM account a WHERE a.kind <> 'user'),
            (SELECT array_agg(a.id ORDER BY a.id) FROM account a WHERE a.kind <> 'user')
        INTO wallet_asset, wallet_balance, wallet_entries, wallet_held, wallet_hold_expires_at, created,
            system_key, system_id
        FROM generate_series(1, cardinality(wallet_ids)) AS g(position)
        LEFT JOIN (
            SELECT u.position, a.asset, a.balance, a.entry_count, a.held, a.hold_expires_at, a.updated_at
            FROM unnest(wallet_ids) WITH ORDINALITY AS u(id, position)
            JOIN account a ON a.id = u.id AND a.kind = 'user'
            ORDER BY a.id
            FOR UPDATE OF a
        ) l ON l.position = g.position;
    ELSE
        SELECT array_agg(l.asset ORDER BY g.position), array_agg(l.balance ORDER BY g.position),
            array_agg(l.entry_count ORDER BY g.position), array_agg(l.held ORDER BY g.position),
            array_agg(l.hold_expires_at ORDER BY g.position),
            greatest(clock_timestamp(), max(l.updated_at)),
            (SELECT array_agg(a.asset || ':' || a.kind ORDER BY a.id) FROM account a WHERE a.kind <> 'user'),
            (SELECT array_agg(a.id ORDER BY a.id) FROM account a WHERE a.kind <> 'user')
        INTO wallet_asset, wallet_balance, wallet_entries, wallet_held, wallet_hold_expires_at, created,
            system_key, system_id
        FROM generate_series(1, cardinality(wallet_ids)) AS g(position)
        LEFT JOIN (
            SELECT u.position, a.asset, a.balance, a.entry_count, a.held, a.hold_expires_at, a.updated_at
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
    -- `created`, read after the locks, is not earlier than any entry of these wallets.

    -- The holds of these wallets that are past their expiry are expired from now on.
    wallet_held_before := wallet_held;
    due_wallets := ARRAY(
        SELECT u.id FROM unnest(wallet_ids, wallet_hold_expires_at) AS u(id, expires_at)
        WHERE u.expires_at <= created);
    IF cardinality(due_wallets) > 0 THEN
        FOR row IN SELECT * FROM ledger.expire_holds(due_wallets, created) LOOP
            k := array_position(wallet_ids, row.wallet_id);
            wallet_held[k] := wallet_held[k] - row.released;
        END LOOP;
    END IF;
    -- The holds the captures take, and the transactions the reversals reverse, locked in id order.
    -- (Without wait_for_locks, one another transaction holds is skipped: its item is deferred.)
    IF item_hold_ids IS NOT NULL AND wait_for_locks THEN
        SELECT array_agg(l.id), array_agg(l.status), array_agg(l.amount), array_agg(l.wallet_id),
            array_agg(l.expires_at)
        INTO hold_ids, hold_status, hold_amount, hold_wallet, hold_expires_at
        FROM (
            SELECT h.id, h.status, h.amount, h.wallet_id, h.expires_at FROM hold h
            WHERE h.id = ANY(item_hold_ids) ORDER BY h.id FOR UPDATE
        ) l;
    ELSIF item_hold_ids IS NOT NULL THEN
        SELECT array_agg(l.id), array_agg(l.status), array_agg(l.amount), array_agg(l.wallet_id),
            array_agg(l.expires_at)
        INTO hold_ids, hold_status, hold_amount, hold_wallet, hold_expires_at
        FROM (
            SELECT h.id, h.status, h.amount, h.wallet_id, h.expires_at FROM hold h
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

    system_delta := array_fill(0::numeric, ARRAY[cardinality(system_id)]);
    system_entries := array_fill(0, ARRAY[cardinality(system_id)]);
    system_slot := array_fill(NULL::smallint, ARRAY[cardinality(system_id)]);

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
                END LOOP;
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
            IF account = 0 THEN
                k := array_position(system_key,
                    item_asset[i] || ':' || CASE side WHEN 1 THEN posting_debit_systems[p] ELSE posting_credit_systems[p] END);
                system_delta[k] := system_delta[k] + CASE side WHEN 1 THEN -amount ELSE amount END;
                system_entries[k] := system_entries[k] + 1;
                entry_accounts[entry_count] := system_id[k];
                entry_balances[entry_count] := NULL;
                entry_system[entry_count] := k;
                CONTINUE;
            ELSIF side = 1 AND wallet_balance[account] - wallet_held[account] < amount THEN
                code := 'insufficient_funds';
                detail := format('Wallet %s has %s available, less than %s.',
                    wallet_ids[account], wallet_balance[account] - wallet_held[account], amount);
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
    END LOOP;

    -- 4. A slot of each system account moved, with room for the group's net amount: from a
    -- random one on, the first whose advisory lock is free; else wait for the first with room.
    FOR k IN 1..cardinality(system_id) LOOP
        CONTINUE WHEN system_entries[k] = 0;
        slot_first := floor(random() * ledger.slot_count())::integer;
        FOR p IN slot_first..slot_first + ledger.slot_count() - 1 LOOP
            CONTINUE WHEN NOT pg_try_advisory_xact_lock(uuid_hash(system_id[k]), p % ledger.slot_count());
            UPDATE account_slot s
            SET balance = s.balance + system_delta[k]::bigint, entry_count = s.entry_count + system_entries[k]
            WHERE s.account_id = system_id[k] AND s.slot = p % ledger.slot_count()
              AND s.balance + system_delta[k] BETWEEN -ledger.balance_max() AND ledger.balance_max()
            RETURNING s.slot, s.entry_count - system_entries[k] INTO slot_found, sequence_base;
            EXIT WHEN FOUND;
        END LOOP;
        IF slot_found IS NULL THEN
            UPDATE account_slot s
            SET balance = s.balance + system_delta[k]::bigint, entry_count = s.entry_count + system_entries[k]
            WHERE s.account_id = system_id[k] AND s.slot = (
                SELECT o.slot FROM account_slot o
                WHERE o.account_id = system_id[k]
                  AND o.balance + system_delta[k] BETWEEN -ledger.balance_max() AND ledger.balance_max()
                ORDER BY o.slot < slot_first, o.slot
                LIMIT 1
                FOR UPDATE)
            RETURNING s.slot, s.entry_count - system_entries[k] INTO slot_found, sequence_base;
        END IF;
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
            EXIT;
        END IF;
        system_slot[k] := slot_found;
        system_entries[k] := sequence_base;  -- from here on: the slot's last account_sequence
        slot_found := NULL;
    END LOOP;
    FOR p IN 1..entry_count LOOP
        k := entry_system[p];
        CONTINUE WHEN k = 0;
        system_entries[k] := system_entries[k] + 1;
        entry_sequence[p] := system_entries[k];
    END LOOP;

    -- 5. Write the posted items' captured holds, wallets, transactions and entries, and the
    -- declines.
    IF item_hold_ids IS NOT NULL THEN
        UPDATE hold h
        SET status = 'captured', captured_amount = u.amount, transaction_id = u.id, updated_at = created
        FROM unnest(item_hold_ids, item_transaction_ids, posted_amount, item_state) AS u(hold_id, id, amount, state)
        WHERE u.state = 'posted' AND u.hold_id IS NOT NULL AND h.id = u.hold_id;
    END IF;
    IF entry_count > 0 OR wallet_held IS DISTINCT FROM wallet_held_before THEN
        entry_accounts := entry_accounts[1:entry_count];
        entry_balances := entry_balances[1:entry_count];
        UPDATE account a
        SET balance = w.balance, entry_count = w.entries, held = w.held,
            hold_expires_at = CASE
                WHEN w.held = 0 THEN NULL
                WHEN w.held = w.held_before AND a.hold_expires_at > created THEN a.hold_expires_at
                ELSE (SELECT min(h.expires_at) FROM hold h WHERE h.wallet_id = a.id AND h.status = 'pending') END,
            updated_at = created
        FROM unnest(wallet_ids, wallet_balance, wallet_entries, wallet_held, wallet_held_before)
            AS w(id, balance, entries, held, held_before)
        WHERE a.id = w.id AND (w.id = ANY(entry_accounts) OR w.held <> w.held_before);
    END IF;
    IF entry_count > 0 THEN
        INSERT INTO transaction (id, type, asset, amount, wallet_id, reference, metadata, api_key_id, created_at,
            reverses, hold_id)
        SELECT u.id, u.type, u.asset, u.amount, coalesce(u.debited, u.credited), u.reference, u.metadata::json,
            u.api_key_id, created, u.reverses, u.hold_id
        FROM unnest(item_transaction_ids, item_types, item_asset, posted_amount, posted_wallet, posted_credited,
                item_references, item_metadata, item_api_key_ids, item_state, item_reverses, item_hold_ids)
            AS u(id, type, asset, amount, debited, credited, reference, metadata, api_key_id, state, reverses,
                hold_id)
        WHERE u.state = 'posted';
        INSERT INTO entry (transaction_id, entry_index, account_id, direction, amount, balance_after, slot,
            account_sequence, created_at)
        SELECT e.transaction_id, e.entry_index, e.account_id, e.direction, e.amount, e.balance_after,
            system_slot[nullif(e.system, 0)], e.sequence, created
        FROM unnest(entry_transaction[1:entry_count], entry_index[1:entry_count], entry_accounts,
                entry_direction[1:entry_count], entry_amount[1:entry_count], entry_balances,
                entry_system[1:entry_count], entry_sequence[1:entry_count])
            AS e(transaction_id, entry_index, account_id, direction, amount, balance_after, system, sequence);
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
