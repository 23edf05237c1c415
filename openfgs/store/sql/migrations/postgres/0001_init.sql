-- The first schema: credentials, tokens, functions, code packages and invocations.
CREATE TABLE credentials (
    access_key TEXT PRIMARY KEY,
    secret_key TEXT NOT NULL,
    project_id TEXT NOT NULL,
    created_at BIGINT NOT NULL
);

CREATE TABLE tokens (
    token_hash TEXT PRIMARY KEY,
    access_key TEXT NOT NULL REFERENCES credentials (access_key) ON DELETE CASCADE,
    project_id TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);

CREATE TABLE code_packages (
    digest TEXT PRIMARY KEY,
    data BYTEA NOT NULL,
    size BIGINT NOT NULL
);

CREATE TABLE functions (
    id BIGSERIAL PRIMARY KEY,
    project_id TEXT NOT NULL,
    package TEXT NOT NULL,
    name TEXT NOT NULL,
    func_id TEXT NOT NULL,
    runtime TEXT NOT NULL,
    handler TEXT NOT NULL,
    memory_size INTEGER NOT NULL,
    timeout INTEGER NOT NULL,
    code_type TEXT NOT NULL,
    code_digest TEXT NOT NULL REFERENCES code_packages (digest),
    code_size BIGINT NOT NULL,
    code_filename TEXT,
    user_data TEXT NOT NULL DEFAULT '',
    description TEXT NOT NULL DEFAULT '',
    initializer_handler TEXT,
    initializer_timeout INTEGER,
    concurrency INTEGER NOT NULL DEFAULT 400,
    concurrent_num INTEGER NOT NULL DEFAULT 1,
    created_at BIGINT NOT NULL,
    last_modified BIGINT NOT NULL,
    UNIQUE (project_id, package, name)
);

CREATE TABLE invocations (
    id BIGSERIAL PRIMARY KEY,
    request_id TEXT NOT NULL UNIQUE,
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
    worker_id TEXT
);

-- The list endpoint: newest first within one function, with and without a status filter;
-- id is included so a deep offset is walked in the index alone.
CREATE INDEX invocations_by_time ON invocations (function_id, start_time, request_id) INCLUDE (id);
CREATE INDEX invocations_by_status ON invocations (function_id, status, start_time, request_id)
    INCLUDE (id);
-- Claims: waiting rows in the order they become available.
CREATE INDEX invocations_waiting ON invocations (available_at) WHERE status = 'WAIT';
-- Recovery: running rows by lease.
CREATE INDEX invocations_running ON invocations (lease_until) WHERE status = 'RUNNING';

-- Wake workers on every node when a row becomes WAIT; PostgreSQL folds identical
-- notifications of one transaction into one.
CREATE FUNCTION openfgs_notify_waiting() RETURNS trigger AS $$
BEGIN
    PERFORM pg_notify('openfgs_invocations', '');
    RETURN NULL;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER invocations_waiting_notify
AFTER INSERT OR UPDATE OF status ON invocations
FOR EACH ROW WHEN (NEW.status = 'WAIT')
EXECUTE FUNCTION openfgs_notify_waiting();
