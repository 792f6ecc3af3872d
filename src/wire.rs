//! The contract's JSON, in one place: the views of conversations, messages and the
//! ack that HTTP responses and WebSocket frames share, the tagged [`ServerFrame`] enum
//! that is the socket's wire format, and the parsing of client frames. Each domain
//! event is rendered here once per audience (staff, citizen).

use std::collections::HashMap;

use axum::extract::ws::Utf8Bytes;
use serde::{Deserialize, Serialize};

use crate::domain::events::{Event, Suggestion, UserRef};
use crate::domain::model::*;
use crate::domain::planner::Outcome;
use crate::domain::types::*;
use crate::domain::Principal;
use crate::error::AppError;

fn t(ts: Timestamp) -> String {
    fmt_time(ts)
}

#[derive(Serialize)]
pub struct CitizenView<'a> {
    pub id: CitizenId,
    pub display_name: &'a str,
    pub country: Option<CountryCode>,
}

/// The contract's conversation object. Staff also see `labels` and, where known, how
/// far they have read.
#[derive(Serialize)]
pub struct ConversationView<'a> {
    pub id: ConversationId,
    pub mission_id: &'a str,
    pub citizen: CitizenView<'a>,
    pub channel: Channel,
    pub status: Status,
    pub priority: Priority,
    pub assignee_id: Option<AgentId>,
    pub last_seq: i64,
    pub created_at: String,
    pub updated_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub labels: Option<&'a [String]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub read_seq: Option<i64>,
}

impl<'a> ConversationView<'a> {
    /// Everything, for staff.
    pub fn staff(c: &'a Conversation) -> Self {
        ConversationView {
            id: c.id,
            mission_id: c.mission_id.as_str(),
            citizen: CitizenView {
                id: c.citizen.id,
                display_name: &c.citizen.display_name,
                country: c.citizen.country,
            },
            channel: c.channel,
            status: c.status,
            priority: c.priority,
            assignee_id: c.assignee_id,
            last_seq: c.last_seq,
            created_at: t(c.created_at),
            updated_at: t(c.updated_at),
            labels: Some(&c.labels),
            read_seq: None,
        }
    }

    /// Without internal fields, for the citizen.
    pub fn citizen(c: &'a Conversation) -> Self {
        ConversationView {
            labels: None,
            ..Self::staff(c)
        }
    }

    pub fn for_principal(c: &'a Conversation, p: &Principal) -> Self {
        if p.sees_internal() {
            Self::staff(c)
        } else {
            Self::citizen(c)
        }
    }

    pub fn with_read_seq(mut self, seq: Option<i64>) -> Self {
        self.read_seq = seq;
        self
    }
}

#[derive(Serialize)]
pub struct SenderView<'a> {
    pub kind: SenderKind,
    pub id: Option<PersonId>,
    pub display_name: &'a str,
}

#[derive(Serialize)]
pub struct AttachmentView<'a> {
    pub id: AttachmentId,
    pub content_type: &'a str,
    pub bytes: i64,
    pub width: i64,
    pub height: i64,
    pub url: String,
    pub thumb_url: String,
}

impl<'a> From<&'a AttachmentRef> for AttachmentView<'a> {
    fn from(a: &'a AttachmentRef) -> Self {
        AttachmentView {
            id: a.id,
            content_type: &a.content_type,
            bytes: a.bytes,
            width: a.width,
            height: a.height,
            url: format!("/v1/attachments/{}", a.id),
            thumb_url: format!("/v1/attachments/{}/thumb", a.id),
        }
    }
}

/// The contract's message object; staff also see the triage verdict.
#[derive(Serialize)]
pub struct MessageView<'a> {
    pub id: MessageId,
    pub conversation_id: ConversationId,
    pub seq: i64,
    pub client_msg_id: Option<&'a str>,
    pub sender: SenderView<'a>,
    pub kind: MessageKind,
    pub body: &'a str,
    pub attachments: Vec<AttachmentView<'a>>,
    pub created_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub triage: Option<&'a TriageInfo>,
}

impl<'a> MessageView<'a> {
    pub fn staff(m: &'a Message) -> Self {
        MessageView {
            id: m.id,
            conversation_id: m.conversation_id,
            seq: m.seq,
            client_msg_id: m.client_msg_id.as_ref().map(ClientMsgId::as_str),
            sender: SenderView {
                kind: m.sender.kind,
                id: m.sender.id,
                display_name: &m.sender.display_name,
            },
            kind: m.kind,
            body: &m.body,
            attachments: m.attachments.iter().map(AttachmentView::from).collect(),
            created_at: t(m.created_at),
            triage: m.triage.as_ref(),
        }
    }

