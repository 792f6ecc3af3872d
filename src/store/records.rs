//! Rows as the rest of the service sees them. They carry no SQL and no backend types,
//! so another backend can produce the same values.

use serde::Serialize;

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct AgentRecord {
    pub id: String,
    pub email: String,
    pub name: String,
    pub role: String,
    pub password_hash: String,
    pub capacity: i64,
    /// What the agent chose: `online` or `away` (offline = no socket).
    pub presence: String,
}

/// An agent with the missions they serve.
#[derive(Clone, Debug)]
pub struct AgentWithMissions {
    pub agent: AgentRecord,
    pub missions: Vec<String>,
}

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct CitizenRecord {
    pub id: String,
    pub external_sub: Option<String>,
    pub display_name: String,
    pub locale: Option<String>,
    pub country: Option<String>,
}

/// A session token's subject, as stored.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct SessionRecord {
    pub kind: String,
    pub subject_id: String,
    pub expires_at: String,
    pub revoked_at: Option<String>,
}

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct ConversationRecord {
    pub id: String,
    pub mission_id: String,
    pub citizen_id: String,
    pub citizen_name: String,
    pub citizen_country: Option<String>,
    pub channel: String,
    pub status: String,
    pub priority: String,
    pub assignee_id: Option<String>,
    pub last_seq: i64,
    pub created_at: String,
    pub updated_at: String,
    /// JSON array of label strings.
    pub labels: String,
}

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct MessageRecord {
    pub id: String,
    pub conversation_id: String,
    pub seq: i64,
    pub client_msg_id: Option<String>,
    pub sender_kind: String,
    pub sender_id: Option<String>,
    pub sender_name: String,
    pub kind: String,
    pub body: String,
    /// JSON array of attachment objects, stored as sent.
    pub attachments: String,
    pub created_at: String,
}

/// Who may write into which conversation: checked by the writer against the row it
/// reads inside the commit transaction, so a transfer that happens meanwhile is honoured
/// and the send path needs no read of its own.
#[derive(Clone, Debug)]
pub enum Access {
    /// A citizen: their own conversations.
    Citizen(String),
    /// An agent: their missions' conversations and those assigned to them.
    Agent { id: String, missions: Vec<String> },
    /// Admins, and the system itself: every conversation.
    All,
    /// Editors and other roles: none.
    None,
}

impl Access {
    pub fn allows(&self, conv: &ConversationRecord) -> bool {
        match self {
            Access::Citizen(id) => conv.citizen_id == *id,
            Access::Agent { id, missions } => {
                missions.contains(&conv.mission_id) || conv.assignee_id.as_deref() == Some(id)
            }
            Access::All => true,
            Access::None => false,
        }
    }
}

/// A message waiting to be committed by the group-commit writer.
#[derive(Clone, Debug)]
pub struct NewMessage {
    pub conversation_id: String,
    pub client_msg_id: Option<String>,
    pub sender_kind: &'static str,
    pub sender_id: Option<String>,
    pub sender_name: String,
    pub kind: &'static str,
    pub body: String,
    /// JSON array of attachment objects, as shown in the message.
    pub attachments: String,
    /// Upload ids linked to the message (checked by the caller: same uploader).
    pub attachment_ids: Vec<String>,
    /// A citizen writing into a resolved conversation reopens it.
    pub reopen_if_resolved: bool,
    /// Checked against the conversation inside the commit.
    pub access: Access,
}

/// What committing one [`NewMessage`] produced.
#[derive(Clone, Debug)]
pub struct Committed {
    pub message: MessageRecord,
    /// The conversation after the commit.
    pub conversation: ConversationRecord,
    /// The message was already stored under this sender's `client_msg_id`.
    pub duplicate: bool,
    /// The commit moved the conversation from resolved back to open (unassigned).
    pub reopened: bool,
}

