-- Core chat schema: agents, citizens, sessions, conversations, messages.
-- Same tables and column names as the SQLite schema, with Postgres types: ids are
-- `uuid` (UUIDv7, so byte order is time order), times `timestamptz` (microseconds),
-- JSON values `jsonb`. Mission ids, tokens and the closed sets stay text.

CREATE TABLE agents (
    id            uuid PRIMARY KEY,
    email         text NOT NULL,
    name          text NOT NULL,
    role          text NOT NULL CHECK (role IN ('agent', 'editor', 'admin')),
    password_hash text NOT NULL,
    capacity      bigint NOT NULL DEFAULT 5,
    created_at    timestamptz NOT NULL,
    updated_at    timestamptz NOT NULL
);
-- Emails are unique whatever their case (SQLite: COLLATE NOCASE).
CREATE UNIQUE INDEX agents_email ON agents (lower(email));

CREATE TABLE agent_missions (
    agent_id   uuid NOT NULL REFERENCES agents (id) ON DELETE CASCADE,
    mission_id text NOT NULL,
    PRIMARY KEY (agent_id, mission_id)
);
CREATE INDEX agent_missions_mission ON agent_missions (mission_id, agent_id);

CREATE TABLE citizens (
    id           uuid PRIMARY KEY,
    -- `sub` of the identity token; NULL for guests.
    external_sub text UNIQUE,
    display_name text NOT NULL,
    locale       text,
    country      text,
    created_at   timestamptz NOT NULL,
    updated_at   timestamptz NOT NULL
);

-- Bearer tokens are random; only their SHA-256 is stored.
CREATE TABLE sessions (
    token_hash text PRIMARY KEY,
    kind       text NOT NULL CHECK (kind IN ('agent', 'citizen')),
    subject_id uuid NOT NULL,
    created_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    revoked_at timestamptz
);
CREATE INDEX sessions_subject ON sessions (subject_id);

CREATE TABLE conversations (
    id          uuid PRIMARY KEY,
    mission_id  text NOT NULL,
    citizen_id  uuid NOT NULL REFERENCES citizens (id),
    channel     text NOT NULL CHECK (channel IN ('app', 'web', 'telegram')),
    status      text NOT NULL CHECK (status IN ('open', 'assigned', 'resolved')),
    priority    text NOT NULL DEFAULT 'normal' CHECK (priority IN ('normal', 'urgent', 'emergency')),
    assignee_id uuid REFERENCES agents (id),
    last_seq    bigint NOT NULL DEFAULT 0,
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL
);
CREATE INDEX conversations_citizen ON conversations (citizen_id, id);
CREATE INDEX conversations_mission ON conversations (mission_id, id);
CREATE INDEX conversations_assignee ON conversations (assignee_id, id);

CREATE TABLE messages (
    id              uuid PRIMARY KEY,
    conversation_id uuid NOT NULL REFERENCES conversations (id),
    seq             bigint NOT NULL,
    client_msg_id   text,
    sender_kind     text NOT NULL CHECK (sender_kind IN ('citizen', 'agent', 'bot', 'system')),
    sender_id       uuid,
    sender_name     text NOT NULL,
    kind            text NOT NULL CHECK (kind IN ('text', 'image', 'note', 'system')),
    body            text NOT NULL,
    attachments     jsonb NOT NULL DEFAULT '[]',
    created_at      timestamptz NOT NULL,
    UNIQUE (conversation_id, seq)
);
-- Idempotent sends: one message per sender and client_msg_id, enforced by the database.
CREATE UNIQUE INDEX messages_idempotency ON messages (sender_id, client_msg_id)
    WHERE client_msg_id IS NOT NULL;

CREATE TABLE read_markers (
    conversation_id uuid NOT NULL REFERENCES conversations (id),
    reader_id       uuid NOT NULL,
    seq             bigint NOT NULL,
    updated_at      timestamptz NOT NULL,
    PRIMARY KEY (conversation_id, reader_id)
);
