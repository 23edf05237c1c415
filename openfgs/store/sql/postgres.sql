-- Named queries of the PostgreSQL backend that differ from queries.sql. sqlite.sql holds the
-- same names. Lists are bound as arrays (= ANY).

-- name: lock_function
-- The function's code digest before an update, its row locked until the update commits.
SELECT code_digest FROM functions WHERE id = :id FOR UPDATE;

-- name: list_functions
SELECT * FROM functions
WHERE project_id = :project_id AND qualifier = 'latest'
  AND (CAST(:package AS TEXT) IS NULL OR package = :package)
  AND (CAST(:name_like AS TEXT) IS NULL OR strpos(name, :name_like) > 0)
ORDER BY created_at, id
LIMIT :limit OFFSET :offset;

-- name: count_functions
SELECT count(*) AS count FROM functions
WHERE project_id = :project_id AND qualifier = 'latest'
  AND (CAST(:package AS TEXT) IS NULL OR package = :package)
  AND (CAST(:name_like AS TEXT) IS NULL OR strpos(name, :name_like) > 0);

-- name: list_invocations_by_ids
SELECT request_id, function_id, status, start_time, end_time, error_code, error_message,
    attempt, version
FROM invocations
WHERE request_id = ANY(:request_ids)
  AND function_id = :function_id
  AND start_time >= :begin AND start_time <= :end
  AND status = ANY(:statuses)
ORDER BY start_time DESC, request_id DESC;

-- name: list_active_invocations
SELECT request_id, function_id, status, start_time, end_time, error_code, error_message,
    attempt, version
FROM invocations
WHERE function_id = :function_id
  AND status = ANY(:statuses)
  AND start_time >= :begin AND start_time <= :end
ORDER BY start_time DESC, request_id DESC
LIMIT :limit OFFSET :offset;

-- name: count_active_invocations
SELECT count(*) AS count FROM invocations
WHERE function_id = :function_id
  AND status = ANY(:statuses)
  AND start_time >= :begin AND start_time <= :end;

-- name: claim_invocations
-- Waiting rows whose time has come, oldest first, as many per function as its concurrency
-- (strategy_config.concurrency) leaves room for beside what already runs, on every node: the
-- walk is openfgs_pick_due_window (migrations 0003, 0011), which takes the claim advisory lock
-- first. The walk runs once, materialized: as the inner side of a join (a plan PostgreSQL keeps
-- for a prepared statement made while the table was nearly empty) it ran once per waiting
-- row, and one claim took hundreds of rows past its limit. Its ids are then found by key
-- (= ANY of the one array; joined, they were hashed against every waiting row) within the
-- ranges of available_at and expires_at they span: whichever index the plan reads — the
-- partial indexes of waiting rows look smallest to a plan made while few rows waited — reads
-- only that range, not every waiting row's entry (~1 ms per thousand waiting).
WITH picked AS MATERIALIZED (
    SELECT * FROM openfgs_pick_due_window(:now, :limit, :scan, :claim_lock)
)
UPDATE invocations
SET status = 'RUNNING', attempt = attempt + 1, lease_until = :lease_until,
    worker_id = :worker_id, attempt_started_at = :now
WHERE invocations.id = ANY(CAST((SELECT ids FROM picked) AS BIGINT[]))
  AND invocations.status = 'WAIT'
  AND invocations.available_at BETWEEN (SELECT first_due FROM picked)
      AND (SELECT last_due FROM picked)
  AND invocations.expires_at BETWEEN (SELECT first_expiry FROM picked)
      AND (SELECT last_expiry FROM picked)
RETURNING request_id, function_id, version, payload, attempt, expires_at, max_attempts, depth,
    error_message AS last_error, start_time AS accepted_at;

-- name: claim_expired_invocations
-- Materialized for the same reason as claim_invocations: the rows are chosen once, then each
-- is found by its key (id, start_time) in its own day's partition.
WITH due AS MATERIALIZED (
    SELECT id, start_time FROM invocations
    WHERE status = 'WAIT' AND expires_at <= :now
    ORDER BY expires_at
    LIMIT :limit
    FOR UPDATE SKIP LOCKED
)
UPDATE invocations
SET status = 'RUNNING', attempt = attempt + 1, lease_until = :lease_until,
    worker_id = :worker_id, attempt_started_at = :now
