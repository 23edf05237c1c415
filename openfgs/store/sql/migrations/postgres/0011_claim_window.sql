-- A claim's walk also returns the ranges of available_at and expires_at its picked rows span,
-- so the claim's UPDATE finds them within those ranges of whichever index of waiting rows its
-- plan reads. With only the ids to go by, a plan made while few rows waited (a new
-- deployment's first minute, a table analyzed while its queue was short, or autovacuum off)
-- read every waiting row's index entry to find the few picked: ~1 ms a claim at a backlog of
-- thousands, growing with the backlog (docs/architecture.md, "PostgreSQL round trips").
-- openfgs_pick_due stays for nodes of the previous release during a rolling upgrade.
CREATE FUNCTION openfgs_pick_due_window(p_now bigint, p_limit integer, p_scan integer,
    p_lock bigint, OUT ids bigint[], OUT first_due bigint, OUT last_due bigint,
    OUT first_expiry bigint, OUT last_expiry bigint) AS $$
DECLARE
    functions bigint[] := '{}';
    rooms integer[] := '{}';
    due record;
    slot integer;
    room integer;
BEGIN
    ids := '{}';
    PERFORM pg_advisory_xact_lock(p_lock);
    IF p_limit <= 0 THEN
        RETURN;
    END IF;
    FOR due IN
        SELECT id, function_id, available_at, expires_at FROM invocations
        WHERE status = 'WAIT' AND available_at <= p_now
        ORDER BY available_at
        LIMIT p_scan
    LOOP
        slot := array_position(functions, due.function_id);
        IF slot IS NULL THEN
            SELECT f.concurrency - (
                SELECT count(*) FROM invocations r
                WHERE r.function_id = f.id AND r.status = 'RUNNING'
            ) INTO room
            FROM functions f WHERE f.id = due.function_id;
            functions := functions || due.function_id;
            rooms := rooms || coalesce(room, 0);
            slot := cardinality(functions);
        END IF;
        IF rooms[slot] > 0 THEN
            ids := ids || due.id;
            rooms[slot] := rooms[slot] - 1;
            first_due := coalesce(first_due, due.available_at);
            last_due := due.available_at;
            first_expiry := least(first_expiry, due.expires_at);
            last_expiry := greatest(last_expiry, due.expires_at);
        END IF;
        EXIT WHEN cardinality(ids) >= p_limit;
    END LOOP;
END;
$$ LANGUAGE plpgsql;
