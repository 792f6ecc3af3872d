-- Only Telegram conversations are looked up by channel (the delivery worker). A full
-- index on (channel, updated_at) was rewritten by every message of every conversation;
-- the partial one is touched by Telegram conversations alone.
DROP INDEX conversations_channel;
CREATE INDEX conversations_channel ON conversations (updated_at) WHERE channel = 'telegram';