FROM due
WHERE invocations.id = due.id AND invocations.start_time = due.start_time
RETURNING request_id, function_id, version, payload, attempt, expires_at, max_attempts, depth,
    error_message AS last_error, invocations.start_time AS accepted_at;


-- Dependencies (migration 0005) -------------------------------------------------------------

-- name: list_dependencies
-- Each dependency with its latest version; name: a part of the name.
SELECT v.id, v.dep_id, v.project_id, d.name, v.version, v.runtime, v.description, v.file_name,
    v.digest, v.etag, v.size, v.created_at
FROM dependencies d JOIN dependency_versions v ON v.dep_id = d.id AND v.version = (
    SELECT max(version) FROM dependency_versions WHERE dep_id = d.id
)
WHERE d.project_id = :project_id
  AND (CAST(:name_like AS TEXT) IS NULL OR strpos(d.name, :name_like) > 0)
  AND (CAST(:runtime AS TEXT) IS NULL OR v.runtime = :runtime)
ORDER BY d.name, d.id
LIMIT :limit OFFSET :offset;

-- name: count_dependencies
SELECT count(*) AS count
FROM dependencies d JOIN dependency_versions v ON v.dep_id = d.id AND v.version = (
    SELECT max(version) FROM dependency_versions WHERE dep_id = d.id
)
WHERE d.project_id = :project_id
  AND (CAST(:name_like AS TEXT) IS NULL OR strpos(d.name, :name_like) > 0)
  AND (CAST(:runtime AS TEXT) IS NULL OR v.runtime = :runtime);

-- name: get_dependency_versions_by_ids
SELECT v.id, v.dep_id, v.project_id, d.name, v.version, v.runtime, v.description, v.file_name,
    v.digest, v.etag, v.size, v.created_at
FROM dependency_versions v JOIN dependencies d ON d.id = v.dep_id
WHERE v.project_id = :project_id AND v.id = ANY(:ids);

-- name: lock_dependency_versions
-- The versions of :ids that exist, kept from being deleted until the function's row commits.
SELECT id FROM dependency_versions WHERE id = ANY(:ids) FOR SHARE;

-- name: lock_dependency_version
-- A version about to be deleted, locked first: a function listing it concurrently either
-- commits before the in-use check sees it, or finds the version gone.
SELECT id FROM dependency_versions WHERE id = :id FOR UPDATE;

-- name: dependency_version_in_use
SELECT 1 AS used FROM functions
WHERE CAST(depend_versions AS jsonb) @> jsonb_build_array(CAST(:id AS TEXT))
LIMIT 1;

-- name: referenced_dependency_versions
-- The digest of every dependency version some function lists.
SELECT DISTINCT v.id, v.digest
FROM functions f
CROSS JOIN LATERAL jsonb_array_elements_text(CAST(f.depend_versions AS jsonb)) AS j(value)
JOIN dependency_versions v ON v.id = j.value;

-- name: finish_invocations
-- Outcomes of many attempts in one statement (one round trip, one commit): each row still
-- RUNNING that attempt gets its attempt history row and ends (SUCCESS/FAIL/DISCARD) or waits
-- again until :available_ats (WAIT, the outcome RETRY), as finish_invocation and
-- requeue_invocation do one at a time. The rows are locked in id order, as every statement
-- locking several rows does, so two batches cannot deadlock. [start_from, start_to] holds the
-- records' start_times (a worker's claims carry them): PostgreSQL searches only the day
-- partitions it overlaps (migration 0009). Returns the request ids written.
WITH outcome AS (
    SELECT * FROM unnest(
        CAST(:request_ids AS TEXT[]), CAST(:attempts AS INTEGER[]), CAST(:statuses AS TEXT[]),
        CAST(:end_times AS BIGINT[]), CAST(:error_codes AS INTEGER[]),
        CAST(:error_messages AS TEXT[]), CAST(:results AS BYTEA[]),
        CAST(:available_ats AS BIGINT[])
    ) AS o (request_id, attempt, status, end_time, error_code, error_message, result,
        available_at)
), running AS MATERIALIZED (
    SELECT i.id, i.start_time, i.worker_id, i.attempt_started_at, o.*
    FROM outcome o JOIN invocations i ON i.request_id = o.request_id
    WHERE i.request_id = ANY(CAST(:request_ids AS TEXT[]))  -- found by key, not among all running
      AND i.start_time >= :start_from AND i.start_time <= :start_to
      AND i.attempt = o.attempt AND i.status = 'RUNNING'
    ORDER BY i.id
    FOR UPDATE OF i
), recorded AS (
    INSERT INTO invocation_attempts (request_id, attempt, worker_id, start_time, end_time,
        outcome, error_code, error_message)
    SELECT request_id, attempt, worker_id, coalesce(attempt_started_at, end_time), end_time,
        CASE WHEN status = 'WAIT' THEN 'RETRY' ELSE status END, error_code, error_message
    FROM running
    ON CONFLICT DO NOTHING  -- the key holds the partition key (migration 0009)
)
UPDATE invocations i
SET status = r.status,
    end_time = CASE WHEN r.status = 'WAIT' THEN i.end_time ELSE r.end_time END,
    result = CASE WHEN r.status = 'WAIT' THEN i.result ELSE r.result END,
    available_at = CASE WHEN r.status = 'WAIT' THEN r.available_at ELSE i.available_at END,
    worker_id = CASE WHEN r.status = 'WAIT' THEN NULL ELSE i.worker_id END,
    cancel_requested = CASE WHEN r.status = 'WAIT' THEN FALSE ELSE i.cancel_requested END,
    error_code = r.error_code, error_message = r.error_message, lease_until = NULL
