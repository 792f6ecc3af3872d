-- Escalations of conversations to the 12308 hotline. One open escalation per
-- conversation: further emergency messages are added to it.

CREATE TABLE escalations (
    id                  uuid PRIMARY KEY,
    conversation_id     uuid NOT NULL REFERENCES conversations (id),
    mission_id          text NOT NULL,
    reason              text NOT NULL CHECK (reason IN ('sos', 'triage')),
    state               text NOT NULL CHECK (state IN ('pending', 'delivered', 'acknowledged', 'resolved')),
    created_at          timestamptz NOT NULL,
    delivered_at        timestamptz,
    acknowledged_at     timestamptz,
    -- an agent id, or 'hotline'
    acknowledged_by     text,
    attempts            bigint NOT NULL DEFAULT 0,
    reescalations       bigint NOT NULL DEFAULT 0,
    -- when staff were last alerted (creation or re-escalation)
    alerted_at          timestamptz NOT NULL,
    location_lat        double precision,
    location_lon        double precision,
    location_accuracy_m double precision
);
CREATE UNIQUE INDEX escalations_open ON escalations (conversation_id) WHERE state <> 'resolved';
CREATE INDEX escalations_state ON escalations (state, alerted_at);
CREATE INDEX escalations_mission ON escalations (mission_id, id);

-- What an outbox row is about (an escalation id), so a duty officer can redeliver it.
ALTER TABLE outbox ADD COLUMN subject text;
CREATE INDEX outbox_subject ON outbox (subject) WHERE subject IS NOT NULL;

-- The box query of citizens near an alert.
CREATE INDEX citizens_location ON citizens (location_lat, location_lon) WHERE location_lat IS NOT NULL;
