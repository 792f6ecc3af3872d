//! The entities of the service as the domain sees them: typed values only, no SQL and
//! no driver types, so every store backend produces the same values and every adapter
//! renders the same ones.

use serde::{Deserialize, Serialize};

use super::types::*;

/// A citizen: a guest, or bound to an identity (`external_sub`) or a messenger chat.
#[derive(Clone, Debug, PartialEq)]
pub struct Citizen {
    pub id: CitizenId,
    pub external_sub: Option<String>,
    pub display_name: String,
    pub locale: Option<Locale>,
    pub country: Option<CountryCode>,
    /// The last location the citizen shared (nearby alerts, emergencies).
    pub location: Option<GeoPoint>,
}

/// A staff account with the missions it serves.
#[derive(Clone, Debug, PartialEq)]
pub struct Agent {
    pub id: AgentId,
    pub email: String,
    pub name: String,
    pub role: Role,
    pub password_hash: String,
    /// Most open conversations auto-assignment gives this agent.
    pub capacity: i64,
    pub presence: PresenceChoice,
    pub missions: Vec<MissionId>,
}

/// Whose session a bearer token is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionSubject {
    Citizen(CitizenId),
    Agent(AgentId),
}

/// A stored session (the token itself is never stored, only its hash).
#[derive(Clone, Debug, PartialEq)]
pub struct Session {
    pub subject: SessionSubject,
    pub expires_at: Timestamp,
    pub revoked: bool,
}

/// The citizen as a conversation shows them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CitizenRef {
    pub id: CitizenId,
    pub display_name: String,
    pub country: Option<CountryCode>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Conversation {
    pub id: ConversationId,
    pub mission_id: MissionId,
    pub citizen: CitizenRef,
    pub channel: Channel,
    pub status: Status,
    pub priority: Priority,
    pub assignee_id: Option<AgentId>,
    pub last_seq: i64,
    /// Internal triage labels: staff only.
    pub labels: Vec<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

impl Conversation {
    /// Waiting in its mission's queue for an agent.
    pub fn is_waiting(&self) -> bool {
        self.status == Status::Open && self.assignee_id.is_none()
    }
}

/// Who wrote a message, as shown with it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sender {
    pub kind: SenderKind,
    pub id: Option<PersonId>,
    pub display_name: String,
}

/// An image as a message shows it (the URLs are derived from the id).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AttachmentRef {
    pub id: AttachmentId,
    pub content_type: String,
    pub bytes: i64,
    pub width: i64,
    pub height: i64,
}

/// What the triage classifier said about a citizen's message; staff only.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TriageInfo {
    pub category: String,
    pub score: f32,
    pub reasons: Vec<TriageReason>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TriageReason {
    pub kind: String,
    pub matched: String,
    pub detail: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub id: MessageId,
    pub conversation_id: ConversationId,
    pub seq: i64,
    pub client_msg_id: Option<ClientMsgId>,
    pub sender: Sender,
    pub kind: MessageKind,
    pub body: String,
    pub attachments: Vec<AttachmentRef>,
    pub created_at: Timestamp,
    /// Set on citizens' messages; never shown to citizens.
    pub triage: Option<TriageInfo>,
}

/// A conversation escalated to the 12308 hotline (one open escalation per
/// conversation; further emergency messages are added to it).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Escalation {
    pub id: EscalationId,
    pub conversation_id: ConversationId,
    pub mission_id: MissionId,
    pub citizen: CitizenRef,
    pub reason: EscalationReason,
    pub state: EscalationState,
    pub created_at: Timestamp,
    pub delivered_at: Option<Timestamp>,
    pub acknowledged_at: Option<Timestamp>,
    /// An agent's id, or `hotline`.
    pub acknowledged_by: Option<String>,
    /// Delivery attempts to the hotline.
    pub attempts: i64,
    /// How many times it was re-escalated for want of an acknowledgement.
    pub reescalations: i64,
    /// When staff were last alerted (creation or re-escalation).
    pub alerted_at: Timestamp,
    /// Where the citizen said they are (SOS) or last shared.
    pub location: Option<GeoPoint>,
}

/// Filters for listing escalations.
#[derive(Clone, Debug, Default)]
pub struct EscalationFilter {
    /// `None`: every mission (admins).
    pub missions: Option<Vec<MissionId>>,
    pub state: Option<EscalationState>,
    pub limit: i64,
}

/// An uploaded image as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct Attachment {
    pub id: AttachmentId,
    pub sha256: String,
    pub content_type: String,
    pub bytes: i64,
    pub width: i64,
    pub height: i64,
    pub thumb_sha256: String,
    pub thumb_content_type: String,
    pub uploader_id: PersonId,
    pub created_at: Timestamp,
}

