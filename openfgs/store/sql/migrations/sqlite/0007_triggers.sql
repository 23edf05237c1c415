-- Triggers, each bound to one function row (the latest, a version or an alias) and deleted
-- with it. A timer keeps its next scheduled time (next_fire, NULL while disabled) and when its
-- schedule was activated (anchor: Rate and @every count from it); every fire is recorded with
-- its scheduled time, in the transaction that inserts its invocation, so that a scheduled time
-- fires once whichever node fires it. An HTTP trigger keeps its route.
CREATE TABLE triggers (
    id INTEGER PRIMARY KEY,
    trigger_id TEXT NOT NULL UNIQUE,
    function_id INTEGER NOT NULL REFERENCES functions (id) ON DELETE CASCADE,
    project_id TEXT NOT NULL,
    type_code TEXT NOT NULL,
    status TEXT NOT NULL,
    name TEXT NOT NULL,
    event_type_code TEXT NOT NULL DEFAULT '',
    event_data TEXT NOT NULL,
    route_method TEXT,
    route_path TEXT,
    next_fire INTEGER,
    anchor INTEGER,
    created_at INTEGER NOT NULL,
    last_modified INTEGER NOT NULL
);

CREATE INDEX triggers_by_function ON triggers (function_id);
CREATE INDEX triggers_due ON triggers (next_fire) WHERE next_fire IS NOT NULL;
CREATE INDEX triggers_by_route ON triggers (project_id) WHERE route_path IS NOT NULL;

CREATE TABLE trigger_fires (
    trigger_id TEXT NOT NULL REFERENCES triggers (trigger_id) ON DELETE CASCADE,
    scheduled_at INTEGER NOT NULL,
    request_id TEXT NOT NULL,
    fired_at INTEGER NOT NULL,
    PRIMARY KEY (trigger_id, scheduled_at)
);

CREATE INDEX trigger_fires_by_time ON trigger_fires (fired_at);
