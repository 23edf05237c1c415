-- Named queries of the SQLite backend that differ from queries.sql. postgres.sql holds the
-- same names, but for the two steps of the claim walk (list_due_invocations, function_room),
-- which PostgreSQL runs in PL/pgSQL. Lists are bound as JSON arrays (json_each).

-- name: lock_function
-- The function's code digest before an update (the writer thread already serialises writes).
SELECT code_digest FROM functions WHERE id = :id;

-- name: list_functions
SELECT * FROM functions
WHERE project_id = :project_id AND qualifier = 'latest'
  AND (:package IS NULL OR package = :package)
  AND (:name_like IS NULL OR instr(name, :name_like) > 0)
ORDER BY created_at, id
LIMIT :limit OFFSET :offset;

-- name: count_functions
SELECT count(*) AS count FROM functions
WHERE project_id = :project_id AND qualifier = 'latest'
  AND (:package IS NULL OR package = :package)
  AND (:name_like IS NULL OR instr(name, :name_like) > 0);

-- name: list_invocations_by_ids
SELECT request_id, function_id, status, start_time, end_time, error_code, error_message,
    attempt, version
FROM invocations
WHERE request_id IN (SELECT value FROM json_each(:request_ids))
  AND function_id = :function_id
  AND start_time >= :begin AND start_time <= :end
  AND status IN (SELECT value FROM json_each(:statuses))
ORDER BY start_time DESC, request_id DESC;

-- name: list_active_invocations
SELECT request_id, function_id, status, start_time, end_time, error_code, error_message,
    attempt, version
FROM invocations
WHERE function_id = :function_id
  AND status IN (SELECT value FROM json_each(:statuses))
  AND start_time >= :begin AND start_time <= :end
ORDER BY start_time DESC, request_id DESC
LIMIT :limit OFFSET :offset;

-- name: count_active_invocations
SELECT count(*) AS count FROM invocations
WHERE function_id = :function_id
  AND status IN (SELECT value FROM json_each(:statuses))
  AND start_time >= :begin AND start_time <= :end;

-- name: list_due_invocations
-- Waiting rows whose time has come, oldest first, read lazily: the store walks them, skipping
-- functions that have no room left (function_room), until it has what it came for.
SELECT id, function_id, request_id FROM invocations
WHERE status = 'WAIT' AND available_at <= :now
ORDER BY available_at, id;

-- name: function_room
-- How many more of a function's invocations may run now (strategy_config.concurrency less
-- what runs), counted in the status index.
SELECT f.concurrency - (
    SELECT count(*) FROM invocations WHERE function_id = :function_id AND status = 'RUNNING'
) AS room
FROM functions f
WHERE f.id = :function_id;

-- name: claim_invocations
-- The rows list_due_invocations picked (:ids, a JSON array), if they still wait.
UPDATE invocations
SET status = 'RUNNING', attempt = attempt + 1, lease_until = :lease_until,
    worker_id = :worker_id, attempt_started_at = :now
WHERE id IN (SELECT value FROM json_each(:ids)) AND status = 'WAIT'
RETURNING request_id, function_id, version, payload, attempt, expires_at, max_attempts, depth,
    error_message AS last_error, start_time AS accepted_at;

-- name: claim_expired_invocations
UPDATE invocations
SET status = 'RUNNING', attempt = attempt + 1, lease_until = :lease_until,
    worker_id = :worker_id, attempt_started_at = :now
WHERE id IN (
    SELECT id FROM invocations
    WHERE status = 'WAIT' AND expires_at <= :now
    ORDER BY expires_at
    LIMIT :limit
)
RETURNING request_id, function_id, version, payload, attempt, expires_at, max_attempts, depth,
    error_message AS last_error, start_time AS accepted_at;


-- Dependencies (migration 0005) -------------------------------------------------------------

