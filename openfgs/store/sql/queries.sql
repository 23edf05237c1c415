-- Named queries every dialect shares. A name is defined once per dialect: here, or in the
-- dialect's own file (sqlite.sql, postgres.sql), which holds only what differs.
-- Parameters are written :name; PostgreSQL binds them as %(name)s. Columns are named as the
-- fields of the models they become (openfgs.models, from_row).

-- name: ping
SELECT 1 AS ok;

-- name: insert_credential
INSERT INTO credentials (access_key, secret_key, project_id, created_at)
VALUES (:access_key, :secret_key, :project_id, :created_at);

-- name: get_credential
SELECT project_id, access_key, secret_key FROM credentials WHERE access_key = :access_key;

-- name: count_credentials
SELECT count(*) AS count FROM credentials;

-- name: insert_token
INSERT INTO tokens (token_hash, access_key, project_id, expires_at)
VALUES (:token_hash, :access_key, :project_id, :expires_at);

-- name: get_token
SELECT project_id, expires_at FROM tokens WHERE token_hash = :token_hash;

-- name: delete_expired_tokens
DELETE FROM tokens WHERE expires_at < :now;

-- name: insert_code
INSERT INTO code_packages (digest, data, size) VALUES (:digest, :data, :size)
ON CONFLICT (digest) DO NOTHING;

-- name: get_code
SELECT data FROM code_packages WHERE digest = :digest;

-- name: total_code_size
-- A package counts once however many of a function's versions and aliases share it.
SELECT coalesce(sum(code_size), 0) AS total FROM (
    SELECT DISTINCT package, name, code_digest, code_size FROM functions
    WHERE project_id = :project_id
) AS packages;

-- name: referenced_code_digests
SELECT DISTINCT code_digest FROM functions;

-- name: delete_unused_code
DELETE FROM code_packages
WHERE digest = :digest AND NOT EXISTS (SELECT 1 FROM functions WHERE code_digest = :digest)
  AND NOT EXISTS (SELECT 1 FROM dependency_versions WHERE digest = :digest);

-- name: insert_function
INSERT INTO functions (project_id, package, name, qualifier, version, version_description,
    alias_weights, func_id, runtime, handler, memory_size, timeout, code_type, code_digest,
    code_size, code_filename, user_data, description, initializer_handler,
    initializer_timeout, concurrency, concurrent_num, created_at, last_modified)
VALUES (:project_id, :package, :name, :qualifier, :version, :version_description,
    :alias_weights, :func_id, :runtime, :handler, :memory_size, :timeout, :code_type,
    :code_digest, :code_size, :code_filename, :user_data, :description, :initializer_handler,
    :initializer_timeout, :concurrency, :concurrent_num, :created_at, :last_modified)
RETURNING id;

-- name: get_function
SELECT * FROM functions
WHERE project_id = :project_id AND package = :package AND name = :name
  AND qualifier = :qualifier;

-- name: list_function_qualifiers
-- A function's latest, versions and aliases, in the order they were made.
SELECT * FROM functions WHERE project_id = :project_id AND package = :package AND name = :name
ORDER BY id;

-- name: get_function_by_id
SELECT * FROM functions WHERE id = :id;

-- name: update_function
UPDATE functions SET runtime = :runtime, handler = :handler, memory_size = :memory_size,
    timeout = :timeout, code_type = :code_type, code_digest = :code_digest,
    code_size = :code_size, code_filename = :code_filename, user_data = :user_data,
    description = :description, initializer_handler = :initializer_handler,
    initializer_timeout = :initializer_timeout, concurrency = :concurrency,
    concurrent_num = :concurrent_num, version = :version,
    version_description = :version_description, alias_weights = :alias_weights,
    last_modified = :last_modified
WHERE id = :id;

-- name: delete_function
DELETE FROM functions WHERE id = :id;

-- name: delete_function_invocations
DELETE FROM invocations WHERE function_id = :function_id;

-- name: delete_function_attempts
DELETE FROM invocation_attempts WHERE request_id IN (
    SELECT request_id FROM invocations WHERE function_id = :function_id
);

-- name: delete_function_keys
DELETE FROM idempotency_keys WHERE function_id = :function_id;

