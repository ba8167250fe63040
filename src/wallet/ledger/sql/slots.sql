-- Slots: a system account keeps its balance in ledger.slot_count() rows (account_slot), so that
-- concurrent postings to one system account (every spend credits revenue) never queue on one
-- row.

-- Takes a slot of the system account with room for `delta` (its balance stays within
-- +-balance_max) and moves it: from a random slot on, the first whose advisory lock (for this
-- transaction) is free; when every slot is held, waits for the first with room. Returns the slot
-- the account_sequence of its last entry before these `entries` and the hash of that entry (the
-- slot's chain head, ledger/sql/chains.sql); slot NULL when no slot has room. The caller numbers
-- its entries last_sequence + 1 .., chains them on from `head` and writes the slot's new head.
CREATE FUNCTION ledger.take_slot(account_id uuid, delta numeric, entries integer,
    OUT slot smallint, OUT last_sequence bigint, OUT head bytea)
LANGUAGE plpgsql AS $$
DECLARE
    first integer := floor(random() * ledger.slot_count())::integer;
    p integer;
BEGIN
    FOR p IN first..first + ledger.slot_count() - 1 LOOP
        CONTINUE WHEN NOT pg_try_advisory_xact_lock(uuid_hash(take_slot.account_id), p % ledger.slot_count());
        UPDATE account_slot s
        SET balance = s.balance + delta::bigint, entry_count = s.entry_count + entries
        WHERE s.account_id = take_slot.account_id AND s.slot = p % ledger.slot_count()
          AND s.balance + delta BETWEEN -ledger.balance_max() AND ledger.balance_max()
        RETURNING s.slot, s.entry_count - entries, s.head INTO slot, last_sequence, head;
        IF FOUND THEN
            RETURN;
        END IF;
    END LOOP;
    UPDATE account_slot s
    SET balance = s.balance + delta::bigint, entry_count = s.entry_count + entries
    WHERE s.account_id = take_slot.account_id AND s.slot = (
        SELECT o.slot FROM account_slot o
        WHERE o.account_id = take_slot.account_id
          AND o.balance + delta BETWEEN -ledger.balance_max() AND ledger.balance_max()
        ORDER BY o.slot < first, o.slot
        LIMIT 1
        FOR UPDATE)
    RETURNING s.slot, s.entry_count - entries, s.head INTO slot, last_sequence, head;
END
$$;
