-- The transactional outbox, worker leases and per-channel delivery cursors; citizens'
-- last shared location; the triage verdict on citizens' messages.

ALTER TABLE citizens ADD COLUMN location_lat double precision;
ALTER TABLE citizens ADD COLUMN location_lon double precision;
ALTER TABLE citizens ADD COLUMN location_accuracy_m double precision;
ALTER TABLE citizens ADD COLUMN location_at timestamptz;

-- JSON {category, score, reasons}; staff only. NULL for messages not triaged.
ALTER TABLE messages ADD COLUMN triage jsonb;

-- Deliveries to the outside, written in the same transaction as the change they
-- announce and sent afterwards by the outbox worker of whichever node holds the
-- lease. `id` is the delivery id the receiver deduplicates on (`webhook-id`).
CREATE TABLE outbox (
    id              uuid PRIMARY KEY,
    destination     text NOT NULL,
    event_type      text NOT NULL,
    payload         jsonb NOT NULL,
    created_at      timestamptz NOT NULL,
    attempts        bigint NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL,
    delivered_at    timestamptz,
    last_error      text
);
CREATE INDEX outbox_due ON outbox (next_attempt_at) WHERE delivered_at IS NULL;

-- A worker that must run on one node at a time holds its lease until `expires_at`.
CREATE TABLE leases (
    name       text PRIMARY KEY,
    holder     text NOT NULL,
    expires_at timestamptz NOT NULL
);

-- How far a channel (a messenger bridge) has delivered each conversation, by seq.
CREATE TABLE delivery_cursors (
    channel         text NOT NULL,
    conversation_id uuid NOT NULL REFERENCES conversations (id),
    seq             bigint NOT NULL,
    updated_at      timestamptz NOT NULL,
    PRIMARY KEY (channel, conversation_id)
);

-- Upload quotas sum a person's uploads that no message uses yet.
CREATE INDEX attachments_uploader ON attachments (uploader_id, created_at);