-- name: insert_invocation
INSERT INTO invocations (request_id, function_id, version, status, payload, start_time,
    available_at, expires_at, max_attempts, depth, rerun_of)
VALUES (:request_id, :function_id, :version, 'WAIT', :payload, :start_time, :available_at,
    :expires_at, :max_attempts, :depth, :rerun_of);

-- name: list_first_invocations
-- A page near the top of the list (small offset): its rows read straight from the index walk,
-- without the lookup by key that spares a deep offset the reading of the rows it skips.
SELECT request_id, function_id, status, start_time, end_time, error_code, error_message,
    attempt, version
FROM invocations
WHERE function_id = :function_id AND start_time >= :begin AND start_time <= :end
ORDER BY start_time DESC, request_id DESC
LIMIT :limit OFFSET :offset;

-- name: list_first_invocations_by_status
SELECT request_id, function_id, status, start_time, end_time, error_code, error_message,
    attempt, version
FROM invocations
WHERE function_id = :function_id AND status = :status
  AND start_time >= :begin AND start_time <= :end
ORDER BY start_time DESC, request_id DESC
LIMIT :limit OFFSET :offset;

-- name: count_invocations
SELECT count(*) AS count FROM invocations
WHERE function_id = :function_id AND start_time >= :begin AND start_time <= :end;

-- name: count_invocations_by_status
SELECT count(*) AS count FROM invocations
WHERE function_id = :function_id AND status = :status
  AND start_time >= :begin AND start_time <= :end;

-- name: rolled_total
-- How far a function's minutes are rolled up (its until, capped at :stop; no row: nowhere) and
-- the records of the rolled-up minutes from :first, each status weighed 1 or 0 (a rolled-up
-- minute holds terminal records only: WAIT and RUNNING weigh nothing there). One statement:
-- the until and the rows it covers are read in one snapshot.
SELECT CASE WHEN u.minute < :stop THEN u.minute ELSE :stop END AS stop, coalesce((
    SELECT sum(:success * m.success + :fail * m.fail + :discard * m.discard)
    FROM invocation_minutes AS m
    WHERE m.function_id = u.function_id AND m.minute >= :first AND m.minute < u.minute
      AND m.minute < :stop
), 0) AS total
FROM invocation_minutes_until AS u
WHERE u.function_id = :function_id;

-- name: count_window
-- A list's whole count in one statement: its rolled-up minutes [:first, until) read from
-- invocation_minutes (until capped at :stop, and :first when the function has none yet), the
-- records before :first_ms and from until on counted one by one. :s1 … :s5 are the statuses
-- counted, unused ones '' (an IN list both dialects walk in the status index).
SELECT coalesce((
    SELECT sum(:success * m.success + :fail * m.fail + :discard * m.discard)
    FROM invocation_minutes AS m
    WHERE m.function_id = :function_id AND m.minute >= :first AND m.minute < r.stop
), 0) + (
    SELECT count(*) FROM invocations AS i
    WHERE i.function_id = :function_id AND i.status IN (:s1, :s2, :s3, :s4, :s5)
      AND i.start_time >= :begin AND i.start_time < :first_ms
) + (
    SELECT count(*) FROM invocations AS i
    WHERE i.function_id = :function_id AND i.status IN (:s1, :s2, :s3, :s4, :s5)
      AND i.start_time >= r.stop * 60000 AND i.start_time <= :end
) AS count
FROM (
    SELECT coalesce((
        SELECT CASE WHEN u.minute <= :first THEN :first
                    WHEN u.minute < :stop THEN u.minute ELSE :stop END
        FROM invocation_minutes_until AS u WHERE u.function_id = :function_id
    ), :first) AS stop
) AS r;

-- name: rolled_hours
-- A function's rolled-up records of [first, stop) per hour, newest first: where a deep offset
-- falls is found an hour at a time, then a minute at a time within that hour.
SELECT minute / 60 AS hour, sum(:success * success + :fail * fail + :discard * discard) AS n
FROM invocation_minutes
WHERE function_id = :function_id AND minute >= :first AND minute < :stop
GROUP BY minute / 60
ORDER BY minute / 60 DESC;

