-- The Telegram bridge: a private chat is a stable citizen; updates already handled;
-- the polling offset; edits of messages (citizens edit in Telegram).

-- A private chat (its id is the Telegram user's id) and the citizen it is.
CREATE TABLE telegram_chats (
    chat_id    bigint PRIMARY KEY,
    citizen_id uuid NOT NULL UNIQUE REFERENCES citizens (id),
    created_at timestamptz NOT NULL
);

-- Updates whose effect is done, so a redelivered update (polling restart, webhook
-- retry) does nothing twice. Pruned after two days (Telegram keeps updates for one).
CREATE TABLE telegram_updates (
    update_id  bigint PRIMARY KEY,
    handled_at timestamptz NOT NULL
);
CREATE INDEX telegram_updates_age ON telegram_updates (handled_at);

-- Small durable state of the bridge: the next getUpdates offset.
CREATE TABLE telegram_state (
    key   text PRIMARY KEY,
    value bigint NOT NULL
);

-- The bodies a message had before each edit, oldest first (the record keeps what the
-- citizen first wrote).
CREATE TABLE message_edits (
    message_id uuid NOT NULL REFERENCES messages (id),
    edited_at  timestamptz NOT NULL,
    body       text NOT NULL
);
CREATE INDEX message_edits_message ON message_edits (message_id, edited_at);

-- The delivery worker looks for Telegram conversations with undelivered messages.
CREATE INDEX conversations_channel ON conversations (channel, updated_at);
