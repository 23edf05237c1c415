-- Dependencies: named zip packages with numbered, immutable versions, merged into the code of
-- the functions that list them. A version's zip is a code package (code_packages, by digest).
CREATE TABLE dependencies (
    id TEXT PRIMARY KEY,
    project_id TEXT NOT NULL,
    name TEXT NOT NULL,
    last_version INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    UNIQUE (project_id, name)
);

CREATE TABLE dependency_versions (
    id TEXT PRIMARY KEY,
    dep_id TEXT NOT NULL REFERENCES dependencies (id),
    project_id TEXT NOT NULL,
    version INTEGER NOT NULL,
    runtime TEXT NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    file_name TEXT NOT NULL,
    digest TEXT NOT NULL REFERENCES code_packages (digest),
    etag TEXT NOT NULL,
    size INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    UNIQUE (dep_id, version)
);

CREATE INDEX dependency_versions_by_project ON dependency_versions (project_id);
CREATE INDEX dependency_versions_by_digest ON dependency_versions (digest);

-- The dependency versions a function lists, in order: a JSON array of version ids.
ALTER TABLE functions ADD COLUMN depend_versions TEXT NOT NULL DEFAULT '[]';
