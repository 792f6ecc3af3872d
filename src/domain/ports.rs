//! The storage interface the domain needs, one trait per aggregate. No SQL and no
//! driver types cross it: a backend (SQLite today, Postgres next) implements these
//! traits with its own SQL and migrations, and persists exactly what it is given.
//! Where a change must be atomic with its audit entry or its outbox rows, the method
//! takes them and writes them in the same transaction.

use async_trait::async_trait;

use super::model::*;
use super::planner::{Load, Loaded, Plan};
use super::types::*;
use crate::error::AppResult;

/// Plans a batch inside the store's transaction (see [`super::planner`]). Owned, so a
/// store may run it on a thread of its own.
pub type PlanFn = Box<dyn FnOnce(Loaded) -> Plan + Send + 'static>;

/// Conversations and their messages.
#[async_trait]
pub trait ConversationStore: Send + Sync {
    async fn conversation(&self, id: ConversationId) -> AppResult<Option<Conversation>>;
    async fn list_conversations(&self, f: &ConversationFilter) -> AppResult<Vec<Conversation>>;
    /// One transaction: read what `load` names, let `plan` decide, write its writes.
    /// An `Err` means nothing was written.
    async fn commit(&self, load: Load, plan: PlanFn) -> AppResult<Plan>;
    async fn messages(
        &self,
        conversation: ConversationId,
        page: MessagePage,
    ) -> AppResult<Vec<Message>>;
    /// The newest unresolved conversation of a citizen.
    async fn open_conversation_of(&self, citizen: CitizenId) -> AppResult<Option<Conversation>>;
    /// Remember how far a reader has read (never moves backwards).
    async fn set_read(
        &self,
        conversation: ConversationId,
        reader: PersonId,
        seq: i64,
    ) -> AppResult<()>;
    /// The reader's read markers for these conversations.
    async fn read_markers(
        &self,
        reader: PersonId,
        conversations: &[ConversationId],
    ) -> AppResult<Vec<(ConversationId, i64)>>;
    /// Conversations of `mission` waiting for an agent, in queue order.
    async fn waiting_conversations(
        &self,
        mission: &MissionId,
        limit: i64,
    ) -> AppResult<Vec<Conversation>>;
    /// Agents (role `agent`) of `mission` with capacity and open conversations.
    async fn agent_loads(&self, mission: &MissionId) -> AppResult<Vec<AgentLoad>>;
    /// The message a sender stored under a `client_msg_id`.
    async fn message_by_client_id(
        &self,
        sender: PersonId,
        client_msg_id: &ClientMsgId,
    ) -> AppResult<Option<Message>>;
    /// Replace a message's body, keeping the previous one in its edit history (one
    /// transaction); `None` when there is no such message.
    async fn edit_message(
        &self,
        id: MessageId,
        body: &str,
        at: Timestamp,
    ) -> AppResult<Option<Message>>;
}

/// Staff accounts, citizens and sessions.
#[async_trait]
pub trait PeopleStore: Send + Sync {
    /// `conflict` when the email is taken.
    async fn create_agent(&self, agent: &Agent, audit: Option<&AuditEntry>) -> AppResult<()>;
    async fn agent_by_email(&self, email: &str) -> AppResult<Option<Agent>>;
    async fn agent_by_id(&self, id: AgentId) -> AppResult<Option<Agent>>;
    async fn staff_count(&self) -> AppResult<i64>;
    async fn set_agent_presence(
        &self,
        id: AgentId,
        presence: PresenceChoice,
        audit: &AuditEntry,
    ) -> AppResult<()>;
    async fn set_agent_capacity(
        &self,
        id: AgentId,
        capacity: i64,
        audit: &AuditEntry,
    ) -> AppResult<()>;
    /// Staff serving a mission, by name.
    async fn mission_staff(&self, mission: &MissionId) -> AppResult<Vec<Agent>>;
    async fn create_citizen(&self, citizen: &Citizen) -> AppResult<()>;
    /// The citizen behind an identity `sub`, created on first sight; given profile
    /// fields replace stored ones, absent ones keep them.
    async fn upsert_citizen_by_sub(
        &self,
        sub: &str,
        display_name: Option<&str>,
        locale: Option<&Locale>,
        country: Option<CountryCode>,
    ) -> AppResult<Citizen>;
    async fn citizen(&self, id: CitizenId) -> AppResult<Option<Citizen>>;
    async fn set_citizen_location(&self, id: CitizenId, at: GeoPoint) -> AppResult<()>;
    /// Change what is given: `locale` when `Some`, `country` when `Some` (`Some(None)`
    /// clears it). `None` when the citizen does not exist.
    async fn update_citizen_profile(
        &self,
        id: CitizenId,
        locale: Option<&Locale>,
        country: Option<Option<CountryCode>>,
    ) -> AppResult<Option<Citizen>>;
    /// Citizens whose last shared location lies in the box between these corners (the
    /// domain keeps those inside the circle it needs).
    async fn citizens_located_in(
        &self,
        lat: (f64, f64),
        lon: (f64, f64),
    ) -> AppResult<Vec<(CitizenId, GeoPoint)>>;
    async fn create_session(
        &self,
        token_hash: &str,
        subject: SessionSubject,
        expires_at: Timestamp,
    ) -> AppResult<()>;
    async fn session(&self, token_hash: &str) -> AppResult<Option<Session>>;
    /// `false` when it was already revoked or unknown.
    async fn revoke_session(&self, token_hash: &str, audit: Option<&AuditEntry>)
        -> AppResult<bool>;
}

