//! Conversations and messages: the domain functions every adapter calls (HTTP, the
//! WebSocket hub, messenger bridges). They check access, write the database, and then
//! publish hub events, so a message reaches an agent by the same path whichever
//! channel it came from.

pub mod workflow;
pub mod writer;

use std::sync::Arc;

use crate::auth::Principal;
use crate::config::Config;
use crate::error::{AppError, AppResult};
use crate::hub::{frames, Audience, Hub};
use crate::store::{Access, Committed, ConversationRecord, NewMessage, Store};
pub use writer::Writer;

/// What a client asks to send (WebSocket `send` frame or HTTP fallback).
#[derive(Debug, Default)]
pub struct SendInput {
    pub client_msg_id: String,
    pub conversation_id: Option<String>,
    pub kind: Option<String>,
    pub body: Option<String>,
    pub attachment_ids: Vec<String>,
}

/// Longest `client_msg_id` accepted (a UUID is 36 characters).
const CLIENT_MSG_ID_MAX: usize = 128;

#[derive(Clone)]
pub struct Chat {
    pub config: Arc<Config>,
    pub store: Store,
    pub hub: Arc<Hub>,
    pub writer: Writer,
    /// Serialises auto-assignment decisions so capacity is never overrun.
    pub assign_lock: Arc<tokio::sync::Mutex<()>>,
    /// Article suggestions for agents when a citizen writes.
    pub kb: crate::kb::Kb,
}

/// May `p` see `conv`? Citizens: their own. Agents: their missions' and those assigned
/// to them. Admins: all. Editors work content, not conversations.
pub fn can_access(p: &Principal, conv: &ConversationRecord) -> bool {
    access_of(p).allows(conv)
}

/// The access rule for `p`, in the form the message writer checks.
pub fn access_of(p: &Principal) -> Access {
    match p {
        Principal::Citizen(c) => Access::Citizen(c.id.clone()),
        Principal::Agent(a) => match a.agent.role.as_str() {
            "admin" => Access::All,
            "agent" => Access::Agent {
                id: a.agent.id.clone(),
                missions: a.missions.clone(),
            },
            _ => Access::None,
        },
    }
}

impl Chat {
    /// A conversation the caller may see: 404 when it does not exist, 403 when it is
    /// someone else's.
    pub async fn conversation_for(&self, p: &Principal, id: &str) -> AppResult<ConversationRecord> {
        if uuid::Uuid::parse_str(id).is_err() {
            return Err(AppError::not_found("conversation"));
        }
        let conv = self
            .store
            .conversation(id)
            .await?
            .ok_or_else(|| AppError::not_found("conversation"))?;
        if !can_access(p, &conv) {
            return Err(AppError::forbidden("this conversation is not yours"));
        }
        Ok(conv)
    }

    /// The citizen's open conversation, or a new one routed to the mission covering
    /// their country.
    pub async fn start_conversation(
        &self,
        p: &Principal,
        channel: Option<&str>,
    ) -> AppResult<(ConversationRecord, bool)> {
        let Principal::Citizen(c) = p else {
            return Err(AppError::forbidden("only citizens start conversations"));
        };
        let channel = channel.unwrap_or("app");
        if !matches!(channel, "app" | "web" | "telegram") {
            return Err(AppError::invalid("channel must be app, web or telegram"));
        }
        let mission = self.config.route(c.country.as_deref());
        let (conv, created) = self
            .store
            .find_or_create_conversation(&c.id, &mission.id, channel)
            .await?;
        if !created {
            return Ok((conv, false));
        }
        tracing::info!(conversation = %conv.id, mission = %conv.mission_id, "conversation created");
        self.publish_event("created", &[], &conv);
        self.auto_assign(&conv.mission_id).await;
        let conv = self.store.conversation(&conv.id).await?.unwrap_or(conv);
        Ok((conv, true))
    }

