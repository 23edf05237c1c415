-- Function tags (CreateTags, DeleteTags, ListFunctionTags, ShowProjectTagsList); a function's
-- tags go with it.
CREATE TABLE function_tags (
    function_id INTEGER NOT NULL REFERENCES functions (id) ON DELETE CASCADE,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    PRIMARY KEY (function_id, key)
);
