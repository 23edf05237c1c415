-- Async invoke configs, per-attempt history, cancel requests, destinations, idempotent
-- accepts and re-runs.
CREATE TABLE async_configs (
    function_id INTEGER PRIMARY KEY REFERENCES functions (id) ON DELETE CASCADE,
    max_async_event_age_in_seconds INTEGER NOT NULL,
    max_async_retry_attempts INTEGER NOT NULL,
    destination_config TEXT NOT NULL DEFAULT '{}',
    enable_async_status_log INTEGER NOT NULL DEFAULT 0,
    created_at INTEGER NOT NULL,
    last_modified INTEGER NOT NULL
);

CREATE TABLE invocation_attempts (
    request_id TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    worker_id TEXT,
    start_time INTEGER NOT NULL,
    end_time INTEGER,
    outcome TEXT NOT NULL,
    error_code INTEGER NOT NULL DEFAULT 0,
    error_message TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (request_id, attempt)
);

CREATE TABLE idempotency_keys (
    function_id INTEGER NOT NULL,
    key TEXT NOT NULL,
    request_id TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    PRIMARY KEY (function_id, key)
);

ALTER TABLE invocations ADD COLUMN max_attempts INTEGER NOT NULL DEFAULT 1;
ALTER TABLE invocations ADD COLUMN cancel_requested INTEGER NOT NULL DEFAULT 0;
ALTER TABLE invocations ADD COLUMN depth INTEGER NOT NULL DEFAULT 0;
ALTER TABLE invocations ADD COLUMN rerun_of TEXT;
ALTER TABLE invocations ADD COLUMN attempt_started_at INTEGER;

-- Retention: terminal rows by the time they ended.
CREATE INDEX invocations_ended ON invocations (end_time) WHERE end_time IS NOT NULL;
-- Expiry of a backlog: waiting rows by the time they expire.
CREATE INDEX invocations_expiring ON invocations (expires_at) WHERE status = 'WAIT';
CREATE INDEX idempotency_keys_by_age ON idempotency_keys (created_at);
