-- Replication uploads in flight (PostgreSQL dialect). While a run pushes a blob to a
-- remote, the remote's upload session is kept here, so a start that takes the execution
-- over after a crash asks the remote how much it holds and sends only the rest. Rows go
-- when the blob is complete and when the execution ends.
CREATE TABLE replication_uploads (
    execution_id  BIGINT NOT NULL REFERENCES replication_executions (id) ON DELETE CASCADE,
    destination   TEXT   NOT NULL,
    digest        TEXT   NOT NULL,
    location      TEXT   NOT NULL,
    PRIMARY KEY (execution_id, destination, digest)
);
