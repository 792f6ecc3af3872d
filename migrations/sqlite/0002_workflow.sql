-- Agent workflow: presence preference, labels, canned responses, audit log, attachments.

-- What the agent chose: 'online' (take conversations when connected) or 'away'.
ALTER TABLE agents ADD COLUMN presence TEXT NOT NULL DEFAULT 'online' CHECK (presence IN ('online', 'away'));

-- Labels as a JSON array of strings; filtered with json_each.
ALTER TABLE conversations ADD COLUMN labels TEXT NOT NULL DEFAULT '[]';
-- Queue order: higher rank first (emergency 2, urgent 1, normal 0), then oldest first.
ALTER TABLE conversations ADD COLUMN priority_rank INTEGER NOT NULL DEFAULT 0;
CREATE INDEX conversations_queue ON conversations (mission_id, status, priority_rank DESC, id);

CREATE TABLE canned_responses (
    id         TEXT PRIMARY KEY,
    mission_id TEXT NOT NULL,
    title      TEXT NOT NULL,
    body       TEXT NOT NULL,
    created_by TEXT NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    UNIQUE (mission_id, title)
);

CREATE TABLE audit_log (
    id          TEXT PRIMARY KEY,
    at          TEXT NOT NULL,
    actor_kind  TEXT NOT NULL,
    actor_id    TEXT,
    action      TEXT NOT NULL,
    target_kind TEXT,
    target_id   TEXT,
    mission_id  TEXT,
    details     TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX audit_log_action ON audit_log (action, id);
CREATE INDEX audit_log_actor ON audit_log (actor_id, id);

-- Uploaded images. Files are content-addressed by SHA-256 under DATA_DIR/attachments;
-- several uploads of the same bytes share one file.
CREATE TABLE attachments (
    id                 TEXT PRIMARY KEY,
    sha256             TEXT NOT NULL,
    content_type       TEXT NOT NULL,
    bytes              INTEGER NOT NULL,
    width              INTEGER NOT NULL,
    height             INTEGER NOT NULL,
    thumb_sha256       TEXT NOT NULL,
    thumb_content_type TEXT NOT NULL,
    uploader_id        TEXT NOT NULL,
    created_at         TEXT NOT NULL
);
CREATE INDEX attachments_created ON attachments (created_at);
CREATE INDEX attachments_sha ON attachments (sha256);
CREATE INDEX attachments_thumb_sha ON attachments (thumb_sha256);

CREATE TABLE message_attachments (
    message_id      TEXT NOT NULL REFERENCES messages (id),
    attachment_id   TEXT NOT NULL REFERENCES attachments (id),
    conversation_id TEXT NOT NULL REFERENCES conversations (id),
    PRIMARY KEY (message_id, attachment_id)
);
CREATE INDEX message_attachments_attachment ON message_attachments (attachment_id);
