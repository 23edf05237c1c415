-- Records counted per minute of start_time, once the minute is settled: every record of it
-- terminal (SUCCESS, FAIL, DISCARD: a terminal record never changes again) and the minute
-- ended long enough ago that no accept can still commit a record into it. A list's `count`
-- and a deep page's offset then read a long window's settled minutes here instead of walking
-- one index entry per record (openfgs/counting.py; docs/architecture.md, "Counting long
-- windows"). Rows are written by the workers' roll-up and removed with their function or
-- once retention has passed them.
CREATE TABLE invocation_minutes (
    function_id INTEGER NOT NULL REFERENCES functions (id) ON DELETE CASCADE,
    minute INTEGER NOT NULL,  -- start_time / 60000
    success INTEGER NOT NULL,
    fail INTEGER NOT NULL,
    discard INTEGER NOT NULL,
    PRIMARY KEY (function_id, minute)
);

-- Per function, the first minute not rolled up yet: every minute before it that retention has
-- not passed is in invocation_minutes (a minute without records has no row).
CREATE TABLE invocation_minutes_until (
    function_id INTEGER PRIMARY KEY REFERENCES functions (id) ON DELETE CASCADE,
    minute INTEGER NOT NULL
);
