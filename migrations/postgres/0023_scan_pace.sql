-- Queued scans wait while scans keep being queued (a burst of pushes), PostgreSQL dialect: the
-- lease asks whether a scan was queued in the last seconds, which this index answers.
CREATE INDEX jobs_kind_created ON jobs (kind, created_at);