    pub fn citizen(m: &'a Message) -> Self {
        MessageView {
            triage: None,
            ..Self::staff(m)
        }
    }

    pub fn for_principal(m: &'a Message, p: &Principal) -> Self {
        if p.sees_internal() {
            Self::staff(m)
        } else {
            Self::citizen(m)
        }
    }
}

/// The `ack` object: the same for the socket frame and the HTTP fallback.
#[derive(Serialize)]
pub struct AckView<'a> {
    pub client_msg_id: Option<&'a str>,
    pub message_id: MessageId,
    pub conversation_id: ConversationId,
    pub seq: i64,
    pub created_at: String,
    /// True when this answers a resend of an already stored message.
    pub duplicate: bool,
}

impl<'a> AckView<'a> {
    /// The ack of a send; `None` if the outcome holds no message.
    pub fn of(o: &'a Outcome) -> Option<Self> {
        let m = o.message.as_ref()?;
        Some(AckView {
            client_msg_id: m.client_msg_id.as_ref().map(ClientMsgId::as_str),
            message_id: m.id,
            conversation_id: m.conversation_id,
            seq: m.seq,
            created_at: t(m.created_at),
            duplicate: o.duplicate,
        })
    }
}

/// The contract's attachment object, for upload responses.
pub fn attachment_view(a: &Attachment) -> serde_json::Value {
    let r = a.to_ref();
    serde_json::to_value(AttachmentView::from(&r)).expect("attachments serialise")
}

/// The contract's escalation object (staff only).
#[derive(Serialize)]
pub struct EscalationView<'a> {
    pub id: EscalationId,
    pub conversation_id: ConversationId,
    pub mission_id: &'a str,
    pub citizen: CitizenView<'a>,
    pub reason: EscalationReason,
    pub state: EscalationState,
    pub created_at: String,
    pub delivered_at: Option<String>,
    pub acknowledged_at: Option<String>,
    pub acknowledged_by: Option<&'a str>,
    pub attempts: i64,
    pub reescalations: i64,
    pub location: Option<GeoPoint>,
}

impl<'a> From<&'a Escalation> for EscalationView<'a> {
    fn from(e: &'a Escalation) -> Self {
        EscalationView {
            id: e.id,
            conversation_id: e.conversation_id,
            mission_id: e.mission_id.as_str(),
            citizen: CitizenView {
                id: e.citizen.id,
                display_name: &e.citizen.display_name,
                country: e.citizen.country,
            },
            reason: e.reason,
            state: e.state,
            created_at: t(e.created_at),
            delivered_at: e.delivered_at.map(t),
            acknowledged_at: e.acknowledged_at.map(t),
            acknowledged_by: e.acknowledged_by.as_deref(),
            attempts: e.attempts,
            reescalations: e.reescalations,
            location: e.location,
        }
    }
}

/// The contract's article object.
pub fn article_view(a: &Article) -> serde_json::Value {
    let f = &a.fields;
    serde_json::json!({
        "id": a.id, "slug": f.slug, "locale": f.locale, "title": f.title, "summary": f.summary,
        "body_markdown": f.body_markdown, "body_html": a.body_html, "category": f.category,
        "countries": f.countries, "tags": f.tags, "status": f.status,
        "version": a.version, "created_at": fmt_time(a.created_at), "updated_at": fmt_time(a.updated_at),
        "published_at": a.published_at.map(fmt_time), "expires_at": f.expires_at.map(fmt_time),
        "severity": f.severity, "area": f.area,
    })
}

/// The signed-in user as `welcome` shows them.
#[derive(Serialize)]
pub struct UserView<'a> {
    pub id: PersonId,
    pub kind: &'static str,
    pub role: &'static str,
    pub display_name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub locale: Option<Option<&'a Locale>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub country: Option<Option<CountryCode>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub missions: Option<&'a [MissionId]>,
}

impl<'a> UserView<'a> {
    pub fn of(p: &'a Principal) -> Self {
        match p {
            Principal::Citizen(c) => UserView {
                id: c.id.into(),
                kind: "citizen",
                role: "citizen",
                display_name: &c.display_name,
                locale: Some(c.locale.as_ref()),
                country: Some(c.country),
                name: None,
                email: None,
                missions: None,
            },
            Principal::Staff(a) => UserView {
                id: a.id.into(),
                kind: "agent",
                role: a.role.as_str(),
                display_name: &a.name,
                locale: None,
                country: None,
                name: Some(&a.name),
                email: Some(&a.email),
                missions: Some(&a.missions),
            },
        }
    }
}