-- name: rolled_minutes
SELECT minute, :success * success + :fail * fail + :discard * discard AS n
FROM invocation_minutes
WHERE function_id = :function_id AND minute >= :first AND minute < :stop
ORDER BY minute DESC;

-- name: roll_up_candidates
-- Function rows whose roll-up is behind :limit, a page at a time in the order of their ids.
SELECT f.id AS function_id, u.minute AS until
FROM functions AS f LEFT JOIN invocation_minutes_until AS u ON u.function_id = f.id
WHERE f.id > :after AND (u.minute IS NULL OR u.minute < :limit)
ORDER BY f.id
LIMIT :batch;

-- name: first_record_time
SELECT min(start_time) AS start_time FROM invocations WHERE function_id = :function_id;

-- name: first_unsettled_time
-- The oldest record from :since that may still change, one index range a status.
SELECT min(start_time) AS start_time FROM invocations
WHERE function_id = :function_id AND status IN ('WAIT', 'RUNNING') AND start_time >= :since;

-- name: count_settled_minutes
-- Terminal records per minute of [begin, end), walked in the status index (a range a status).
SELECT start_time / 60000 AS minute,
    sum(CASE WHEN status = 'SUCCESS' THEN 1 ELSE 0 END) AS success,
    sum(CASE WHEN status = 'FAIL' THEN 1 ELSE 0 END) AS fail,
    sum(CASE WHEN status = 'DISCARD' THEN 1 ELSE 0 END) AS discard
FROM invocations
WHERE function_id = :function_id AND status IN ('SUCCESS', 'FAIL', 'DISCARD')
  AND start_time >= :begin AND start_time < :end
GROUP BY start_time / 60000;

-- name: advance_minutes_until
-- Never backwards: two nodes rolling the same minutes up write the same rows.
INSERT INTO invocation_minutes_until (function_id, minute)
SELECT :function_id, :minute WHERE EXISTS (SELECT 1 FROM functions WHERE id = :function_id)
ON CONFLICT (function_id) DO UPDATE SET minute = excluded.minute
WHERE invocation_minutes_until.minute < excluded.minute;

-- name: purge_invocation_minutes
DELETE FROM invocation_minutes WHERE minute < :minute;

-- name: record_attempt
INSERT INTO invocation_attempts (request_id, attempt, worker_id, start_time, end_time, outcome,
    error_code, error_message)
SELECT request_id, attempt, worker_id, coalesce(attempt_started_at, :end_time), :end_time,
    :outcome, :error_code, :error_message
FROM invocations
WHERE request_id = :request_id AND status = 'RUNNING' AND attempt = :attempt
  AND start_time >= :start_from AND start_time <= :start_to
ON CONFLICT DO NOTHING;

-- name: finish_invocation
-- [start_from, start_to]: the record's start_time when the caller knows it (a worker's claim
-- carries it), which on PostgreSQL prunes the search to the day's partition; else any time.
UPDATE invocations
SET status = :status, end_time = :end_time, error_code = :error_code,
    error_message = :error_message, result = :result, lease_until = NULL
WHERE request_id = :request_id AND status = 'RUNNING' AND attempt = :attempt
  AND start_time >= :start_from AND start_time <= :start_to;

-- name: requeue_invocation
UPDATE invocations
SET status = 'WAIT', available_at = :available_at, lease_until = NULL, worker_id = NULL,
    error_code = :error_code, error_message = :error_message, cancel_requested = FALSE
WHERE request_id = :request_id AND status = 'RUNNING' AND attempt = :attempt
  AND start_time >= :start_from AND start_time <= :start_to;

-- name: list_expired_leases
SELECT request_id, function_id, version, payload, attempt, expires_at, max_attempts, depth,
    error_message AS last_error, start_time AS accepted_at
FROM invocations
WHERE status = 'RUNNING' AND lease_until < :now
LIMIT :limit;

-- name: next_available_at
SELECT min(available_at) AS available_at FROM invocations WHERE status = 'WAIT';

-- name: count_by_status
SELECT status, count(*) AS count FROM invocations WHERE function_id = :function_id GROUP BY status;

-- name: renew_leases
UPDATE invocations SET lease_until = :lease_until
WHERE worker_id = :worker_id AND status = 'RUNNING';

