-- Pulls per manifest (a GET by tag or by digest), added by each flush of the in-memory
-- pull statistics, for the management API's image listing.
ALTER TABLE manifests ADD COLUMN pull_count BIGINT NOT NULL DEFAULT 0;