#[derive(Serialize)]
pub struct AgentRefView<'a> {
    pub id: AgentId,
    pub name: &'a str,
}

/// Everything the server sends over a socket.
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ServerFrame<'a> {
    Welcome {
        user: UserView<'a>,
        conversations: Vec<ConversationView<'a>>,
    },
    Ack(AckView<'a>),
    Message {
        message: MessageView<'a>,
    },
    /// Staff: a citizen edited a message; it carries the new body.
    MessageUpdated {
        message: MessageView<'a>,
        edited_at: String,
    },
    Conversation {
        event: &'static str,
        conversation: ConversationView<'a>,
    },
    Typing {
        conversation_id: ConversationId,
        user: &'a UserRef,
        active: bool,
    },
    Read {
        conversation_id: ConversationId,
        user: &'a UserRef,
        seq: i64,
    },
    Viewing {
        conversation_id: ConversationId,
        user: &'a UserRef,
        active: bool,
    },
    Presence {
        agent: AgentRefView<'a>,
        status: Presence,
    },
    Suggestions {
        conversation_id: ConversationId,
        message_id: MessageId,
        seq: i64,
        articles: &'a [Suggestion],
    },
    Escalation {
        event: &'static str,
        escalation: EscalationView<'a>,
    },
    Alert {
        article: serde_json::Value,
    },
    /// The answer to a socket `sos`.
    SosAck {
        escalation: EscalationView<'a>,
        guidance: &'a str,
    },
    Error {
        code: &'static str,
        message: String,
        #[serde(skip_serializing_if = "Option::is_none")]
        client_msg_id: Option<&'a str>,
    },
    Pong,
}

impl ServerFrame<'_> {
    pub fn text(&self) -> Utf8Bytes {
        Utf8Bytes::from(serde_json::to_string(self).expect("frames serialise"))
    }

    pub fn error(e: &AppError, client_msg_id: Option<&str>) -> Utf8Bytes {
        ServerFrame::Error {
            code: e.code(),
            message: e.public_message(),
            client_msg_id,
        }
        .text()
    }

    pub fn pong() -> Utf8Bytes {
        Utf8Bytes::from_static(r#"{"type":"pong"}"#)
    }
}

/// An event rendered for each audience that may receive it (rendered once, shared by
/// every recipient).
#[derive(Default)]
pub struct Rendered {
    pub staff: Option<Utf8Bytes>,
    pub citizen: Option<Utf8Bytes>,
}

/// Render a domain event into frames.
pub fn render(e: &Event) -> Rendered {
    let audience = e.audience();
    let both = |staff: ServerFrame, citizen: ServerFrame| Rendered {
        staff: audience.staff.then(|| staff.text()),
        citizen: audience.citizen.then(|| citizen.text()),
    };
    match e {
        Event::Message { message, .. } => {
            let staff = ServerFrame::Message {
                message: MessageView::staff(message),
            }
            .text();
            // The citizen's view differs only when there is staff-only data on it.
            let citizen = audience.citizen.then(|| {
                if message.triage.is_some() {
                    ServerFrame::Message {
                        message: MessageView::citizen(message),
                    }
                    .text()
                } else {
                    staff.clone()
                }
            });
            Rendered {
                staff: Some(staff),
                citizen,
            }
        }
        Event::MessageUpdated {
            message, edited_at, ..
        } => Rendered {
            staff: Some(
                ServerFrame::MessageUpdated {
                    message: MessageView::staff(message),
                    edited_at: t(*edited_at),
                }
                .text(),
            ),
            citizen: None,
        },
        Event::Conversation {
            kind, conversation, ..
        } => both(
            ServerFrame::Conversation {
                event: kind.as_str(),
                conversation: ConversationView::staff(conversation),
            },
            ServerFrame::Conversation {
                event: kind.as_str(),
                conversation: ConversationView::citizen(conversation),
            },
        ),
        Event::Typing {
            conversation_id,
            user,
            active,
            ..
        } => {
            let f = ServerFrame::Typing {
                conversation_id: *conversation_id,
                user,
                active: *active,
            }
            .text();
            Rendered {
                staff: Some(f.clone()),
                citizen: Some(f),
            }
        }
        Event::Read {
            conversation_id,
            user,
            seq,
            ..
        } => {
            let f = ServerFrame::Read {
                conversation_id: *conversation_id,
                user,
                seq: *seq,
            }
            .text();
            Rendered {
                staff: Some(f.clone()),
                citizen: Some(f),
            }
        }
        Event::Viewing {
            conversation_id,
            user,
            active,
            ..
        } => Rendered {
            staff: Some(
                ServerFrame::Viewing {
                    conversation_id: *conversation_id,
                    user,
                    active: *active,
                }
                .text(),
            ),
            citizen: None,
        },
        Event::Presence {
            agent_id,
            name,
            status,
            ..
        } => Rendered {
            staff: Some(
                ServerFrame::Presence {
                    agent: AgentRefView {
                        id: *agent_id,
                        name,
                    },
                    status: *status,
                }
                .text(),
            ),
            citizen: None,
        },
        Event::Suggestions {
            conversation_id,
            message_id,
            seq,
            articles,
            ..
        } => Rendered {
            staff: Some(
                ServerFrame::Suggestions {
                    conversation_id: *conversation_id,
                    message_id: *message_id,
                    seq: *seq,
                    articles,
                }
                .text(),
            ),
            citizen: None,
        },
        Event::Escalation {
            kind, escalation, ..
        } => Rendered {
            staff: Some(
                ServerFrame::Escalation {
                    event: kind.as_str(),
                    escalation: EscalationView::from(escalation),
                }
                .text(),
            ),
            citizen: None,
        },
        Event::Alert { article, .. } => Rendered {
            staff: None,
            citizen: Some(
                ServerFrame::Alert {
                    article: article_view(article),
                }
                .text(),
            ),
        },
        Event::SessionRevoked { .. } => Rendered::default(),
    }
}

