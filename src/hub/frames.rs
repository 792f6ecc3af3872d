//! WebSocket frames of the contract: typed client frames in, serialised server frames out.

use std::collections::HashMap;

use axum::extract::ws::Utf8Bytes;
use serde::{Deserialize, Serialize};

use crate::error::AppError;
use crate::store::{Committed, ConversationRecord, MessageRecord};
use crate::views::{message_view, Ack, ConversationView};

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
    /// Staff choose `online` or `away`.
    Presence {
        status: String,
    },
    Ping,
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

/// Parse a client frame; the error names what is wrong so a client developer can fix it.
pub fn parse(text: &str) -> Result<ClientFrame, AppError> {
    let value: serde_json::Value = serde_json::from_str(text)
        .map_err(|e| AppError::invalid(format!("frame is not valid JSON: {e}")))?;
    let Some(ty) = value
        .get("type")
        .and_then(|t| t.as_str())
        .map(str::to_string)
    else {
        return Err(AppError::invalid("frame has no \"type\""));
    };
    if !matches!(
        ty.as_str(),
        "hello" | "send" | "typing" | "read" | "presence" | "ping"
    ) {
        return Err(AppError::invalid(format!("unknown frame type {ty:?}")));
    }
    serde_json::from_value(value).map_err(|e| AppError::invalid(format!("invalid {ty} frame: {e}")))
}

/// The `client_msg_id` of a frame that failed to parse, to echo in the error frame.
pub fn client_msg_id_of(text: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(text).ok()?;
    v.get("client_msg_id")?
        .as_str()
        .map(|s| s.chars().take(200).collect())
}

fn to_frame<T: Serialize>(v: &T) -> Utf8Bytes {
    Utf8Bytes::from(serde_json::to_string(v).expect("frames serialise"))
}

#[derive(Serialize)]
struct MessageFrame<'a> {
    r#type: &'static str,
    message: crate::views::MessageView<'a>,
}

pub fn message(m: &MessageRecord) -> Utf8Bytes {
    to_frame(&MessageFrame {
        r#type: "message",
        message: message_view(m),
    })
}

#[derive(Serialize)]
struct AckFrame<'a> {
    r#type: &'static str,
    #[serde(flatten)]
    ack: Ack<'a>,
}

pub fn ack(c: &Committed) -> Utf8Bytes {
    to_frame(&AckFrame {
        r#type: "ack",
        ack: Ack::from(c),
    })
}

#[derive(Serialize)]
struct ConversationFrame<'a> {
    r#type: &'static str,
    event: &'a str,
    conversation: ConversationView<'a>,
}

/// A conversation event as staff see it.
pub fn conversation(event: &str, c: &ConversationRecord) -> Utf8Bytes {
    to_frame(&ConversationFrame {
        r#type: "conversation",
        event,
        conversation: c.into(),
    })
}

/// A conversation event as the citizen sees it (no internal fields).
pub fn conversation_for_citizen(event: &str, c: &ConversationRecord) -> Utf8Bytes {
    to_frame(&ConversationFrame {
        r#type: "conversation",
        event,
        conversation: ConversationView::from(c).citizen_view(),
    })
}

pub fn presence(agent_id: &str, name: &str, status: &str) -> Utf8Bytes {
    to_frame(&serde_json::json!({
        "type": "presence", "agent": {"id": agent_id, "name": name}, "status": status,
    }))
}

#[derive(Serialize)]
struct WelcomeFrame<'a> {
    r#type: &'static str,
    user: serde_json::Value,
    conversations: Vec<ConversationView<'a>>,
}

pub fn welcome(p: &crate::auth::Principal, convs: &[ConversationRecord]) -> Utf8Bytes {
    to_frame(&WelcomeFrame {
        r#type: "welcome",
        user: p.user_json(),
        conversations: convs
            .iter()
            .map(|c| ConversationView::for_principal(c, p))
            .collect(),
    })
}

pub fn typing(conversation_id: &str, user: serde_json::Value, active: bool) -> Utf8Bytes {
    to_frame(&serde_json::json!({
        "type": "typing", "conversation_id": conversation_id, "user": user, "active": active,
    }))
}

pub fn read(conversation_id: &str, user: serde_json::Value, seq: i64) -> Utf8Bytes {
    to_frame(&serde_json::json!({
        "type": "read", "conversation_id": conversation_id, "user": user, "seq": seq,
    }))
}

pub fn error(e: &AppError, client_msg_id: Option<&str>) -> Utf8Bytes {
    let mut v = serde_json::json!({
        "type": "error", "code": e.code(), "message": e.public_message(),
    });
    if let Some(id) = client_msg_id {
        v["client_msg_id"] = serde_json::Value::String(id.to_string());
    }
    to_frame(&v)
}

pub fn pong() -> Utf8Bytes {
    Utf8Bytes::from_static(r#"{"type":"pong"}"#)
}
