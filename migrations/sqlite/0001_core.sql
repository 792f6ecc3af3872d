-- Core chat schema: agents, citizens, sessions, conversations, messages.
-- IDs are UUIDv7 strings; times are RFC 3339 UTC strings with microseconds (sortable as text).

CREATE TABLE agents (
    id            TEXT PRIMARY KEY,
    email         TEXT NOT NULL UNIQUE COLLATE NOCASE,
    name          TEXT NOT NULL,
    role          TEXT NOT NULL CHECK (role IN ('agent', 'editor', 'admin')),
    password_hash TEXT NOT NULL,
    capacity      INTEGER NOT NULL DEFAULT 5,
    created_at    TEXT NOT NULL,
    updated_at    TEXT NOT NULL
);

CREATE TABLE agent_missions (
    agent_id   TEXT NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    mission_id TEXT NOT NULL,
    PRIMARY KEY (agent_id, mission_id)
);

CREATE TABLE citizens (
    id           TEXT PRIMARY KEY,
    -- `sub` of the identity token; NULL for guests.
    external_sub TEXT UNIQUE,
    display_name TEXT NOT NULL,
    locale       TEXT,
    country      TEXT,
    created_at   TEXT NOT NULL,
    updated_at   TEXT NOT NULL
);

-- Bearer tokens are random; only their SHA-256 is stored.
CREATE TABLE sessions (
    token_hash TEXT PRIMARY KEY,
    kind       TEXT NOT NULL CHECK (kind IN ('agent', 'citizen')),
    subject_id TEXT NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    revoked_at TEXT
);
CREATE INDEX sessions_subject ON sessions (subject_id);

CREATE TABLE conversations (
    id          TEXT PRIMARY KEY,
    mission_id  TEXT NOT NULL,
    citizen_id  TEXT NOT NULL REFERENCES citizens (id),
    channel     TEXT NOT NULL CHECK (channel IN ('app', 'web', 'telegram')),
    status      TEXT NOT NULL CHECK (status IN ('open', 'assigned', 'resolved')),
    priority    TEXT NOT NULL DEFAULT 'normal' CHECK (priority IN ('normal', 'urgent', 'emergency')),
    assignee_id TEXT REFERENCES agents (id),
    last_seq    INTEGER NOT NULL DEFAULT 0,
    created_at  TEXT NOT NULL,
    updated_at  TEXT NOT NULL
);
CREATE INDEX conversations_citizen ON conversations (citizen_id, id);
CREATE INDEX conversations_mission ON conversations (mission_id, id);
CREATE INDEX conversations_assignee ON conversations (assignee_id, id);

CREATE TABLE messages (
    id              TEXT PRIMARY KEY,
    conversation_id TEXT NOT NULL REFERENCES conversations (id),
    seq             INTEGER NOT NULL,
    client_msg_id   TEXT,
    sender_kind     TEXT NOT NULL CHECK (sender_kind IN ('citizen', 'agent', 'bot', 'system')),
    sender_id       TEXT,
    sender_name     TEXT NOT NULL,
    kind            TEXT NOT NULL CHECK (kind IN ('text', 'image', 'note', 'system')),
    body            TEXT NOT NULL,
    attachments     TEXT NOT NULL DEFAULT '[]',
    created_at      TEXT NOT NULL,
    UNIQUE (conversation_id, seq)
);
-- Idempotent sends: one message per sender and client_msg_id, enforced by the database.
CREATE UNIQUE INDEX messages_idempotency ON messages (sender_id, client_msg_id)
    WHERE client_msg_id IS NOT NULL;

CREATE TABLE read_markers (
    conversation_id TEXT NOT NULL REFERENCES conversations (id),
    reader_id       TEXT NOT NULL,
    seq             INTEGER NOT NULL,
    updated_at      TEXT NOT NULL,
    PRIMARY KEY (conversation_id, reader_id)
);