-- name: list_cancel_requests
SELECT request_id FROM invocations
WHERE worker_id = :worker_id AND status = 'RUNNING' AND cancel_requested;

-- name: get_invocation
SELECT i.request_id, i.function_id, i.status, i.start_time, i.end_time, i.error_code,
    i.error_message, i.attempt, i.version, i.max_attempts, i.rerun_of, f.project_id
FROM invocations i JOIN functions f ON f.id = i.function_id
WHERE i.request_id = :request_id;

-- name: list_attempts
SELECT attempt, worker_id, start_time, end_time, outcome, error_code, error_message
FROM invocation_attempts WHERE request_id = :request_id ORDER BY attempt;

-- name: claim_waiting
-- One waiting row taken out of the queue (to be canceled), as a claim would take it.
UPDATE invocations
SET status = 'RUNNING', attempt = attempt + 1, lease_until = :lease_until,
    worker_id = :worker_id, attempt_started_at = :now
WHERE request_id = :request_id AND function_id = :function_id AND status = 'WAIT'
RETURNING request_id, function_id, version, payload, attempt, expires_at, max_attempts, depth,
    error_message AS last_error, start_time AS accepted_at;

-- name: request_cancel
UPDATE invocations SET cancel_requested = TRUE
WHERE request_id = :request_id AND function_id = :function_id AND status = 'RUNNING';

-- name: upsert_async_config
INSERT INTO async_configs (function_id, max_async_event_age_in_seconds, max_async_retry_attempts,
    destination_config, enable_async_status_log, created_at, last_modified)
VALUES (:function_id, :max_async_event_age_in_seconds, :max_async_retry_attempts,
    :destination_config, :enable_async_status_log, :now, :now)
ON CONFLICT (function_id) DO UPDATE SET
    max_async_event_age_in_seconds = excluded.max_async_event_age_in_seconds,
    max_async_retry_attempts = excluded.max_async_retry_attempts,
    destination_config = excluded.destination_config,
    enable_async_status_log = excluded.enable_async_status_log,
    last_modified = excluded.last_modified;

-- name: get_async_config
SELECT function_id, max_async_event_age_in_seconds, max_async_retry_attempts,
    destination_config, enable_async_status_log, created_at, last_modified
FROM async_configs WHERE function_id = :function_id;

-- name: delete_async_config
DELETE FROM async_configs WHERE function_id = :function_id;

-- name: claim_idempotency_key
INSERT INTO idempotency_keys (function_id, key, request_id, created_at)
VALUES (:function_id, :key, :request_id, :now)
ON CONFLICT (function_id, key) DO UPDATE SET
    request_id = excluded.request_id, created_at = excluded.created_at
WHERE idempotency_keys.created_at < :cutoff
RETURNING request_id;

-- name: get_idempotency_key
SELECT request_id FROM idempotency_keys WHERE function_id = :function_id AND key = :key;

-- name: list_rerunnable
SELECT request_id, payload, depth FROM invocations
WHERE function_id = :function_id AND status IN (:status_a, :status_b)
  AND start_time >= :begin AND start_time <= :end
  AND (CAST(:request_id AS TEXT) IS NULL OR request_id = :request_id)
ORDER BY start_time, request_id
LIMIT :limit;

-- name: count_waiting
SELECT count(*) AS count FROM invocations WHERE function_id = :function_id AND status = 'WAIT';

-- name: purge_attempts
DELETE FROM invocation_attempts WHERE request_id IN (
    SELECT request_id FROM invocations WHERE end_time < :cutoff
    ORDER BY end_time LIMIT :limit
);

-- name: purge_invocations
DELETE FROM invocations WHERE id IN (
    SELECT id FROM invocations WHERE end_time < :cutoff ORDER BY end_time LIMIT :limit
);

-- name: purge_idempotency_keys
DELETE FROM idempotency_keys WHERE created_at < :cutoff;

-- -- triggers ------------------------------------------------------------------------------

-- name: insert_trigger
INSERT INTO triggers (trigger_id, function_id, project_id, type_code, status, name,
    event_type_code, event_data, route_method, route_path, next_fire, anchor, created_at,
    last_modified)
