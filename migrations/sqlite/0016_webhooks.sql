-- Webhooks (SQLite dialect). `webhook_subscriptions`: where events of a scope (`*` or a
-- repository-name prefix) are sent, which kinds (`events`: the kinds between commas, like
-- `,push,delete,`, so one LIKE matches a kind), in which payload format, signed with
-- `secret` (kept to sign, never shown), with extra headers (a JSON object).
-- `webhook_deliveries`: the outbox. One row per (event, subscription), written in the
-- transaction that made the change, so an event exists exactly when its change does; the
-- event's facts are kept on the row and the payload is rendered from them at each attempt.
-- `event_id` is the event's stable id (shared by the subscriptions it went to, kept by
-- retries and redeliveries). Rows of one (subscription, repository) are sent in `id` order:
-- a row is due only when no older row of its queue is still `pending`.
CREATE TABLE webhook_subscriptions (
    id         INTEGER PRIMARY KEY,
    url        TEXT    NOT NULL,
    scope      TEXT    NOT NULL,
    events     TEXT    NOT NULL,
    format     TEXT    NOT NULL,
    secret     TEXT,
    headers    TEXT    NOT NULL,
    created_by TEXT    NOT NULL,
    created_at INTEGER NOT NULL
) STRICT;

CREATE TABLE webhook_deliveries (
    id              INTEGER PRIMARY KEY,
    subscription_id INTEGER NOT NULL REFERENCES webhook_subscriptions (id) ON DELETE CASCADE,
    event_id        TEXT    NOT NULL,
    kind            TEXT    NOT NULL,
    repository      TEXT    NOT NULL,
    digest          TEXT,
    tag             TEXT,
    media_type      TEXT,
    size            INTEGER,
    previous_digest TEXT,
    occurred_at     INTEGER NOT NULL,
    state           TEXT    NOT NULL DEFAULT 'pending'
                    CHECK (state IN ('pending', 'delivered', 'dead')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    lease_owner     TEXT,
    lease_until     INTEGER,
    last_status     INTEGER,
    last_error      TEXT,
    finished_at     INTEGER
) STRICT;
-- The worker's probe: the pending rows, and the head of each queue (every index here is
-- written by each push that has subscribers, so there are no more than these two).
CREATE INDEX webhook_deliveries_queue ON webhook_deliveries (subscription_id, repository, id)
    WHERE state = 'pending';
-- The delivery log of a subscription, newest first.
CREATE INDEX webhook_deliveries_log ON webhook_deliveries (subscription_id, id);
