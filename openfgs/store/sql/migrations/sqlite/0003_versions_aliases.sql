-- Versions and aliases: a function's published versions and its aliases are rows of
-- `functions` beside its latest, each with an id of its own, so that records, async configs,
-- concurrency and warm instances are kept per qualifier as they are per function.
--   qualifier: 'latest', a version name, or '!' + an alias name; unique per function.
--   version: the version a row runs ('latest' or its own name; an alias: the version it names).
--   version_description: a version's or an alias's own description.
--   alias_weights: an alias's additional_version_weights (JSON), '' for other rows.
-- SQLite cannot change a table's UNIQUE constraint in place: the table is rebuilt, ids kept
-- (the runner turns foreign keys off around a migration and checks them before committing).
-- AUTOINCREMENT: an id is never given again after its function is deleted (PostgreSQL's
-- sequence does the same), so nothing remembered by id — a cached async config, counted
-- hours — can be taken for a new function's.
CREATE TABLE functions_new (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    project_id TEXT NOT NULL,
    package TEXT NOT NULL,
    name TEXT NOT NULL,
    qualifier TEXT NOT NULL DEFAULT 'latest',
    version TEXT NOT NULL DEFAULT 'latest',
    version_description TEXT NOT NULL DEFAULT '',
    alias_weights TEXT NOT NULL DEFAULT '',
    func_id TEXT NOT NULL,
    runtime TEXT NOT NULL,
    handler TEXT NOT NULL,
    memory_size INTEGER NOT NULL,
    timeout INTEGER NOT NULL,
    code_type TEXT NOT NULL,
    code_digest TEXT NOT NULL REFERENCES code_packages (digest),
    code_size INTEGER NOT NULL,
    code_filename TEXT,
    user_data TEXT NOT NULL DEFAULT '',
    description TEXT NOT NULL DEFAULT '',
    initializer_handler TEXT,
    initializer_timeout INTEGER,
    concurrency INTEGER NOT NULL DEFAULT 400,
    concurrent_num INTEGER NOT NULL DEFAULT 1,
    created_at INTEGER NOT NULL,
    last_modified INTEGER NOT NULL,
    UNIQUE (project_id, package, name, qualifier)
);

INSERT INTO functions_new (id, project_id, package, name, func_id, runtime, handler,
    memory_size, timeout, code_type, code_digest, code_size, code_filename, user_data,
    description, initializer_handler, initializer_timeout, concurrency, concurrent_num,
    created_at, last_modified)
SELECT id, project_id, package, name, func_id, runtime, handler, memory_size, timeout,
    code_type, code_digest, code_size, code_filename, user_data, description,
    initializer_handler, initializer_timeout, concurrency, concurrent_num, created_at,
    last_modified
FROM functions;

DROP TABLE functions;

ALTER TABLE functions_new RENAME TO functions;