/// Canned responses and the audit log.
#[async_trait]
pub trait WorkflowStore: Send + Sync {
    async fn canned_responses(&self, missions: &[MissionId]) -> AppResult<Vec<CannedResponse>>;
    async fn canned_response(&self, id: CannedId) -> AppResult<Option<CannedResponse>>;
    /// Insert or update by id; `conflict` when the mission has that title already.
    async fn save_canned_response(&self, c: &CannedResponse, audit: &AuditEntry) -> AppResult<()>;
    async fn delete_canned_response(&self, id: CannedId, audit: &AuditEntry) -> AppResult<bool>;
    /// An audit entry for an action that changed nothing else (sign-ins).
    async fn audit(&self, entry: &AuditEntry) -> AppResult<()>;
    async fn audit_entries(&self, f: &AuditFilter) -> AppResult<Vec<AuditEntry>>;
}

/// Uploaded images.
#[async_trait]
pub trait AttachmentStore: Send + Sync {
    async fn insert_attachment(&self, a: &Attachment) -> AppResult<()>;
    async fn attachment(&self, id: AttachmentId) -> AppResult<Option<Attachment>>;
    /// Bytes of uploads that no message references, of one uploader or of everyone.
    async fn unreferenced_upload_bytes(&self, uploader: Option<PersonId>) -> AppResult<i64>;
    /// Conversations whose messages hold the attachment.
    async fn attachment_conversations(&self, id: AttachmentId) -> AppResult<Vec<ConversationId>>;
    /// Delete uploads older than `cutoff` that no message references; returns the file
    /// hashes no upload uses any more (the caller removes those files).
    async fn collect_unreferenced_attachments(&self, cutoff: Timestamp) -> AppResult<Vec<String>>;
}

/// Knowledge-base articles, their versions, the index queue, search gaps.
#[async_trait]
pub trait KbStore: Send + Sync {
    async fn article(&self, id: ArticleId) -> AppResult<Option<Article>>;
    /// Every locale of a slug.
    async fn articles_by_slug(&self, slug: &str) -> AppResult<Vec<Article>>;
    async fn list_articles(
        &self,
        status: Option<ArticleStatus>,
        locale: Option<&Locale>,
        category: Option<Category>,
        limit: i64,
        offset: i64,
    ) -> AppResult<Vec<Article>>;
    /// Articles in id order after `after`, for full index rebuilds.
    async fn articles_page(&self, after: Option<ArticleId>, limit: i64) -> AppResult<Vec<Article>>;
    async fn article_count(&self) -> AppResult<i64>;
    /// Create or update, store a version snapshot and queue it for the indexer, in one
    /// transaction. `source_hash` (imports) skips content that did not change.
    async fn save_article(
        &self,
        mode: SaveMode,
        fields: &ArticleFields,
        body_html: &str,
        editor: Option<AgentId>,
        source_hash: Option<&str>,
    ) -> AppResult<(Article, SaveOutcome)>;
    /// Imported articles, upserted by slug + locale in one transaction (with their
    /// versions and index-queue rows): one outcome per item, in order. An item that fails
    /// is rolled back alone and the others are kept.
    async fn import_articles(
        &self,
        items: &[ArticleImport],
    ) -> AppResult<Vec<AppResult<SaveOutcome>>>;
    /// Articles by id (missing ids are left out), for the indexer.
    async fn articles_by_ids(&self, ids: &[ArticleId]) -> AppResult<Vec<Article>>;
    async fn article_versions(&self, id: ArticleId) -> AppResult<Vec<ArticleVersion>>;
    async fn article_version(
        &self,
        id: ArticleId,
        version: i64,
    ) -> AppResult<Option<ArticleVersion>>;
    /// Ask the indexer for a full rebuild.
    async fn enqueue_full_reindex(&self) -> AppResult<()>;
    /// Queue rows after `seq`, oldest first: (seq, article id or `None` for a rebuild).
    async fn index_queue_after(
        &self,
        seq: i64,
        limit: i64,
    ) -> AppResult<Vec<(i64, Option<ArticleId>)>>;
    async fn max_index_seq(&self) -> AppResult<i64>;
    async fn prune_index_queue(&self, upto: i64) -> AppResult<()>;
    /// Queue published articles whose expiry has passed, once each.
    async fn queue_expired_articles(&self, now: Timestamp) -> AppResult<usize>;
    async fn record_search_gap(
        &self,
        query: &str,
        normalized: &str,
        locale: Option<&str>,
        country: Option<&str>,
    ) -> AppResult<()>;
    async fn top_search_gaps(&self, since: Timestamp, limit: i64) -> AppResult<Vec<SearchGap>>;
    /// Published safety alerts that have not expired.
    async fn active_alerts(&self, now: Timestamp) -> AppResult<Vec<Article>>;
}