impl Attachment {
    pub fn to_ref(&self) -> AttachmentRef {
        AttachmentRef {
            id: self.id,
            content_type: self.content_type.clone(),
            bytes: self.bytes,
            width: self.width,
            height: self.height,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct CannedResponse {
    pub id: CannedId,
    pub mission_id: MissionId,
    pub title: String,
    pub body: String,
    pub created_by: AgentId,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// Who did something recorded in the audit log.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Actor {
    Citizen(CitizenId),
    Agent(AgentId),
    System,
}

impl Actor {
    pub fn kind(&self) -> &'static str {
        match self {
            Actor::Citizen(_) => "citizen",
            Actor::Agent(_) => "agent",
            Actor::System => "system",
        }
    }

    pub fn id(&self) -> Option<PersonId> {
        match self {
            Actor::Citizen(c) => Some((*c).into()),
            Actor::Agent(a) => Some((*a).into()),
            Actor::System => None,
        }
    }
}

/// One line of the audit log; written in the same transaction as the change it records.
#[derive(Clone, Debug, PartialEq)]
pub struct AuditEntry {
    pub id: uuid::Uuid,
    pub at: Timestamp,
    pub actor: Actor,
    pub action: String,
    /// (kind, id) of what the action touched.
    pub target: Option<(String, String)>,
    pub mission_id: Option<MissionId>,
    pub details: serde_json::Value,
}

impl AuditEntry {
    pub fn new(actor: Actor, action: &str, details: serde_json::Value) -> Self {
        AuditEntry {
            id: uuid::Uuid::now_v7(),
            at: now(),
            actor,
            action: action.to_string(),
            target: None,
            mission_id: None,
            details,
        }
    }

    pub fn target(mut self, kind: &str, id: impl ToString) -> Self {
        self.target = Some((kind.to_string(), id.to_string()));
        self
    }

    pub fn mission(mut self, m: &MissionId) -> Self {
        self.mission_id = Some(m.clone());
        self
    }
}

/// Filters of the audit log listing.
#[derive(Clone, Debug, Default)]
pub struct AuditFilter {
    pub action: Option<String>,
    pub actor_id: Option<String>,
    pub target_id: Option<String>,
    pub before: Option<uuid::Uuid>,
    pub limit: i64,
}

/// How much an agent of a mission holds, for auto-assignment.
#[derive(Clone, Debug, PartialEq)]
pub struct AgentLoad {
    pub id: AgentId,
    pub capacity: i64,
    pub presence: PresenceChoice,
    /// Conversations assigned to the agent that are not resolved.
    pub load: i64,
}

/// Filters for listing conversations; `None` means no filter.
#[derive(Clone, Debug, Default)]
pub struct ConversationFilter {
    pub citizen_id: Option<CitizenId>,
    /// Agents: conversations of these missions, or assigned to `visible_assignee`.
    pub missions: Option<Vec<MissionId>>,
    pub visible_assignee: Option<AgentId>,
    pub status: Option<Status>,
    pub assignee_id: Option<AgentId>,
    pub priority: Option<Priority>,
    pub label: Option<String>,
    /// Leave out resolved conversations (welcome snapshots).
    pub active_only: bool,
    /// Queue order (priority, then oldest first) instead of newest first.
    pub queue_order: bool,
    /// The last row of the previous page: (priority rank, id).
    pub after: Option<(i64, ConversationId)>,
    pub limit: i64,
}

/// Paging of messages inside a conversation.
#[derive(Clone, Copy, Debug, Default)]
pub struct MessagePage {
    pub after_seq: Option<i64>,
    pub before_seq: Option<i64>,
    pub limit: i64,
    pub include_notes: bool,
}

/// An area a safety alert covers.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Area {
    pub lat: f64,
    pub lon: f64,
    pub radius_km: f64,
}

/// The editable fields of an article (also the JSON of a version snapshot).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ArticleFields {
    pub slug: String,
    pub locale: Locale,
    pub title: String,
    pub summary: String,
    pub body_markdown: String,
    pub category: Category,
    pub countries: Vec<CountryCode>,
    pub tags: Vec<String>,
    pub status: ArticleStatus,
    pub severity: Option<Severity>,
    pub area: Option<Area>,
    pub expires_at: Option<Timestamp>,
}

/// A knowledge-base article as stored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Article {
    pub id: ArticleId,
    pub fields: ArticleFields,
    pub body_html: String,
    pub version: i64,
    pub source_hash: Option<String>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
    pub published_at: Option<Timestamp>,
}

