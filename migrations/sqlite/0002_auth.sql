-- Access control (SQLite dialect): identities, credentials, namespaces, visibility, audit.
-- Times are unix seconds. Secrets are never stored: passwords as argon2id PHC strings,
-- tokens as the sha256 of their (high-entropy) text.

CREATE TABLE users (
    id            INTEGER PRIMARY KEY,
    name          TEXT    NOT NULL UNIQUE,
    password_hash TEXT    NOT NULL,
    is_admin      INTEGER NOT NULL DEFAULT 0,
    created_at    INTEGER NOT NULL
) STRICT;

-- Personal access tokens (user_id set) and deploy tokens (namespace set, for CI).
CREATE TABLE access_tokens (
    id           INTEGER PRIMARY KEY,
    kind         TEXT    NOT NULL CHECK (kind IN ('personal', 'deploy')),
    name         TEXT    NOT NULL,
    user_id      INTEGER REFERENCES users (id) ON DELETE CASCADE,
    namespace    TEXT,
    -- The login name: the owner's for a personal token, `<namespace>+<name>` for a deploy token.
    username     TEXT    NOT NULL,
    secret_hash  TEXT    NOT NULL UNIQUE,
    scopes       TEXT    NOT NULL,
    expires_at   INTEGER,
    revoked_at   INTEGER,
    last_used_at INTEGER,
    created_at   INTEGER NOT NULL,
    CHECK ((kind = 'personal') = (user_id IS NOT NULL)),
    CHECK ((kind = 'deploy') = (namespace IS NOT NULL))
) STRICT;
CREATE INDEX access_tokens_by_user ON access_tokens (user_id);
CREATE UNIQUE INDEX deploy_tokens_by_username ON access_tokens (username) WHERE kind = 'deploy';

-- Namespaces: the first component of repository names, with the visibility new repositories get.
CREATE TABLE namespaces (
    name               TEXT    PRIMARY KEY,
    default_visibility TEXT    NOT NULL CHECK (default_visibility IN ('public', 'internal', 'private')),
    created_at         INTEGER NOT NULL
) STRICT, WITHOUT ROWID;

-- Roles: 10 guest, 20 reporter, 30 developer, 40 maintainer, 50 owner (GitLab's scale).
CREATE TABLE members (
    namespace TEXT    NOT NULL REFERENCES namespaces (name) ON DELETE CASCADE,
    user_id   INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    role      INTEGER NOT NULL,
    PRIMARY KEY (namespace, user_id)
) STRICT, WITHOUT ROWID;
CREATE INDEX members_by_user ON members (user_id);

-- A repository's own visibility, by name, so that it can be set before the first push.
CREATE TABLE repository_visibility (
    name       TEXT NOT NULL PRIMARY KEY,
    visibility TEXT NOT NULL CHECK (visibility IN ('public', 'internal', 'private'))
) STRICT, WITHOUT ROWID;

-- The token signing key (Ed25519 PKCS#8, base64) when no key file is configured: one row,
-- so every replica on the same database signs and verifies with the same key.
CREATE TABLE signing_keys (
    id         INTEGER PRIMARY KEY CHECK (id = 1),
    pkcs8      TEXT    NOT NULL,
    created_at INTEGER NOT NULL
) STRICT;

CREATE TABLE audit_log (
    id       INTEGER PRIMARY KEY,
    at       INTEGER NOT NULL,
    actor    TEXT    NOT NULL,
    client   TEXT,
    action   TEXT    NOT NULL,
    target   TEXT,
    detail   TEXT
) STRICT;
