-- Claims walk the due waiting rows oldest first and stop as soon as they have what they came
-- for, skipping functions that have no room left (strategy_config.concurrency less what runs),
-- like the SQLite store's claim. Ranking a fixed window of candidates in SQL cost ~1 ms per
-- claim however few rows it took. It first takes the claim advisory lock (p_lock) for the rest
-- of the transaction, so claims take turns across workers and a claim is one statement.
CREATE FUNCTION openfgs_pick_due(p_now bigint, p_limit integer, p_scan integer, p_lock bigint)
RETURNS bigint[] AS $$
DECLARE
    picked bigint[] := '{}';
    functions bigint[] := '{}';
    rooms integer[] := '{}';
    due record;
    slot integer;
    room integer;
BEGIN
    PERFORM pg_advisory_xact_lock(p_lock);
    IF p_limit <= 0 THEN
        RETURN picked;
    END IF;
    FOR due IN
        SELECT id, function_id FROM invocations
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
            picked := picked || due.id;
            rooms[slot] := rooms[slot] - 1;
        END IF;
        EXIT WHEN cardinality(picked) >= p_limit;
    END LOOP;
    RETURN picked;
END;
$$ LANGUAGE plpgsql;