    /// Validate and durably store a message; the result is what the `ack` reports.
    pub async fn send(&self, p: &Principal, input: SendInput) -> AppResult<Committed> {
        let cmid = input.client_msg_id.trim();
        if cmid.is_empty() || cmid.chars().count() > CLIENT_MSG_ID_MAX {
            return Err(AppError::invalid(format!(
                "client_msg_id is required (a UUID you generate, at most {CLIENT_MSG_ID_MAX} characters)"
            )));
        }
        let is_citizen = matches!(p, Principal::Citizen(_));
        if !is_citizen && !p.works_conversations() {
            return Err(AppError::forbidden("editors cannot write in conversations"));
        }
        let has_attachments = !input.attachment_ids.is_empty();
        let default_kind = if has_attachments { "image" } else { "text" };
        let kind: &'static str = match input.kind.as_deref().unwrap_or(default_kind) {
            "text" => "text",
            "note" if is_citizen => {
                return Err(AppError::forbidden("citizens cannot write internal notes"))
            }
            "note" => "note",
            "image" => "image",
            other => {
                return Err(AppError::invalid(format!(
                    "kind {other:?} cannot be sent; use text, image or note"
                )))
            }
        };
        let body = input.body.unwrap_or_default();
        let chars = body.chars().count();
        if kind == "image" {
            if !has_attachments {
                return Err(AppError::invalid("an image message needs attachment_ids"));
            }
        } else {
            if has_attachments {
                return Err(AppError::invalid(
                    "attachments go in image messages (kind \"image\")",
                ));
            }
            if body.trim().is_empty() {
                return Err(AppError::invalid("body must not be empty"));
            }
        }
        if chars > self.config.limits.text_max_chars {
            return Err(AppError::invalid(format!(
                "body has {chars} characters; at most {} are allowed",
                self.config.limits.text_max_chars
            )));
        }
        if body.contains('\u{0}') {
            return Err(AppError::invalid("body must not contain NUL characters"));
        }
        let (attachments, attachment_ids) = self.own_uploads(p, input.attachment_ids).await?;
        // The writer checks access against the conversation inside its transaction; a
        // citizen without a conversation gets their open one, or a new one.
        let conversation_id = match input.conversation_id {
            Some(id) if uuid::Uuid::parse_str(&id).is_ok() => id,
            Some(_) => return Err(AppError::not_found("conversation")),
            None if is_citizen => match self.store.open_conversation_of(p.id()).await? {
                Some(c) => c.id,
                None => self.start_conversation(p, None).await?.0.id,
            },
            None => return Err(AppError::invalid("conversation_id is required")),
        };
        let msg = NewMessage {
            conversation_id,
            client_msg_id: Some(cmid.to_string()),
            sender_kind: if is_citizen { "citizen" } else { "agent" },
            sender_id: Some(p.id().to_string()),
            sender_name: p.display_name().to_string(),
            kind,
            body,
            attachments,
            attachment_ids,
            reopen_if_resolved: is_citizen,
            access: access_of(p),
        };
        let committed = self.writer.commit(msg).await?;
        if committed.reopened {
            self.auto_assign(&committed.conversation.mission_id).await;
        }
        if let Principal::Citizen(c) = p {
            if !committed.duplicate && committed.message.kind == "text" {
                self.kb.suggest(
                    &self.hub,
                    &committed.conversation,
                    &committed.message,
                    c.locale.as_deref(),
                );
            }
        }
        Ok(committed)
    }

    /// Publish a conversation event: the staff view to staff (routed by every state in
    /// `before` and by `after`), the citizen view to the citizen.
    pub fn publish_event(
        &self,
        event: &str,
        before: &[&ConversationRecord],
        after: &ConversationRecord,
    ) {
        let mut routes: Vec<&ConversationRecord> = before.to_vec();
        routes.push(after);
        self.hub.publish(
            &routes,
            Audience::StaffOnly,
            frames::conversation(event, after),
            None,
        );
        self.hub.publish(
            &[after],
            Audience::CitizenOnly,
            frames::conversation_for_citizen(event, after),
            None,
        );
    }

    /// Check that every upload exists and was uploaded by `p`; returns the attachment
    /// objects to show in the message, and the ids.
    async fn own_uploads(
        &self,
        p: &Principal,
        ids: Vec<String>,
    ) -> AppResult<(String, Vec<String>)> {
        const MAX: usize = 10;
        if ids.len() > MAX {
            return Err(AppError::invalid(format!(
                "at most {MAX} attachments per message"
            )));
        }
        let mut seen = Vec::with_capacity(ids.len());
        let mut objects = Vec::with_capacity(ids.len());
        for id in ids {
            if seen.contains(&id) {
                continue;
            }
            let found = if uuid::Uuid::parse_str(&id).is_ok() {
                self.store.attachment(&id).await?
            } else {
                None
            };
            let a = found.ok_or_else(|| AppError::invalid(format!("no upload with id {id}")))?;
            if a.uploader_id != p.id() {
                return Err(AppError::forbidden(
                    "only the uploader can attach an upload to a message",
                ));
            }
            objects.push(crate::views::attachment_json(&a));
            seen.push(id);
        }
        Ok((serde_json::Value::Array(objects).to_string(), seen))
    }

    /// A system message the citizen sees (transfers and the like).
    pub async fn system_message(
        &self,
        conversation_id: &str,
        body: String,
    ) -> AppResult<Committed> {
        self.writer
            .commit(NewMessage {
                conversation_id: conversation_id.to_string(),
                client_msg_id: None,
                sender_kind: "system",
                sender_id: None,
                sender_name: "Lingshi".into(),
                kind: "system",
                body,
                attachments: "[]".into(),
                attachment_ids: vec![],
                reopen_if_resolved: false,
                access: Access::All,
            })
            .await
    }
}
