-- Web UI sign-ins (SQLite dialect). The cookie holds a random secret; only its sha256 is
-- stored. `csrf`: the token every form of the session must carry. `password_stamp`: the
-- sha256 of the user's password hash at sign-in, so a password change ends the session.
CREATE TABLE ui_sessions (
    id_hash        TEXT    NOT NULL PRIMARY KEY,
    user_id        INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    csrf           TEXT    NOT NULL,
    password_stamp TEXT    NOT NULL,
    created_at     INTEGER NOT NULL,
    expires_at     INTEGER NOT NULL
) STRICT, WITHOUT ROWID;
CREATE INDEX ui_sessions_by_expiry ON ui_sessions (expires_at);