FROM running r
WHERE i.id = r.id AND i.start_time = r.start_time
  AND i.start_time >= :start_from AND i.start_time <= :start_to
RETURNING i.request_id;

-- name: insert_invocations
-- Every plain accepted row of one batch in one statement, each parameter the array of its
-- column. Sent as one INSERT per row (pipelined), a batch cost the server ~60 µs of CPU a
-- row; as one statement, ~35 (docs/benchmarks.md, "Accepts in one statement").
INSERT INTO invocations (request_id, function_id, version, status, payload, start_time,
    available_at, expires_at, max_attempts, depth, rerun_of)
SELECT request_id, function_id, version, 'WAIT', payload, start_time, available_at,
    expires_at, max_attempts, depth, rerun_of
FROM unnest(
    CAST(:request_id AS TEXT[]), CAST(:function_id AS BIGINT[]), CAST(:version AS TEXT[]),
    CAST(:payload AS BYTEA[]), CAST(:start_time AS BIGINT[]), CAST(:available_at AS BIGINT[]),
    CAST(:expires_at AS BIGINT[]), CAST(:max_attempts AS INTEGER[]), CAST(:depth AS INTEGER[]),
    CAST(:rerun_of AS TEXT[])
) AS r (request_id, function_id, version, payload, start_time, available_at, expires_at,
    max_attempts, depth, rerun_of);

-- name: try_claim_lock
-- For an accept whose rows this node's worker would start at once: the claims' lock if it is
-- free now, never waited for (when it is busy, claims are running and the rows wait like any
-- other), remembered for this transaction in openfgs.claim_locked for
-- insert_started_invocations, whose own snapshot is then taken with the lock held.
SELECT set_config('openfgs.claim_locked',
    CAST(pg_try_advisory_xact_lock(:claim_lock) AS TEXT), TRUE) AS locked;

