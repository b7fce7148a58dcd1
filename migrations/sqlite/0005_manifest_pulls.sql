-- Pulls per manifest (a GET by tag or by digest), added by each flush of the in-memory
-- pull statistics, for the management API's image listing.
ALTER TABLE manifests ADD COLUMN pull_count INTEGER NOT NULL DEFAULT 0;