VALUES (:trigger_id, :function_id, :project_id, :type_code, :status, :name, :event_type_code,
    :event_data, :route_method, :route_path, :next_fire, :anchor, :created_at, :last_modified)
RETURNING id;

-- name: get_trigger
SELECT * FROM triggers WHERE trigger_id = :trigger_id;

-- name: list_function_triggers
SELECT * FROM triggers WHERE function_id = :function_id ORDER BY id;

-- name: list_project_triggers
SELECT * FROM triggers WHERE project_id = :project_id ORDER BY id;

-- name: list_route_triggers
-- A project's HTTP triggers, matched against a request's method and path by the caller.
SELECT * FROM triggers WHERE project_id = :project_id AND route_path IS NOT NULL ORDER BY id;

-- name: update_trigger
UPDATE triggers SET status = :status, next_fire = :next_fire, anchor = :anchor,
    last_modified = :last_modified
WHERE trigger_id = :trigger_id;

-- name: delete_trigger
DELETE FROM triggers WHERE trigger_id = :trigger_id;

-- name: next_timer_fire
SELECT min(next_fire) AS next_fire FROM triggers WHERE next_fire IS NOT NULL;

-- name: due_timers
SELECT * FROM triggers WHERE next_fire IS NOT NULL AND next_fire <= :now
ORDER BY next_fire LIMIT :limit;

-- name: advance_timer
-- Moves a timer past the scheduled time it was read with: the fire of that time belongs to
-- whoever moves it (none when another node moved it first, or it was disabled meanwhile).
UPDATE triggers SET next_fire = :next_fire
WHERE id = :id AND next_fire = :scheduled_at AND status = 'ACTIVE';

-- name: record_trigger_fire
INSERT INTO trigger_fires (trigger_id, scheduled_at, request_id, fired_at)
VALUES (:trigger_id, :scheduled_at, :request_id, :fired_at);

-- name: list_trigger_fires
SELECT scheduled_at, request_id, fired_at FROM trigger_fires WHERE trigger_id = :trigger_id
ORDER BY scheduled_at;

-- name: delete_old_trigger_fires
DELETE FROM trigger_fires WHERE fired_at < :cutoff;
-- Test events ---------------------------------------------------------------------------------

-- name: count_test_events
SELECT count(*) AS count FROM test_events WHERE function_id = :function_id;

-- name: insert_test_event
INSERT INTO test_events (id, function_id, name, content, created_at, last_modified)
VALUES (:id, :function_id, :name, :content, :created_at, :last_modified);

-- name: list_test_events
-- In the order they were made (by name within one millisecond).
SELECT * FROM test_events WHERE function_id = :function_id ORDER BY created_at, name;

-- name: get_test_event
SELECT * FROM test_events WHERE function_id = :function_id AND id = :id;

-- name: update_test_event
UPDATE test_events SET name = :name, content = :content, last_modified = :last_modified
WHERE function_id = :function_id AND id = :id;

-- name: delete_test_event
DELETE FROM test_events WHERE function_id = :function_id AND id = :id;

-- name: delete_function_test_events
DELETE FROM test_events WHERE function_id = :function_id;
-- Function tags: at most a few dozen rows per function.

-- name: list_function_tags
SELECT key, value FROM function_tags WHERE function_id = :function_id ORDER BY key;

-- name: upsert_function_tag
INSERT INTO function_tags (function_id, key, value) VALUES (:function_id, :key, :value)
ON CONFLICT (function_id, key) DO UPDATE SET value = excluded.value;

-- name: delete_function_tag
DELETE FROM function_tags WHERE function_id = :function_id AND key = :key;

-- name: list_project_tags
SELECT DISTINCT t.key, t.value FROM function_tags t JOIN functions f ON f.id = t.function_id
WHERE f.project_id = :project_id ORDER BY t.key, t.value;
-- Dependencies (migration 0005) -------------------------------------------------------------

-- name: set_function_dependencies
UPDATE functions SET depend_versions = :depend_versions WHERE id = :id;

-- name: upsert_dependency
-- The dependency of that name, made with version 1 or given its next version number.
INSERT INTO dependencies (id, project_id, name, last_version, created_at)
VALUES (:dep_id, :project_id, :name, 1, :created_at)
ON CONFLICT (project_id, name) DO UPDATE SET last_version = dependencies.last_version + 1
RETURNING id, last_version;

