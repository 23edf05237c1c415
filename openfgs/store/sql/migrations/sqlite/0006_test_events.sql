-- Test events: a function's saved events (FunctionGraph's CreateEvent and the rest), kept on
-- the row of its latest and shared by its versions and aliases. `content` is what the client
-- sent: the base64 of the event's JSON. Their number is bounded by the insert.
CREATE TABLE test_events (
    id TEXT PRIMARY KEY,
    function_id INTEGER NOT NULL REFERENCES functions (id) ON DELETE CASCADE,
    name TEXT NOT NULL,
    content TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    last_modified INTEGER NOT NULL,
    UNIQUE (function_id, name)
);
