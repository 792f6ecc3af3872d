-- The transactional outbox, worker leases and per-channel delivery cursors; citizens'
-- last shared location; the triage verdict on citizens' messages.

-- The last location a citizen shared (nearby alerts, emergencies).
ALTER TABLE citizens ADD COLUMN location_lat REAL;
ALTER TABLE citizens ADD COLUMN location_lon REAL;
ALTER TABLE citizens ADD COLUMN location_accuracy_m REAL;
ALTER TABLE citizens ADD COLUMN location_at TEXT;

-- JSON {category, score, reasons}; staff only. NULL for messages not triaged.
ALTER TABLE messages ADD COLUMN triage TEXT;

-- Deliveries to the outside, written in the same transaction as the change they
-- announce and sent afterwards by the outbox worker. `id` is the delivery id the
-- receiver deduplicates on (Standard Webhooks `webhook-id`).
CREATE TABLE outbox (
    id              TEXT PRIMARY KEY,
    destination     TEXT NOT NULL,
    event_type      TEXT NOT NULL,
    payload         TEXT NOT NULL,
    created_at      TEXT NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TEXT NOT NULL,
    delivered_at    TEXT,
    last_error      TEXT
);
CREATE INDEX outbox_due ON outbox (next_attempt_at) WHERE delivered_at IS NULL;

-- A worker that must run on one node at a time holds its lease until `expires_at`.
CREATE TABLE leases (
    name       TEXT PRIMARY KEY,
    holder     TEXT NOT NULL,
    expires_at TEXT NOT NULL
);

-- How far a channel (a messenger bridge) has delivered each conversation, by seq.
CREATE TABLE delivery_cursors (
    channel         TEXT NOT NULL,
    conversation_id TEXT NOT NULL REFERENCES conversations (id),
    seq             INTEGER NOT NULL,
    updated_at      TEXT NOT NULL,
    PRIMARY KEY (channel, conversation_id)
);

-- Upload quotas sum a person's uploads that no message uses yet.
CREATE INDEX attachments_uploader ON attachments (uploader_id, created_at);