/// The transactional outbox, delivery cursors and worker leases.
#[async_trait]
pub trait OutboxStore: Send + Sync {
    /// Rows written on their own (changes that write them atomically take them as a
    /// parameter instead).
    async fn enqueue_outbox(&self, rows: &[NewOutboxRow]) -> AppResult<()>;
    /// Undelivered rows whose next attempt is due, oldest first.
    async fn due_outbox(&self, now: Timestamp, limit: i64) -> AppResult<Vec<OutboxRow>>;
    async fn outbox_delivered(&self, id: OutboxId, at: Timestamp) -> AppResult<()>;
    async fn outbox_failed(
        &self,
        id: OutboxId,
        attempts: i64,
        next_attempt_at: Timestamp,
        error: &str,
    ) -> AppResult<()>;
    async fn outbox_row(&self, id: OutboxId) -> AppResult<Option<OutboxRow>>;
    /// The rows about one subject (an escalation's deliveries), oldest first.
    async fn outbox_rows_about(&self, subject: &str) -> AppResult<Vec<OutboxRow>>;
    async fn outbox_stats(&self) -> AppResult<OutboxStats>;
    /// Take or renew the named lease for `holder` until `until`; `false` when another
    /// holder has it and it has not expired.
    async fn acquire_lease(&self, name: &str, holder: &str, until: Timestamp) -> AppResult<bool>;
    /// How far a channel has delivered a conversation (0 when never).
    async fn cursor(&self, channel: &str, conversation: ConversationId) -> AppResult<i64>;
    async fn advance_cursor(
        &self,
        channel: &str,
        conversation: ConversationId,
        seq: i64,
    ) -> AppResult<()>;
}

/// Citizens who write from Telegram, and the bridge's durable state.
#[async_trait]
pub trait TelegramStore: Send + Sync {
    /// The citizen of a private chat, if the chat has been seen.
    async fn telegram_citizen(&self, chat_id: i64) -> AppResult<Option<Citizen>>;
    /// The citizen of a private chat; `citizen` is created and linked when the chat is
    /// new, in one transaction. `true` when it was created.
    async fn link_telegram_chat(
        &self,
        chat_id: i64,
        citizen: &Citizen,
    ) -> AppResult<(Citizen, bool)>;
    /// The private chat of a citizen who writes from Telegram.
    async fn telegram_chat_of(&self, citizen: CitizenId) -> AppResult<Option<i64>>;
    async fn telegram_update_handled(&self, update_id: i64) -> AppResult<bool>;
    /// Record that an update's effect is done; `false` when it was recorded already.
    async fn mark_telegram_update(&self, update_id: i64, at: Timestamp) -> AppResult<bool>;
    /// Forget handled updates recorded before `before`.
    async fn prune_telegram_updates(&self, before: Timestamp) -> AppResult<u64>;
    /// The next `getUpdates` offset (0 before the first poll).
    async fn telegram_offset(&self) -> AppResult<i64>;
    /// Move the offset forward (never backwards).
    async fn set_telegram_offset(&self, offset: i64) -> AppResult<()>;
    /// Telegram conversations with messages past their `telegram` delivery cursor,
    /// least recently changed first.
    async fn telegram_backlog(&self, limit: i64) -> AppResult<Vec<ChannelBacklog>>;
}

/// Escalations to the hotline (written with the conversation through
/// `ConversationStore::commit`; read and annotated here).
#[async_trait]
pub trait EscalationStore: Send + Sync {
    async fn escalation(&self, id: EscalationId) -> AppResult<Option<Escalation>>;
    /// Newest first.
    async fn escalations(&self, f: &EscalationFilter) -> AppResult<Vec<Escalation>>;
    /// Open, unacknowledged escalations whose staff were last alerted before `before`.
    async fn escalations_to_reescalate(
        &self,
        before: Timestamp,
        limit: i64,
    ) -> AppResult<Vec<Escalation>>;
    /// Open escalations nobody has acknowledged.
    async fn unacknowledged_escalations(&self) -> AppResult<i64>;
    /// One more delivery attempt of an escalation event; with `delivered_at`, a pending
    /// escalation becomes delivered. Returns the escalation when its state changed.
    async fn record_escalation_attempt(
        &self,
        id: EscalationId,
        delivered_at: Option<Timestamp>,
    ) -> AppResult<Option<Escalation>>;
    /// Send every outbox row about `subject` again (same ids); returns how many.
    async fn redeliver_subject(&self, subject: &str) -> AppResult<u64>;
}

/// Everything the domain needs from storage.
#[async_trait]
pub trait Store:
    ConversationStore
    + PeopleStore
    + WorkflowStore
    + AttachmentStore
    + KbStore
    + OutboxStore
    + TelegramStore
    + EscalationStore
{
    /// The database answers (readiness).
    async fn ping(&self) -> AppResult<()>;
    /// Flush and close (graceful shutdown).
    async fn close(&self);
}
