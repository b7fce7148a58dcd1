-- Pull-through cache rules managed through the API (SQLite dialect), beside those of the
-- configuration file: `rule` is the rule's JSON, the keys of `[[proxy]]` (credentials only
-- named, by environment variable or file). Every replica reads this table.
CREATE TABLE proxy_rules (
    prefix     TEXT    NOT NULL PRIMARY KEY,
    rule       TEXT    NOT NULL,
    updated_at INTEGER NOT NULL,
    updated_by TEXT    NOT NULL
) STRICT;