-- name: insert_dependency_version
INSERT INTO dependency_versions (id, dep_id, project_id, version, runtime, description,
    file_name, digest, etag, size, created_at)
VALUES (:id, :dep_id, :project_id, :version, :runtime, :description, :file_name, :digest,
    :etag, :size, :created_at);

-- name: count_dependency_versions
SELECT count(*) AS count FROM dependency_versions WHERE project_id = :project_id;

-- name: total_dependency_size
SELECT coalesce(sum(size), 0) AS total FROM dependency_versions WHERE project_id = :project_id;

-- name: latest_dependency_version
SELECT v.id, v.dep_id, v.project_id, d.name, v.version, v.runtime, v.description, v.file_name,
    v.digest, v.etag, v.size, v.created_at
FROM dependencies d JOIN dependency_versions v ON v.dep_id = d.id
WHERE d.project_id = :project_id AND d.name = :name
ORDER BY v.version DESC
LIMIT 1;

-- name: get_dependency_version
SELECT v.id, v.dep_id, v.project_id, d.name, v.version, v.runtime, v.description, v.file_name,
    v.digest, v.etag, v.size, v.created_at
FROM dependency_versions v JOIN dependencies d ON d.id = v.dep_id
WHERE v.project_id = :project_id AND v.dep_id = :dep_id AND v.version = :version;

-- name: list_dependency_versions
SELECT v.id, v.dep_id, v.project_id, d.name, v.version, v.runtime, v.description, v.file_name,
    v.digest, v.etag, v.size, v.created_at
FROM dependency_versions v JOIN dependencies d ON d.id = v.dep_id
WHERE v.project_id = :project_id AND v.dep_id = :dep_id
ORDER BY v.version
LIMIT :limit OFFSET :offset;

-- name: count_versions_of_dependency
SELECT count(*) AS count FROM dependency_versions
WHERE project_id = :project_id AND dep_id = :dep_id;

-- name: delete_dependency_version
DELETE FROM dependency_versions WHERE id = :id;

-- name: delete_dependency_if_empty
DELETE FROM dependencies
WHERE id = :dep_id AND NOT EXISTS (SELECT 1 FROM dependency_versions WHERE dep_id = :dep_id);

-- name: functions_with_dependencies
SELECT code_digest, depend_versions FROM functions WHERE depend_versions <> '[]';

-- -- statistics and metrics -----------------------------------------------------------------

-- name: invocation_minutes
-- Records per minute of start_time: counts by outcome and the durations of their last attempts,
-- read through the (function_id, start_time) index.
SELECT start_time / 60000 AS minute,
    count(*) AS count,
    sum(CASE WHEN status IN ('WAIT', 'RUNNING') THEN 1 ELSE 0 END) AS active,
    sum(CASE WHEN status = 'FAIL' THEN 1 ELSE 0 END) AS fail_count,
    sum(CASE WHEN status = 'FAIL' AND error_code < 4208 THEN 1 ELSE 0 END)
        AS function_error_count,
    sum(CASE WHEN status = 'FAIL' AND error_code >= 4210 THEN 1 ELSE 0 END)
        AS system_error_count,
    sum(CASE WHEN status = 'DISCARD' THEN 1 ELSE 0 END) AS reject_count,
    count(CASE WHEN status IN ('SUCCESS', 'FAIL') THEN attempt_started_at END) AS timed,
    sum(CASE WHEN status IN ('SUCCESS', 'FAIL') THEN end_time - attempt_started_at END)
        AS duration_sum,
    max(CASE WHEN status IN ('SUCCESS', 'FAIL') THEN end_time - attempt_started_at END)
        AS max_duration,
    min(CASE WHEN status IN ('SUCCESS', 'FAIL') THEN end_time - attempt_started_at END)
        AS min_duration
FROM invocations
WHERE function_id = :function_id AND start_time >= :begin AND start_time <= :end
GROUP BY start_time / 60000;

