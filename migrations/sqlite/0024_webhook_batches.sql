-- Webhook batches (SQLite dialect). A subscription sends at most `batch_max` events in one
-- request: Distribution's envelope holds a list of events, CloudEvents has a batched mode.
-- Above 1, the subscription's pending rows form one queue (sent in `id` order, one request
-- at a time), not one per repository; 1, the default, sends each event alone.
ALTER TABLE webhook_subscriptions ADD COLUMN batch_max INTEGER NOT NULL DEFAULT 1;
