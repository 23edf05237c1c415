-- Records and their attempts partitioned by UTC day of start_time (ms since the epoch), so
-- that history does not slow the present and retention drops a whole day at once instead of
-- deleting its rows one by one (which leaves the table and its indexes bloated).
--
-- * invocations: PARTITION BY RANGE (start_time), one partition a day named
--   invocations_pYYYYMMDD, and invocations_default for a row whose day has no partition yet
--   (an accept never fails for want of one). A primary key must hold the partition key: it is
--   (id, start_time). request_id is no longer UNIQUE across the table (a unique index must hold
--   the partition key too): request ids are random v4 UUIDs drawn by the service, unique by
--   construction; each partition keeps a unique index on (request_id, start_time) for lookups.
-- * invocation_attempts: the same, by the attempt's own start_time (an attempt starts at or
--   after its record's start_time). Its key becomes (request_id, attempt, start_time).
-- * openfgs_ensure_partitions makes the day partitions of a range of days, ahead of time (the
--   store at start and the worker's beat: today and the next days), never on the accept path.
-- * openfgs_drop_day_partitions empties, then drops, the days that retention is done with.
-- The existing rows are moved over: old table renamed, partitioned table made, partitions
-- covering the old rows' days made, INSERT … SELECT, old table dropped. The id sequence is kept,
-- so ids continue where they were.

-- The lock every partition change of a schema takes turns under (advisory locks are
-- database-wide; schemas of one database do not wait for each other).
CREATE FUNCTION openfgs_partition_lock() RETURNS bigint AS $$
    SELECT (CAST(x'0F67' AS bigint) << 32) | (hashtext(current_schema()) & CAST(x'FFFFFFFF' AS bigint));
$$ LANGUAGE sql STABLE;

-- Whether relation p_name exists in the current schema, read from the catalog as committed now
-- (to_regclass answers from a cache that taking an advisory lock does not refresh).
CREATE FUNCTION openfgs_relation_exists(p_name text) RETURNS boolean AS $$
    SELECT EXISTS (
        SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = current_schema() AND c.relname = p_name
    );
$$ LANGUAGE sql STABLE;

-- The name of p_table's partition of UTC day p_day: <table>_pYYYYMMDD.
CREATE FUNCTION openfgs_partition_name(p_table text, p_day bigint) RETURNS text AS $$
    SELECT p_table || '_p' || to_char(to_timestamp(p_day * 86400) AT TIME ZONE 'UTC', 'YYYYMMDD');
$$ LANGUAGE sql IMMUTABLE;

-- The partition of p_table ('invocations' or 'invocation_attempts') holding UTC day p_day
-- (start_time / 86400000), made if missing. Rows of that day already in the DEFAULT partition
-- are moved into it first (ATTACH would refuse them). Returns whether it made one.
CREATE FUNCTION openfgs_ensure_partition(p_table text, p_day bigint) RETURNS boolean AS $$
DECLARE
    part text := openfgs_partition_name(p_table, p_day);
    lo bigint := p_day * 86400000;
    hi bigint := (p_day + 1) * 86400000;
    strays boolean;
BEGIN
    IF openfgs_relation_exists(part) THEN
        RETURN FALSE;
    END IF;
    EXECUTE format('SELECT EXISTS (SELECT 1 FROM %I WHERE start_time >= %s AND start_time < %s)',
        p_table || '_default', lo, hi) INTO strays;
    IF strays THEN
        EXECUTE format('CREATE TABLE %I (LIKE %I INCLUDING DEFAULTS)', part, p_table);
        EXECUTE format('WITH moved AS (DELETE FROM %I WHERE start_time >= %s AND start_time < %s '
            'RETURNING *) INSERT INTO %I SELECT * FROM moved', p_table || '_default', lo, hi, part);
        EXECUTE format('ALTER TABLE %I ATTACH PARTITION %I FOR VALUES FROM (%s) TO (%s)',
            p_table, part, lo, hi);
    ELSE
        EXECUTE format('CREATE TABLE %I PARTITION OF %I FOR VALUES FROM (%s) TO (%s)',
            part, p_table, lo, hi);
    END IF;
    RETURN TRUE;
END;
$$ LANGUAGE plpgsql;

-- The day partitions of both tables for the UTC days p_first … p_last, under the partition
-- lock (two nodes making the same day take turns; the second finds it made). Cheap when they
-- all exist: no lock on the tables is taken then. Making one locks the parent table (ACCESS
-- EXCLUSIVE, briefly): each waits at most p_lock_ms for it, rather than queue accepts behind a
-- long query; the ones left are made at the next call. Returns how many partitions it made.
CREATE FUNCTION openfgs_ensure_partitions(p_first bigint, p_last bigint, p_lock_ms integer)
RETURNS integer AS $$
DECLARE
    made integer := 0;
    day bigint;
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM generate_series(p_first, p_last) AS d(day), unnest(
            ARRAY['invocations', 'invocation_attempts']) AS t(name)
        WHERE NOT openfgs_relation_exists(openfgs_partition_name(t.name, d.day))
    ) THEN
        RETURN 0;
    END IF;
    PERFORM pg_advisory_xact_lock(openfgs_partition_lock());
    PERFORM set_config('lock_timeout', p_lock_ms || 'ms', TRUE);
    FOR day IN SELECT generate_series(p_first, p_last) LOOP
        BEGIN
            made := made + openfgs_ensure_partition('invocations', day)::integer;
            made := made + openfgs_ensure_partition('invocation_attempts', day)::integer;
        EXCEPTION WHEN lock_not_available THEN
            EXIT;  -- busy now: the next call makes the rest
        END;
    END LOOP;
    PERFORM set_config('lock_timeout', '0', TRUE);
    RETURN made;