-- name: waiting_by_function
-- Waiting records per function row and the oldest one's accept time (the metrics' queue
-- depth): two probes of the status index per row, read in the index alone.
SELECT project_id, package, name, qualifier, waiting, oldest FROM (
    SELECT f.project_id, f.package, f.name, f.qualifier,
        (SELECT count(*) FROM invocations i
         WHERE i.function_id = f.id AND i.status = 'WAIT') AS waiting,
        (SELECT min(i.start_time) FROM invocations i
         WHERE i.function_id = f.id AND i.status = 'WAIT') AS oldest
    FROM functions f
) AS w
WHERE oldest IS NOT NULL;

-- name: async_minutes
-- openfgs's async series (openfgs.statistics.AsyncMinute): rows of (minute of start_time, kind,
-- a, b, count), the records read once through the (function_id, start_time) index:
-- * each status: kind = the status, CANCELED for a FAIL or DISCARD canceled (error 4208);
-- * dispatch (accept → start of the first attempt; RUNNING, SUCCESS and FAIL records) and run
--   time (the last attempt; SUCCESS and FAIL) in ms, binned to two significant digits:
--   a = the bin, b = the smallest time in it (a time a record has);
-- * waits that span the end of a minute, for the waiting depth: a = the minute a wait began,
--   b = the minute it ended (NULL: waiting now). A record waits from its accept to its first
--   start, and, back in WAIT for a retry, from its last start on.
WITH r AS (
    SELECT start_time / 60000 AS minute, start_time, status, error_code, attempt,
        attempt_started_at, end_time,
        CASE WHEN attempt = 1 THEN attempt_started_at
            WHEN attempt > 1 THEN (SELECT a.start_time FROM invocation_attempts a
                WHERE a.request_id = i.request_id AND a.attempt = 1)
        END AS first_start
    FROM invocations i
    WHERE function_id = :function_id AND start_time >= :begin AND start_time <= :end
),
timed AS (
    SELECT minute, 'dispatch' AS kind, first_start - start_time AS ms FROM r
    WHERE status IN ('RUNNING', 'SUCCESS', 'FAIL') AND first_start IS NOT NULL
    UNION ALL
    SELECT minute, 'run' AS kind, end_time - attempt_started_at AS ms FROM r
    WHERE status IN ('SUCCESS', 'FAIL') AND attempt_started_at IS NOT NULL
),
clamped AS (
    -- Clocks of two nodes may disagree by a few ms: a negative time counts as 0.
    SELECT minute, kind, CASE WHEN ms < 0 THEN 0 ELSE ms END AS ms FROM timed
),
waits AS (
    SELECT minute, start_time AS since, first_start AS until FROM r
    WHERE first_start IS NOT NULL
    UNION ALL
    SELECT minute, CASE WHEN attempt = 0 THEN start_time ELSE attempt_started_at END AS since,
        NULL AS until
    FROM r WHERE status = 'WAIT'
)
SELECT minute,
    CASE WHEN error_code = 4208 AND status IN ('FAIL', 'DISCARD') THEN 'CANCELED'
        ELSE status END AS kind,
    0 AS a, 0 AS b, count(*) AS count
FROM r GROUP BY 1, 2
UNION ALL
SELECT minute, kind,
    CASE WHEN ms < 100 THEN ms
        WHEN ms < 1000 THEN ms / 10 * 10
        WHEN ms < 10000 THEN ms / 100 * 100
        WHEN ms < 100000 THEN ms / 1000 * 1000
        WHEN ms < 1000000 THEN ms / 10000 * 10000
        WHEN ms < 10000000 THEN ms / 100000 * 100000
        WHEN ms < 100000000 THEN ms / 1000000 * 1000000
        ELSE ms / 10000000 * 10000000 END AS a,
    min(ms) AS b, count(*) AS count
FROM clamped GROUP BY 1, 2, 3
UNION ALL
SELECT minute, 'WAITED' AS kind, since / 60000 AS a, until / 60000 AS b, count(*) AS count
FROM waits WHERE until IS NULL OR until / 60000 > since / 60000
GROUP BY 1, 2, 3, 4;

-- name: count_waiting_before
-- Waiting records accepted before a time, walked in the status index.
SELECT count(*) AS count FROM invocations
WHERE function_id = :function_id AND status = 'WAIT' AND start_time < :before;
