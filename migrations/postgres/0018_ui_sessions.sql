-- Web UI sign-ins (PostgreSQL dialect): the same schema as migrations/sqlite/0018_ui_sessions.sql.
CREATE TABLE ui_sessions (
    id_hash        TEXT   NOT NULL PRIMARY KEY,
    user_id        BIGINT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    csrf           TEXT   NOT NULL,
    password_stamp TEXT   NOT NULL,
    created_at     BIGINT NOT NULL,
    expires_at     BIGINT NOT NULL
);
CREATE INDEX ui_sessions_by_expiry ON ui_sessions (expires_at);
