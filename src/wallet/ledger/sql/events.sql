-- Events: every posted transaction and every change of a hold's status writes a row of `event`
-- in its own database transaction (ledger.post, ledger.expire_lots, ledger.expire_holds,
-- ledger.place_hold, ledger.void_hold). The feed shows them by position, and positions are given
-- here, after commit, by one sequencer at a time:
--
-- A transaction's id (xid) is taken before it commits, and transactions commit in any order, so
-- no value written inside a transaction can order the feed: a reader that has seen "up to N"
-- would miss an N-1 that commits later. Instead each run of the sequencer takes the events of
-- committed transactions that have no position yet and gives them the next positions, in
-- created_at order (which is the order of any two that touch one wallet: a wallet's postings
-- have strictly increasing times), and within one database transaction in the order it wrote
-- them (`ordinal`). An event gets a position only once its transaction has
-- committed, and every later run's positions are higher: a reader following positions never
-- skips one, and sees each once.
--
-- Which events can still be without a position: those of transactions at or above the horizon of
-- the last complete run, i.e. the oldest transaction still running when it took its snapshot
-- (pg_snapshot_xmin). Every transaction below it had ended before that snapshot, so its events
-- were seen and placed. A run looks only there (event_xid_index), not at the whole table.

-- One run: gives positions to up to `batch_size` events. Returns how many it placed, or -1 when
-- another run holds the sequencer (the caller just tries again later).
CREATE FUNCTION ledger.sequence_events(batch_size integer) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    state record;
    placed integer;
    new_horizon xid8;
BEGIN
    -- "wallet" in ASCII, then 4: one sequencer run at a time, across every process.
    IF NOT pg_try_advisory_xact_lock(x'77616C6C65740004'::bigint) THEN
        RETURN -1;
    END IF;
    SELECT s.last_position, s.horizon INTO state FROM event_sequencer s;
    WITH snapshot AS (
        SELECT pg_snapshot_xmin(pg_current_snapshot()) AS xmin
    ), candidates AS (
        SELECT e.id, e.created_at, e.ordinal FROM event e
        WHERE e.xid >= state.horizon
          AND NOT EXISTS (SELECT FROM event_position p WHERE p.event_id = e.id)
        ORDER BY e.created_at, e.ordinal
        LIMIT batch_size
    ), positioned AS (
        INSERT INTO event_position (position, event_id)
        SELECT state.last_position + row_number() OVER (ORDER BY c.created_at, c.ordinal), c.id FROM candidates c
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM positioned), (SELECT s.xmin FROM snapshot s) INTO placed, new_horizon;
    -- Nothing placed: nothing written either (an idle service's sequencer takes no xid, writes
    -- no WAL and waits for no standby); the next run looks from the same horizon.
    IF placed = 0 THEN
        RETURN 0;
    END IF;
    -- A full batch may have left some below the horizon: the next run looks from the old one.
    UPDATE event_sequencer
    SET last_position = last_position + placed,
        horizon = CASE WHEN placed < batch_size THEN new_horizon ELSE event_sequencer.horizon END;
    RETURN placed;
END
$$;

-- Deletes up to `batch_size` of the oldest events created before `before` that have a position
-- no relay still needs (at most every relay's position; any, when no relay has run), and moves
-- kept_since past them. Returns how many it deleted.
CREATE FUNCTION ledger.purge_events(before timestamptz, batch_size integer) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    deleted integer;
    last_deleted timestamptz;
BEGIN
    WITH old AS (
        SELECT p.position, p.event_id, e.created_at FROM event_position p JOIN event e ON e.id = p.event_id
        WHERE e.created_at < before
          AND p.position <= coalesce((SELECT min(r.position) FROM event_relay r), 9223372036854775807)
        ORDER BY p.position
        LIMIT batch_size
    ), unplaced AS (
        DELETE FROM event_position p USING old WHERE p.position = old.position
    ), gone AS (
        DELETE FROM event e USING old WHERE e.id = old.event_id
        RETURNING e.created_at
    )
    SELECT count(*), max(g.created_at) INTO deleted, last_deleted FROM gone g;
    IF deleted > 0 THEN
        -- From here on every transaction still has its event.
        UPDATE event_sequencer SET kept_since = greatest(kept_since, last_deleted + interval '1 microsecond');
    END IF;
    RETURN deleted;
END
$$;