-- name: list_dependencies
-- Each dependency with its latest version; name: a part of the name.
SELECT v.id, v.dep_id, v.project_id, d.name, v.version, v.runtime, v.description, v.file_name,
    v.digest, v.etag, v.size, v.created_at
FROM dependencies d JOIN dependency_versions v ON v.dep_id = d.id AND v.version = (
    SELECT max(version) FROM dependency_versions WHERE dep_id = d.id
)
WHERE d.project_id = :project_id
  AND (:name_like IS NULL OR instr(d.name, :name_like) > 0)
  AND (:runtime IS NULL OR v.runtime = :runtime)
ORDER BY d.name, d.id
LIMIT :limit OFFSET :offset;

-- name: count_dependencies
SELECT count(*) AS count
FROM dependencies d JOIN dependency_versions v ON v.dep_id = d.id AND v.version = (
    SELECT max(version) FROM dependency_versions WHERE dep_id = d.id
)
WHERE d.project_id = :project_id
  AND (:name_like IS NULL OR instr(d.name, :name_like) > 0)
  AND (:runtime IS NULL OR v.runtime = :runtime);

-- name: get_dependency_versions_by_ids
SELECT v.id, v.dep_id, v.project_id, d.name, v.version, v.runtime, v.description, v.file_name,
    v.digest, v.etag, v.size, v.created_at
FROM dependency_versions v JOIN dependencies d ON d.id = v.dep_id
WHERE v.project_id = :project_id AND v.id IN (SELECT value FROM json_each(:ids));

-- name: lock_dependency_versions
-- The versions of :ids (a JSON array) that exist (the writer thread serialises writes).
SELECT id FROM dependency_versions WHERE id IN (SELECT value FROM json_each(:ids));

-- name: lock_dependency_version
SELECT id FROM dependency_versions WHERE id = :id;

-- name: dependency_version_in_use
SELECT 1 AS used FROM functions, json_each(functions.depend_versions)
WHERE json_each.value = :id
LIMIT 1;

-- name: referenced_dependency_versions
-- The digest of every dependency version some function lists.
SELECT DISTINCT v.id, v.digest
FROM functions f, json_each(f.depend_versions) j
JOIN dependency_versions v ON v.id = j.value;

-- name: ensure_partitions
-- SQLite keeps records in one table (retention deletes rows): no partition to make.
SELECT 0 AS made;

-- name: empty_day_partitions
SELECT 0 AS dropped;

-- name: drop_day_partitions
SELECT 0 AS dropped;

-- name: list_invocations
SELECT request_id, function_id, status, start_time, end_time, error_code, error_message,
    attempt, version
FROM invocations
WHERE id IN (
    -- The offset is walked in the index alone; only the page's rows are read.
    SELECT id FROM invocations
    WHERE function_id = :function_id AND start_time >= :begin AND start_time <= :end
    ORDER BY start_time DESC, request_id DESC
    LIMIT :limit OFFSET :offset
)
ORDER BY start_time DESC, request_id DESC;

-- name: list_invocations_by_status
SELECT request_id, function_id, status, start_time, end_time, error_code, error_message,
    attempt, version
FROM invocations
WHERE id IN (
    SELECT id FROM invocations
    WHERE function_id = :function_id AND status = :status
      AND start_time >= :begin AND start_time <= :end
    ORDER BY start_time DESC, request_id DESC
    LIMIT :limit OFFSET :offset
)
ORDER BY start_time DESC, request_id DESC;

-- name: insert_minute_counts
-- One roll-up's minutes in one statement, bound as a JSON array of objects.
INSERT INTO invocation_minutes (function_id, minute, success, fail, discard)
SELECT :function_id, json_extract(value, '$.minute'), json_extract(value, '$.success'),
    json_extract(value, '$.fail'), json_extract(value, '$.discard')
FROM json_each(:rows)
WHERE EXISTS (SELECT 1 FROM functions WHERE id = :function_id)
ON CONFLICT (function_id, minute) DO NOTHING;
