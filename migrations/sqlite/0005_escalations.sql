-- Escalations of conversations to the 12308 hotline. One open escalation per
-- conversation: further emergency messages are added to it.

CREATE TABLE escalations (
    id                  TEXT PRIMARY KEY,
    conversation_id     TEXT NOT NULL REFERENCES conversations (id),
    mission_id          TEXT NOT NULL,
    reason              TEXT NOT NULL CHECK (reason IN ('sos', 'triage')),
    state               TEXT NOT NULL CHECK (state IN ('pending', 'delivered', 'acknowledged', 'resolved')),
    created_at          TEXT NOT NULL,
    delivered_at        TEXT,
    acknowledged_at     TEXT,
    -- an agent id, or 'hotline'
    acknowledged_by     TEXT,
    attempts            INTEGER NOT NULL DEFAULT 0,
    reescalations       INTEGER NOT NULL DEFAULT 0,
    -- when staff were last alerted (creation or re-escalation)
    alerted_at          TEXT NOT NULL,
    location_lat        REAL,
    location_lon        REAL,
    location_accuracy_m REAL
);
CREATE UNIQUE INDEX escalations_open ON escalations (conversation_id) WHERE state != 'resolved';
CREATE INDEX escalations_state ON escalations (state, alerted_at);
CREATE INDEX escalations_mission ON escalations (mission_id, id);

-- What an outbox row is about (an escalation id), so a duty officer can redeliver it.
ALTER TABLE outbox ADD COLUMN subject TEXT;
CREATE INDEX outbox_subject ON outbox (subject) WHERE subject IS NOT NULL;
