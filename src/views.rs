//! The contract's JSON objects, built from store records. HTTP responses and WebSocket
//! frames use the same views, so both paths show a conversation or message identically.

use serde::Serialize;
use serde_json::value::RawValue;

use crate::store::{AttachmentRecord, Committed, ConversationRecord, MessageRecord};

#[derive(Serialize)]
pub struct CitizenRef<'a> {
    pub id: &'a str,
    pub display_name: &'a str,
    pub country: Option<&'a str>,
}

#[derive(Serialize)]
pub struct ConversationView<'a> {
    pub id: &'a str,
    pub mission_id: &'a str,
    pub citizen: CitizenRef<'a>,
    pub channel: &'a str,
    pub status: &'a str,
    pub priority: &'a str,
    pub assignee_id: Option<&'a str>,
    pub last_seq: i64,
    pub created_at: &'a str,
    pub updated_at: &'a str,
    /// Staff-only: labels are internal triage and never shown to citizens.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub labels: Option<&'a RawValue>,
}

impl<'a> ConversationView<'a> {
    /// The view for `p`: citizens do not see internal fields.
    pub fn for_principal(c: &'a ConversationRecord, p: &crate::auth::Principal) -> Self {
        let v = ConversationView::from(c);
        if matches!(p, crate::auth::Principal::Citizen(_)) {
            v.citizen_view()
        } else {
            v
        }
    }

    pub fn citizen_view(mut self) -> Self {
        self.labels = None;
        self
    }
}

impl<'a> From<&'a ConversationRecord> for ConversationView<'a> {
    fn from(c: &'a ConversationRecord) -> Self {
        ConversationView {
            id: &c.id,
            mission_id: &c.mission_id,
            citizen: CitizenRef {
                id: &c.citizen_id,
                display_name: &c.citizen_name,
                country: c.citizen_country.as_deref(),
            },
            channel: &c.channel,
            status: &c.status,
            priority: &c.priority,
            assignee_id: c.assignee_id.as_deref(),
            last_seq: c.last_seq,
            created_at: &c.created_at,
            updated_at: &c.updated_at,
            labels: Some(serde_json::from_str(&c.labels).unwrap_or(empty_array())),
        }
    }
}

#[derive(Serialize)]
pub struct SenderView<'a> {
    pub kind: &'a str,
    pub id: Option<&'a str>,
    pub display_name: &'a str,
}

#[derive(Serialize)]
pub struct MessageView<'a> {
    pub id: &'a str,
    pub conversation_id: &'a str,
    pub seq: i64,
    pub client_msg_id: Option<&'a str>,
    pub sender: SenderView<'a>,
    pub kind: &'a str,
    pub body: &'a str,
    pub attachments: &'a RawValue,
    pub created_at: &'a str,
}

fn empty_array() -> &'static RawValue {
    static EMPTY: std::sync::OnceLock<Box<RawValue>> = std::sync::OnceLock::new();
    EMPTY.get_or_init(|| RawValue::from_string("[]".into()).expect("valid JSON"))
}

/// Borrow a message as its contract view. Stored attachments are JSON written by us;
/// a corrupt value shows as an empty list rather than failing the whole page.
pub fn message_view(m: &MessageRecord) -> MessageView<'_> {
    let attachments: &RawValue = serde_json::from_str(&m.attachments).unwrap_or(empty_array());
    MessageView {
        id: &m.id,
        conversation_id: &m.conversation_id,
        seq: m.seq,
        client_msg_id: m.client_msg_id.as_deref(),
        sender: SenderView {
            kind: &m.sender_kind,
            id: m.sender_id.as_deref(),
            display_name: &m.sender_name,
        },
        kind: &m.kind,
        body: &m.body,
        attachments,
        created_at: &m.created_at,
    }
}

/// The `ack` object: the same for the WebSocket frame and the HTTP fallback.
#[derive(Serialize)]
pub struct Ack<'a> {
    pub client_msg_id: Option<&'a str>,
    pub message_id: &'a str,
    pub conversation_id: &'a str,
    pub seq: i64,
    pub created_at: &'a str,
    /// True when this answers a resend of an already stored message.
    pub duplicate: bool,
}

impl<'a> From<&'a Committed> for Ack<'a> {
    fn from(c: &'a Committed) -> Self {
        Ack {
            client_msg_id: c.message.client_msg_id.as_deref(),
            message_id: &c.message.id,
            conversation_id: &c.message.conversation_id,
            seq: c.message.seq,
            created_at: &c.message.created_at,
            duplicate: c.duplicate,
        }
    }
}

/// The contract's attachment object; URLs are relative to the server.
pub fn attachment_json(a: &AttachmentRecord) -> serde_json::Value {
    serde_json::json!({
        "id": a.id,
        "content_type": a.content_type,
        "bytes": a.bytes,
        "width": a.width,
        "height": a.height,
        "url": format!("/v1/attachments/{}", a.id),
        "thumb_url": format!("/v1/attachments/{}/thumb", a.id),
    })
}