-- name: insert_started_invocations
-- The accepted rows of one batch that this node's worker would start at once (each parameter
-- the array of its column, as insert_invocations), in one statement: each starts RUNNING,
-- attempt 1, under its lease when that keeps the claims' rules — their lock is held
-- (try_claim_lock), nothing due by the batch's last start_time waits (older rows go first), and
-- the row is within its function's room (strategy_config.concurrency less what runs, counted
-- as openfgs_pick_due_window counts it, the batch's earlier rows of the function first). The
-- others wait like any accepted row. Row by row, the counts were made again for every row:
-- ~115 µs of the server's CPU a row with 128 slots (docs/benchmarks.md, "Accepts started in
-- one statement"). Returns each row's request id and status.
WITH accepted AS MATERIALIZED (
    SELECT r.*, row_number() OVER (PARTITION BY r.function_id ORDER BY r.ord) AS rank
    FROM unnest(
        CAST(:request_id AS TEXT[]), CAST(:function_id AS BIGINT[]), CAST(:version AS TEXT[]),
        CAST(:payload AS BYTEA[]), CAST(:start_time AS BIGINT[]),
        CAST(:available_at AS BIGINT[]), CAST(:expires_at AS BIGINT[]),
        CAST(:max_attempts AS INTEGER[]), CAST(:depth AS INTEGER[]), CAST(:rerun_of AS TEXT[]),
        CAST(:lease_until AS BIGINT[]), CAST(:worker_id AS TEXT[])
    ) WITH ORDINALITY AS r (request_id, function_id, version, payload, start_time,
        available_at, expires_at, max_attempts, depth, rerun_of, lease_until, worker_id, ord)
), free AS MATERIALIZED (
    SELECT coalesce(current_setting('openfgs.claim_locked', TRUE), '') = 'true'
        AND NOT EXISTS (
            SELECT 1 FROM invocations WHERE status = 'WAIT'
              AND available_at <= (SELECT max(start_time) FROM accepted)
        ) AS free
), room AS MATERIALIZED (
    SELECT f.id AS function_id, f.concurrency - (
        SELECT count(*) FROM invocations r WHERE r.function_id = f.id AND r.status = 'RUNNING'
    ) AS room
    FROM functions f
    WHERE f.id IN (SELECT function_id FROM accepted)
), decided AS (
    SELECT a.*, (free.free AND a.rank <= coalesce(room.room, 0)) AS start
    FROM accepted a CROSS JOIN free LEFT JOIN room ON room.function_id = a.function_id
)
INSERT INTO invocations (request_id, function_id, version, status, payload, start_time,
    available_at, expires_at, max_attempts, depth, rerun_of, attempt, lease_until, worker_id,
    attempt_started_at)
SELECT request_id, function_id, version, CASE WHEN start THEN 'RUNNING' ELSE 'WAIT' END,
    payload, start_time, available_at, expires_at, max_attempts, depth, rerun_of,
    CASE WHEN start THEN 1 ELSE 0 END,
    CASE WHEN start THEN lease_until END,
    CASE WHEN start THEN worker_id END,
    CASE WHEN start THEN start_time END
FROM decided
ORDER BY ord
RETURNING request_id, status;

-- name: ensure_partitions
-- The day partitions of records and attempts for the UTC days first_day … last_day (migration
-- 0009), each waiting at most lock_ms for its lock.
SELECT openfgs_ensure_partitions(:first_day, :last_day, :lock_ms) AS made;

-- name: empty_day_partitions
-- Retention by whole days (migration 0009), first step: the days past retention emptied,
-- their files released under each day's own lock; the number of days.
SELECT cardinality(openfgs_drop_day_partitions(:cutoff, :lock_ms, TRUE)) AS dropped;

-- name: drop_day_partitions
-- Then those days dropped (a short lock of the parent table); the number of days dropped.
SELECT cardinality(openfgs_drop_day_partitions(:cutoff, :lock_ms, FALSE)) AS dropped;

-- name: list_invocations
SELECT request_id, function_id, status, start_time, end_time, error_code, error_message,
    attempt, version
FROM invocations
WHERE (id, start_time) IN (
    -- The offset is walked in the index alone; only the page's rows are read, each looked up
    -- in its own day's partition (the key holds start_time: runtime pruning per row).
    SELECT id, start_time FROM invocations
    WHERE function_id = :function_id AND start_time >= :begin AND start_time <= :end
    ORDER BY start_time DESC, request_id DESC
    LIMIT :limit OFFSET :offset
)
ORDER BY start_time DESC, request_id DESC;

-- name: list_invocations_by_status
SELECT request_id, function_id, status, start_time, end_time, error_code, error_message,
    attempt, version
FROM invocations
WHERE (id, start_time) IN (
    SELECT id, start_time FROM invocations
    WHERE function_id = :function_id AND status = :status
      AND start_time >= :begin AND start_time <= :end
    ORDER BY start_time DESC, request_id DESC
    LIMIT :limit OFFSET :offset
)
ORDER BY start_time DESC, request_id DESC;

-- name: insert_minute_counts
-- One roll-up's minutes in one statement, bound as a JSON array of objects.
INSERT INTO invocation_minutes (function_id, minute, success, fail, discard)
SELECT :function_id, r.minute, r.success, r.fail, r.discard
FROM json_to_recordset(CAST(:rows AS JSON))
    AS r (minute BIGINT, success BIGINT, fail BIGINT, discard BIGINT)
WHERE EXISTS (SELECT 1 FROM functions WHERE id = :function_id)
ON CONFLICT (function_id, minute) DO NOTHING;
