-- Agent workflow: presence preference, labels, canned responses, audit log, attachments.

-- What the agent chose: 'online' (take conversations when connected) or 'away'.
ALTER TABLE agents ADD COLUMN presence text NOT NULL DEFAULT 'online' CHECK (presence IN ('online', 'away'));

-- Labels as a JSON array of strings; filtered with the jsonb `?` operator.
ALTER TABLE conversations ADD COLUMN labels jsonb NOT NULL DEFAULT '[]';
-- Queue order: higher rank first (emergency 2, urgent 1, normal 0), then oldest first.
ALTER TABLE conversations ADD COLUMN priority_rank bigint NOT NULL DEFAULT 0;
CREATE INDEX conversations_queue ON conversations (mission_id, status, priority_rank DESC, id);

CREATE TABLE canned_responses (
    id         uuid PRIMARY KEY,
    mission_id text NOT NULL,
    title      text NOT NULL,
    body       text NOT NULL,
    created_by uuid NOT NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL,
    UNIQUE (mission_id, title)
);

CREATE TABLE audit_log (
    id          uuid PRIMARY KEY,
    at          timestamptz NOT NULL,
    actor_kind  text NOT NULL,
    actor_id    text,
    action      text NOT NULL,
    target_kind text,
    target_id   text,
    mission_id  text,
    details     jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_action ON audit_log (action, id);
CREATE INDEX audit_log_actor ON audit_log (actor_id, id);
CREATE INDEX audit_log_target ON audit_log (target_id, id);

-- Uploaded images. The bytes live in `blobs` (below), content-addressed by SHA-256:
-- every node reads the same images, and a pg_dump backs them up with the rest.
CREATE TABLE attachments (
    id                 uuid PRIMARY KEY,
    sha256             text NOT NULL,
    content_type       text NOT NULL,
    bytes              bigint NOT NULL,
    width              bigint NOT NULL,
    height             bigint NOT NULL,
    thumb_sha256       text NOT NULL,
    thumb_content_type text NOT NULL,
    uploader_id        uuid NOT NULL,
    created_at         timestamptz NOT NULL
);
CREATE INDEX attachments_created ON attachments (created_at);
CREATE INDEX attachments_sha ON attachments (sha256);
CREATE INDEX attachments_thumb_sha ON attachments (thumb_sha256);

CREATE TABLE message_attachments (
    message_id      uuid NOT NULL REFERENCES messages (id),
    attachment_id   uuid NOT NULL REFERENCES attachments (id),
    conversation_id uuid NOT NULL REFERENCES conversations (id),
    PRIMARY KEY (message_id, attachment_id)
);
CREATE INDEX message_attachments_attachment ON message_attachments (attachment_id);

-- Image bytes by SHA-256. `touched_at` moves on every upload of the same bytes, so
-- clean-up never removes bytes an upload in flight is about to reference.
CREATE TABLE blobs (
    sha256     text PRIMARY KEY,
    bytes      bytea NOT NULL,
    touched_at timestamptz NOT NULL
);