// ----- client frames -------------------------------------------------------------------

/// Everything a client may send over a socket.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientFrame {
    Hello {
        token: String,
        #[serde(default)]
        resume: HashMap<String, i64>,
    },
    Send(SendFrame),
    Typing {
        conversation_id: String,
        #[serde(default = "yes")]
        active: bool,
    },
    Read {
        conversation_id: String,
        seq: i64,
    },
    /// Staff: who has a conversation open.
    Viewing {
        conversation_id: String,
        #[serde(default = "yes")]
        active: bool,
    },
    /// Staff choose `online` or `away`.
    Presence {
        status: String,
    },
    /// Citizens share where they are.
    Location {
        lat: f64,
        lon: f64,
        #[serde(default)]
        accuracy_m: Option<f64>,
    },
    /// Citizens: one-tap SOS.
    Sos {
        #[serde(default)]
        note: Option<String>,
        #[serde(default)]
        location: Option<LocationFrame>,
    },
    Ping,
}

/// A location inside a frame.
#[derive(Debug, Deserialize)]
pub struct LocationFrame {
    pub lat: f64,
    pub lon: f64,
    #[serde(default)]
    pub accuracy_m: Option<f64>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
pub struct SendFrame {
    pub client_msg_id: String,
    #[serde(default)]
    pub conversation_id: Option<String>,
    #[serde(default)]
    pub kind: Option<String>,
    #[serde(default)]
    pub body: Option<String>,
    #[serde(default)]
    pub attachment_ids: Vec<String>,
}

const CLIENT_FRAME_TYPES: &[&str] = &[
    "hello", "send", "typing", "read", "viewing", "presence", "location", "sos", "ping",
];

/// Parse a client frame; the error names what is wrong so a client developer can fix
/// it, in the contract's terms (never the server's internal type names).
pub fn parse_client_frame(text: &str) -> Result<ClientFrame, AppError> {
    let value: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| AppError::invalid(format!("frame is not valid JSON: {}", json_error(&e))))?;
    let Some(ty) = value
        .get("type")
        .and_then(|t| t.as_str())
        .map(str::to_string)
    else {
        return Err(AppError::invalid("frame has no \"type\""));
    };
    if !CLIENT_FRAME_TYPES.contains(&ty.as_str()) {
        return Err(AppError::invalid(format!("unknown frame type {ty:?}")));
    }
    serde_json::from_value(value)
        .map_err(|e| AppError::invalid(format!("invalid {ty} frame: {}", json_error(&e))))
}

/// A serde error in words a client understands: which field is missing or of the
/// wrong type, without Rust type names.
pub fn json_error(e: &serde_json::Error) -> String {
    let msg = e.to_string();
    // serde names Rust types in some messages ("invalid type: string, expected struct
    // SendRequest"); keep the part before any such name.
    let msg = match msg.find(" struct ").or_else(|| msg.find(" enum ")) {
        Some(i) => format!("{} an object", &msg[..i]),
        None => msg,
    };
    msg.split(" at line ").next().unwrap_or(&msg).to_string()
}