END;
$$ LANGUAGE plpgsql;

-- Retention by whole days: each day partition of invocations whose whole range is older than
-- p_cutoff, holding no WAIT or RUNNING record and no record that ended at or after p_cutoff,
-- is dropped with the attempts partition of the same day; the row deletes of
-- purge_invocations handle what is left (a day kept for a record still waiting or running).
-- Each drop waits at most p_lock_ms for its lock on the parent table (it needs ACCESS
-- EXCLUSIVE): rather than queue accepts behind a long query, a busy day is left for the next
-- beat. The checks use the per-partition partial indexes: O(1) in the day's rows.
-- p_truncate: TRUNCATE those days instead of dropping them. The files of a dropped table are
-- unlinked at commit, with the parent's lock still held (seconds for a day of gigabytes,
-- during which no accept gets through); a TRUNCATE locks the day's partition alone. The
-- store calls it with p_truncate first, then again to drop the emptied days at once.
-- Returns the days dropped or emptied (start_time / 86400000).
CREATE FUNCTION openfgs_drop_day_partitions(
    p_cutoff bigint, p_lock_ms integer, p_truncate boolean
) RETURNS bigint[] AS $$
DECLARE
    dropped bigint[] := '{}';
    part record;
    busy boolean;
    ended bigint;
    attempts text;
BEGIN
    PERFORM pg_advisory_xact_lock(openfgs_partition_lock());
    FOR part IN
        SELECT c.relname AS name, b.upper
        FROM pg_inherits i
        JOIN pg_class c ON c.oid = i.inhrelid
        CROSS JOIN LATERAL (SELECT CAST((regexp_match(pg_get_expr(c.relpartbound, c.oid),
            'TO \(''?(-?\d+)''?\)'))[1] AS bigint) AS upper) b
        WHERE i.inhparent = to_regclass(quote_ident(current_schema()) || '.invocations')
          AND b.upper IS NOT NULL AND b.upper <= p_cutoff
        ORDER BY b.upper
    LOOP
        EXECUTE format('SELECT EXISTS (SELECT 1 FROM %I WHERE status = ''WAIT'') '
            'OR EXISTS (SELECT 1 FROM %I WHERE status = ''RUNNING'')', part.name, part.name)
            INTO busy;
        EXECUTE format('SELECT max(end_time) FROM %I', part.name) INTO ended;
        CONTINUE WHEN busy OR ended >= p_cutoff;
        attempts := 'invocation_attempts' || substr(part.name, length('invocations') + 1);
        BEGIN
            PERFORM set_config('lock_timeout', p_lock_ms || 'ms', TRUE);
            EXECUTE format(CASE WHEN p_truncate THEN 'TRUNCATE %I' ELSE 'DROP TABLE %I' END,
                part.name);
            IF openfgs_relation_exists(attempts) THEN
                EXECUTE format(CASE WHEN p_truncate THEN 'TRUNCATE %I' ELSE 'DROP TABLE %I' END,
                    attempts);
            END IF;
            dropped := dropped || ((part.upper - 1) / 86400000);
        EXCEPTION WHEN lock_not_available THEN
            NULL;  -- busy now: the next beat tries again
        END;
    END LOOP;
    PERFORM set_config('lock_timeout', '0', TRUE);
    RETURN dropped;
END;
$$ LANGUAGE plpgsql;