/// A change to a conversation's workflow fields; `None` keeps a field.
#[derive(Clone, Debug, Default)]
pub struct ConversationUpdate<'a> {
    pub status: Option<&'a str>,
    pub assignee: Option<Option<&'a str>>,
    pub mission_id: Option<&'a str>,
    pub priority: Option<&'a str>,
    /// JSON array of labels.
    pub labels: Option<&'a str>,
    /// Only apply when the conversation is still unassigned and open (auto-assignment
    /// racing a manual claim).
    pub only_if_waiting: bool,
}

/// How much an agent of a mission is holding, for auto-assignment.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct AgentLoad {
    pub id: String,
    pub capacity: i64,
    pub presence: String,
    /// Conversations assigned to the agent that are not resolved.
    pub load: i64,
}

#[derive(Clone, Debug, sqlx::FromRow, Serialize)]
pub struct CannedResponse {
    pub id: String,
    pub mission_id: String,
    pub title: String,
    pub body: String,
    pub created_by: String,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct AuditRecord {
    pub id: String,
    pub at: String,
    pub actor_kind: String,
    pub actor_id: Option<String>,
    pub action: String,
    pub target_kind: Option<String>,
    pub target_id: Option<String>,
    pub mission_id: Option<String>,
    /// JSON object.
    pub details: String,
}

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct AttachmentRecord {
    pub id: String,
    pub sha256: String,
    pub content_type: String,
    pub bytes: i64,
    pub width: i64,
    pub height: i64,
    pub thumb_sha256: String,
    pub thumb_content_type: String,
    pub uploader_id: String,
    pub created_at: String,
}

/// Filters for listing conversations; `None` means no filter.
#[derive(Clone, Debug, Default)]
pub struct ConversationFilter {
    pub citizen_id: Option<String>,
    /// Agents: conversations of these missions, or assigned to `visible_assignee`.
    pub missions: Option<Vec<String>>,
    pub visible_assignee: Option<String>,
    pub status: Option<String>,
    pub assignee_id: Option<String>,
    pub priority: Option<String>,
    pub label: Option<String>,
    /// Exclude resolved conversations (welcome snapshots).
    pub active_only: bool,
    /// Queue order (priority, then oldest first) instead of newest first.
    pub queue_order: bool,
    /// Cursor: the last row of the previous page, as (priority_rank, id).
    pub after: Option<(i64, String)>,
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

/// A knowledge-base article as stored.
#[derive(Clone, Debug, sqlx::FromRow)]
pub struct ArticleRecord {
    pub id: String,
    pub slug: String,
    pub locale: String,
    pub title: String,
    pub summary: String,
    pub body_markdown: String,
    pub body_html: String,
    pub category: String,
    /// JSON array.
    pub countries: String,
    /// JSON array.
    pub tags: String,
    pub status: String,
    pub version: i64,
    pub severity: Option<String>,
    pub area_lat: Option<f64>,
    pub area_lon: Option<f64>,
    pub area_radius_km: Option<f64>,
    pub expires_at: Option<String>,
    pub source_hash: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    pub published_at: Option<String>,
}

/// The editable fields of an article, validated by the caller.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ArticleFields {
    pub slug: String,
    pub locale: String,
    pub title: String,
    pub summary: String,
    pub body_markdown: String,
    pub category: String,
    pub countries: Vec<String>,
    pub tags: Vec<String>,
    pub status: String,
    pub severity: Option<String>,
    pub area: Option<Area>,
    pub expires_at: Option<String>,
}

#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Area {
    pub lat: f64,
    pub lon: f64,
    pub radius_km: f64,
}

#[derive(Clone, Debug, sqlx::FromRow)]
pub struct ArticleVersionRecord {
    pub article_id: String,
    pub version: i64,
    /// JSON of [`ArticleFields`].
    pub snapshot: String,
    pub editor_id: Option<String>,
    pub created_at: String,
}

/// How [`super::Store::save_article`] treats an existing article.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SaveMode<'a> {
    /// New article; `conflict` when slug + locale exist.
    Create,
    /// Insert or update by slug + locale (imports).
    Upsert,
    /// Update this article; `not_found` when it does not exist.
    Update(&'a str),
}

/// What saving an article did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SaveOutcome {
    Created,
    Updated,
    /// Same content as stored (import of an unchanged file): nothing written.
    Unchanged,
}
