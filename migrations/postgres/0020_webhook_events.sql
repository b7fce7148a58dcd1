-- Webhook events beyond push, delete and tag_moved (PostgreSQL dialect). A delivery names who
-- did it (`actor`: a user or token name, where known) and what else its kind tells
-- (`detail`: a JSON object, like a refusal's reason or a run's counts). A subscription that
-- wants pulls gets each one with probability `pull_sample_rate` (0 < rate <= 1), so pulls,
-- the volume, can be thinned per subscription.
ALTER TABLE webhook_deliveries ADD COLUMN actor TEXT;
ALTER TABLE webhook_deliveries ADD COLUMN detail TEXT;
ALTER TABLE webhook_subscriptions ADD COLUMN pull_sample_rate DOUBLE PRECISION NOT NULL DEFAULT 1.0;
-- The pruning of finished deliveries (`webhooks.retention`), oldest first; written when a
-- delivery finishes, never by the push that adds it.
CREATE INDEX webhook_deliveries_finished ON webhook_deliveries (finished_at)
    WHERE state <> 'pending';