-- The move: the old tables step aside (their indexes too: index names are per schema).
ALTER TABLE invocations RENAME TO invocations_unpartitioned;
ALTER TABLE invocation_attempts RENAME TO invocation_attempts_unpartitioned;
DROP INDEX invocations_by_time, invocations_by_status, invocations_waiting, invocations_running,
    invocations_ended, invocations_expiring;
ALTER TABLE invocations_unpartitioned RENAME CONSTRAINT invocations_pkey
    TO invocations_unpartitioned_pkey;
ALTER TABLE invocation_attempts_unpartitioned RENAME CONSTRAINT invocation_attempts_pkey
    TO invocation_attempts_unpartitioned_pkey;
ALTER TABLE invocations_unpartitioned DROP CONSTRAINT invocations_request_id_key;
DROP TRIGGER invocations_waiting_notify ON invocations_unpartitioned;
ALTER SEQUENCE invocations_id_seq OWNED BY NONE;

CREATE TABLE invocations (
    id BIGINT NOT NULL DEFAULT nextval('invocations_id_seq'),
    request_id TEXT NOT NULL,
    function_id BIGINT NOT NULL,
    version TEXT NOT NULL,
    status TEXT NOT NULL,
    payload BYTEA NOT NULL,
    start_time BIGINT NOT NULL,
    end_time BIGINT,
    error_code INTEGER NOT NULL DEFAULT 0,
    error_message TEXT NOT NULL DEFAULT '',
    result BYTEA,
    attempt INTEGER NOT NULL DEFAULT 0,
    available_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    lease_until BIGINT,
    worker_id TEXT,
    max_attempts INTEGER NOT NULL DEFAULT 1,
    cancel_requested BOOLEAN NOT NULL DEFAULT FALSE,
    depth INTEGER NOT NULL DEFAULT 0,
    rerun_of TEXT,
    attempt_started_at BIGINT,
    PRIMARY KEY (id, start_time)
) PARTITION BY RANGE (start_time);
ALTER SEQUENCE invocations_id_seq OWNED BY invocations.id;
CREATE TABLE invocations_default PARTITION OF invocations DEFAULT;

-- Lookups by request id (each partition probed when the day is not known) and a guard against
-- the same record inserted twice.
CREATE UNIQUE INDEX invocations_by_request ON invocations (request_id, start_time);
CREATE INDEX invocations_by_time ON invocations (function_id, start_time, request_id) INCLUDE (id);
CREATE INDEX invocations_by_status ON invocations (function_id, status, start_time, request_id)
    INCLUDE (id);
CREATE INDEX invocations_waiting ON invocations (available_at) WHERE status = 'WAIT';
CREATE INDEX invocations_running ON invocations (lease_until) WHERE status = 'RUNNING';
CREATE INDEX invocations_ended ON invocations (end_time) WHERE end_time IS NOT NULL;
CREATE INDEX invocations_expiring ON invocations (expires_at) WHERE status = 'WAIT';

CREATE TRIGGER invocations_waiting_notify
AFTER INSERT OR UPDATE OF status ON invocations
FOR EACH ROW WHEN (NEW.status = 'WAIT')
EXECUTE FUNCTION openfgs_notify_waiting();

CREATE TABLE invocation_attempts (
    request_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    worker_id TEXT,
    start_time BIGINT NOT NULL,
    end_time BIGINT,
    outcome TEXT NOT NULL,
    error_code INTEGER NOT NULL DEFAULT 0,
    error_message TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (request_id, attempt, start_time)
) PARTITION BY RANGE (start_time);
CREATE TABLE invocation_attempts_default PARTITION OF invocation_attempts DEFAULT;

SELECT openfgs_ensure_partition('invocations', day)
FROM (SELECT DISTINCT start_time / 86400000 AS day FROM invocations_unpartitioned) AS d;
SELECT openfgs_ensure_partition('invocation_attempts', day)
FROM (SELECT DISTINCT start_time / 86400000 AS day FROM invocation_attempts_unpartitioned) AS d;

INSERT INTO invocations SELECT id, request_id, function_id, version, status, payload, start_time,
    end_time, error_code, error_message, result, attempt, available_at, expires_at, lease_until,
    worker_id, max_attempts, cancel_requested, depth, rerun_of, attempt_started_at
FROM invocations_unpartitioned;
INSERT INTO invocation_attempts SELECT request_id, attempt, worker_id, start_time, end_time,
    outcome, error_code, error_message
FROM invocation_attempts_unpartitioned;

DROP TABLE invocations_unpartitioned;
DROP TABLE invocation_attempts_unpartitioned;
