-- Versions and aliases: a function's published versions and its aliases are rows of
-- `functions` beside its latest, each with an id of its own, so that records, async configs,
-- concurrency and warm instances are kept per qualifier as they are per function.
--   qualifier: 'latest', a version name, or '!' + an alias name; unique per function.
--   version: the version a row runs ('latest' or its own name; an alias: the version it names).
--   version_description: a version's or an alias's own description.
--   alias_weights: an alias's additional_version_weights (JSON), '' for other rows.
ALTER TABLE functions
    ADD COLUMN qualifier TEXT NOT NULL DEFAULT 'latest',
    ADD COLUMN version TEXT NOT NULL DEFAULT 'latest',
    ADD COLUMN version_description TEXT NOT NULL DEFAULT '',
    ADD COLUMN alias_weights TEXT NOT NULL DEFAULT '';

ALTER TABLE functions DROP CONSTRAINT functions_project_id_package_name_key;

ALTER TABLE functions ADD CONSTRAINT functions_qualifier_key
    UNIQUE (project_id, package, name, qualifier);