impl Article {
    /// Visible to the public now: published and not expired.
    pub fn is_live(&self) -> bool {
        self.fields.status == ArticleStatus::Published
            && self.fields.expires_at.is_none_or(|t| t > now())
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct ArticleVersion {
    pub article_id: ArticleId,
    pub version: i64,
    pub fields: ArticleFields,
    pub editor_id: Option<AgentId>,
    pub created_at: Timestamp,
}

/// How saving an article treats an existing one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SaveMode {
    /// New article; `conflict` when slug + locale exist.
    Create,
    /// Insert or update by slug + locale (imports).
    Upsert,
    /// Update this article; `not_found` when it does not exist.
    Update(ArticleId),
}

/// What saving an article did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SaveOutcome {
    Created,
    Updated,
    /// Same content as stored (import of an unchanged file): nothing written.
    Unchanged,
}

/// What a save writes, decided from the article stored under its key (its id for an
/// update, slug + locale otherwise) inside the store's transaction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SavePlan {
    /// Saved from the same source as stored: nothing to write.
    Unchanged(ArticleId),
    /// Write this version of the article.
    Write {
        id: ArticleId,
        version: i64,
        outcome: SaveOutcome,
        published_at: Option<Timestamp>,
    },
}

impl SaveMode {
    /// The save rules every store applies: an update needs the article, a create must
    /// not find one, an unchanged source writes nothing, the version counts up and the
    /// first publication time is kept.
    pub fn plan(
        self,
        existing: Option<&Article>,
        f: &ArticleFields,
        source_hash: Option<&str>,
        now: Timestamp,
    ) -> Result<SavePlan, crate::error::AppError> {
        use crate::error::AppError;
        match (self, existing) {
            (SaveMode::Update(_), None) => return Err(AppError::not_found("article")),
            (SaveMode::Create, Some(e)) => {
                return Err(AppError::Conflict(format!(
                    "an article with slug {:?} and locale {:?} exists (id {}); update it with PUT",
                    e.fields.slug,
                    e.fields.locale.as_str(),
                    e.id
                )))
            }
            _ => {}
        }
        if let (Some(e), Some(h)) = (existing, source_hash) {
            if e.source_hash.as_deref() == Some(h) {
                return Ok(SavePlan::Unchanged(e.id));
            }
        }
        let published = f.status == ArticleStatus::Published;
        Ok(match existing {
            Some(e) => SavePlan::Write {
                id: e.id,
                version: e.version + 1,
                outcome: SaveOutcome::Updated,
                published_at: e.published_at.or_else(|| published.then_some(now)),
            },
            None => SavePlan::Write {
                id: ArticleId::new(),
                version: 1,
                outcome: SaveOutcome::Created,
                published_at: published.then_some(now),
            },
        })
    }
}

/// One imported file, parsed and rendered, ready to be upserted by slug + locale.
#[derive(Clone, Debug, PartialEq)]
pub struct ArticleImport {
    pub fields: ArticleFields,
    pub body_html: String,
    /// Hash of the file: an article saved from the same content is left unchanged.
    pub source_hash: String,
}

/// A search without hits, grouped for editors.
#[derive(Clone, Debug, PartialEq)]
pub struct SearchGap {
    pub normalized: String,
    pub example: String,
    pub count: i64,
    pub last_seen_at: Timestamp,
}

/// A row to write with a change.
#[derive(Clone, Debug, PartialEq)]
pub struct NewOutboxRow {
    pub id: OutboxId,
    /// `webhook:<name>`, or `hotline`.
    pub destination: String,
    /// `conversation.created`, `message.created`, `escalation.created`, ...
    pub event_type: String,
    /// What to send, as domain data (`webhooks::OutboxPayload`); rendered by the
    /// courier.
    pub payload: serde_json::Value,
    pub created_at: Timestamp,
    /// What the row is about (an escalation id), to find it again.
    pub subject: Option<String>,
}

/// A stored row with its delivery state.
#[derive(Clone, Debug, PartialEq)]
pub struct OutboxRow {
    pub id: OutboxId,
    pub destination: String,
    pub event_type: String,
    pub payload: serde_json::Value,
    pub created_at: Timestamp,
    pub attempts: i64,
    pub next_attempt_at: Timestamp,
    pub delivered_at: Option<Timestamp>,
    pub last_error: Option<String>,
    pub subject: Option<String>,
}

/// Lag and failures, for metrics and the readiness of the duty officer's tools.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OutboxStats {
    pub pending: i64,
    /// Pending rows that have failed at least once.
    pub failing: i64,
    pub oldest_pending: Option<Timestamp>,
}

/// A messenger conversation whose chat has not been sent everything yet.
#[derive(Clone, Debug, PartialEq)]
pub struct ChannelBacklog {
    pub conversation_id: ConversationId,
    pub chat_id: i64,
    /// How far the chat has been sent (its delivery cursor).
    pub cursor: i64,
    pub last_seq: i64,
}