/// The `client_msg_id` of a frame that failed to parse, to echo in the error frame.
pub fn client_msg_id_of(text: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(text).ok()?;
    v.get("client_msg_id")?
        .as_str()
        .map(|s| s.chars().take(200).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::events::{ConversationEvent, Route};

    fn conversation() -> Conversation {
        Conversation {
            id: ConversationId::new(),
            mission_id: MissionId::new("be"),
            citizen: CitizenRef {
                id: CitizenId::new(),
                display_name: "张三".into(),
                country: Some(CountryCode::parse("BE").unwrap()),
            },
            channel: Channel::App,
            status: Status::Open,
            priority: Priority::Urgent,
            assignee_id: None,
            last_seq: 3,
            labels: vec!["passport".into()],
            created_at: now(),
            updated_at: now(),
        }
    }

    fn message(c: &Conversation, kind: MessageKind, triage: bool) -> Message {
        Message {
            id: MessageId::new(),
            conversation_id: c.id,
            seq: 4,
            client_msg_id: Some(ClientMsgId::from_stored(
                "0190a9e2-0000-7000-8000-000000000001".into(),
            )),
            sender: Sender {
                kind: SenderKind::Citizen,
                id: Some(c.citizen.id.into()),
                display_name: "张三".into(),
            },
            kind,
            body: "<b>hi</b>".into(),
            attachments: vec![],
            created_at: now(),
            triage: triage.then(|| TriageInfo {
                category: "emergency".into(),
                score: 0.9,
                reasons: vec![],
            }),
        }
    }

    fn json(b: &Option<Utf8Bytes>) -> serde_json::Value {
        serde_json::from_str(b.as_ref().unwrap().as_str()).unwrap()
    }

    #[test]
    fn messages_render_the_contract_object_and_hide_triage_from_citizens() {
        let c = conversation();
        let m = message(&c, MessageKind::Text, true);
        let r = render(&Event::Message {
            message: m.clone(),
            route: Route::from(&c),
        });
        let staff = json(&r.staff);
        assert_eq!(staff["type"], "message");
        assert_eq!(staff["message"]["seq"], 4);
        assert_eq!(staff["message"]["sender"]["kind"], "citizen");
        assert_eq!(staff["message"]["body"], "<b>hi</b>");
        assert_eq!(staff["message"]["triage"]["category"], "emergency");
        let citizen = json(&r.citizen);
        assert!(citizen["message"].get("triage").is_none());
        assert_eq!(citizen["message"]["id"], m.id.to_string());
    }

    #[test]
    fn notes_render_for_staff_only() {
        let c = conversation();
        let r = render(&Event::Message {
            message: message(&c, MessageKind::Note, false),
            route: Route::from(&c),
        });
        assert!(r.staff.is_some());
        assert!(r.citizen.is_none());
    }

    #[test]
    fn conversation_events_hide_labels_from_citizens() {
        let c = conversation();
        let r = render(&Event::Conversation {
            kind: ConversationEvent::PriorityChanged,
            conversation: c.clone(),
            previous: None,
        });
        let staff = json(&r.staff);
        assert_eq!(staff["type"], "conversation");
        assert_eq!(staff["event"], "priority_changed");
        assert_eq!(staff["conversation"]["labels"][0], "passport");
        assert_eq!(staff["conversation"]["priority"], "urgent");
        assert_eq!(staff["conversation"]["citizen"]["country"], "BE");
        let citizen = json(&r.citizen);
        assert!(citizen["conversation"].get("labels").is_none());
        let labels = render(&Event::Conversation {
            kind: ConversationEvent::LabelsChanged,
            conversation: c,
            previous: None,
        });
        assert!(labels.citizen.is_none());
    }

    #[test]
    fn error_frames_and_parse_errors_name_no_internal_types() {
        let e = parse_client_frame(r#"{"type":"send","client_msg_id":5}"#).unwrap_err();
        let msg = e.to_string();
        assert!(
            !msg.contains("SendFrame") && !msg.contains("struct"),
            "{msg}"
        );
        assert!(parse_client_frame(r#"{"type":"dance"}"#).is_err());
        let f: serde_json::Value =
            serde_json::from_str(ServerFrame::error(&e, Some("x")).as_str()).unwrap();
        assert_eq!(f["type"], "error");
        assert_eq!(f["code"], "invalid_input");
        assert_eq!(f["client_msg_id"], "x");
        assert_eq!(ServerFrame::pong().as_str(), r#"{"type":"pong"}"#);
    }
}
