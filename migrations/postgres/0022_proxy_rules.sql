-- Pull-through cache rules managed through the API (PostgreSQL dialect), beside those of
-- the configuration file: `rule` is the rule's JSON, the keys of `[[proxy]]` (credentials
-- only named, by environment variable or file). Every replica reads this table.
CREATE TABLE proxy_rules (
    prefix     TEXT COLLATE "C" NOT NULL PRIMARY KEY,
    rule       TEXT NOT NULL,
    updated_at BIGINT NOT NULL,
    updated_by TEXT NOT NULL
);
