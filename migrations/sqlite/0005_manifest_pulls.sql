-- Pulls per manifest (a GET by tag or by digest), added by each flush of the in-memory
-- pull statistics, for the management API's image listing.
ALTER TABLE manifests ADD COLUMN pull_count INTEGER NOT NULL DEFAULT 0;
-- The image listing's orders: newest push first, most pulled first (ties by arrival).
CREATE INDEX manifests_by_push ON manifests (repository_id, pushed_at, id);
CREATE INDEX manifests_by_pulls ON manifests (repository_id, pull_count, id);
