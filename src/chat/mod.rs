//! Conversations and messages: the domain functions every adapter calls (HTTP, the
//! WebSocket hub, messenger bridges). They check access, write the database, and then
//! publish hub events, so a message reaches an agent by the same path whichever
//! channel it came from.

pub mod writer;

use std::sync::Arc;

use crate::auth::Principal;
use crate::config::Config;
use crate::error::{AppError, AppResult};
use crate::hub::{frames, Audience, Hub};
use crate::store::{Committed, ConversationRecord, NewMessage, Store};
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
}

/// May `p` see `conv`? Citizens: their own. Agents: their missions' and those assigned
/// to them. Admins: all. Editors work content, not conversations.
pub fn can_access(p: &Principal, conv: &ConversationRecord) -> bool {
    match p {
        Principal::Citizen(c) => conv.citizen_id == c.id,
        Principal::Agent(a) => match a.agent.role.as_str() {
            "admin" => true,
            "agent" => {
                a.missions.contains(&conv.mission_id)
                    || conv.assignee_id.as_deref() == Some(a.agent.id.as_str())
            }
            _ => false,
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
        if created {
            tracing::info!(conversation = %conv.id, mission = %conv.mission_id, "conversation created");
            self.hub.publish(
                &[&conv],
                Audience::Everyone,
                frames::conversation("created", &conv),
                None,
            );
        }
        Ok((conv, created))
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
        // A resend of a stored message is answered from the database, before any check
        // that could have changed since (a conversation resolved in between).
        if let Some(existing) = self.store.message_by_client_id(p.id(), cmid).await? {
            let conversation = self
                .store
                .conversation(&existing.conversation_id)
                .await?
                .ok_or_else(|| AppError::not_found("conversation"))?;
            return Ok(Committed {
                message: existing,
                conversation,
                duplicate: true,
                reopened: false,
            });
        }
        let kind: &'static str = match input.kind.as_deref().unwrap_or("text") {
            "text" => "text",
            "note" if is_citizen => {
                return Err(AppError::forbidden("citizens cannot write internal notes"))
            }
            "note" => "note",
            "image" => {
                return Err(AppError::invalid(
                    "image messages need attachments, which this server does not accept yet",
                ))
            }
            other => {
                return Err(AppError::invalid(format!(
                    "kind {other:?} cannot be sent; use text or note"
                )))
            }
        };
        if !input.attachment_ids.is_empty() {
            return Err(AppError::invalid(
                "attachments are not accepted by this server yet",
            ));
        }
        let body = input.body.unwrap_or_default();
        let chars = body.chars().count();
        if body.trim().is_empty() {
            return Err(AppError::invalid("body must not be empty"));
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
        let conv = match input.conversation_id.as_deref() {
            Some(id) => self.conversation_for(p, id).await?,
            None if is_citizen => self.start_conversation(p, None).await?.0,
            None => return Err(AppError::invalid("conversation_id is required")),
        };
        let msg = NewMessage {
            conversation_id: conv.id,
            client_msg_id: Some(cmid.to_string()),
            sender_kind: if is_citizen { "citizen" } else { "agent" },
            sender_id: Some(p.id().to_string()),
            sender_name: p.display_name().to_string(),
            kind,
            body,
            attachments: "[]".into(),
            reopen_if_resolved: is_citizen,
        };
        self.writer.commit(msg).await
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
                reopen_if_resolved: false,
            })
            .await
    }

    fn require_staff(p: &Principal) -> AppResult<()> {
        if p.works_conversations() {
            Ok(())
        } else {
            Err(AppError::forbidden("only agents and admins can do this"))
        }
    }

    /// An agent who may hold conversations of `mission` (admins hold any).
    async fn assignable_agent(&self, agent_id: &str) -> AppResult<crate::store::AgentWithMissions> {
        let agent = if uuid::Uuid::parse_str(agent_id).is_ok() {
            self.store.agent_by_id(agent_id).await?
        } else {
            None
        };
        let agent =
            agent.ok_or_else(|| AppError::invalid(format!("no agent with id {agent_id}")))?;
        if !matches!(agent.agent.role.as_str(), "agent" | "admin") {
            return Err(AppError::invalid(
                "conversations can only be assigned to agents and admins",
            ));
        }
        Ok(agent)
    }

    pub async fn assign(
        &self,
        p: &Principal,
        id: &str,
        agent_id: Option<&str>,
    ) -> AppResult<ConversationRecord> {
        Self::require_staff(p)?;
        let conv = self.conversation_for(p, id).await?;
        let target = agent_id.unwrap_or(p.id());
        let agent = self.assignable_agent(target).await?;
        if agent.agent.role != "admin" && !agent.missions.contains(&conv.mission_id) {
            return Err(AppError::invalid(format!(
                "agent {} does not serve mission {}; transfer the conversation instead",
                agent.agent.name, conv.mission_id
            )));
        }
        let status = if conv.status == "resolved" {
            "resolved"
        } else {
            "assigned"
        };
        let updated = self
            .store
            .update_conversation(id, Some(status), Some(Some(&agent.agent.id)), None)
            .await?;
        tracing::info!(conversation = %id, agent = %agent.agent.id, by = %p.id(), "conversation assigned");
        self.hub.publish(
            &[&conv, &updated],
            Audience::Everyone,
            frames::conversation("assigned", &updated),
            None,
        );
        Ok(updated)
    }

    pub async fn transfer(
        &self,
        p: &Principal,
        id: &str,
        agent_id: Option<&str>,
        mission_id: Option<&str>,
    ) -> AppResult<ConversationRecord> {
        Self::require_staff(p)?;
        let conv = self.conversation_for(p, id).await?;
        let (mission, assignee) = match (agent_id, mission_id) {
            (Some(a), None) => {
                let agent = self.assignable_agent(a).await?;
                let mission =
                    if agent.agent.role == "admin" || agent.missions.contains(&conv.mission_id) {
                        conv.mission_id.clone()
                    } else {
                        agent
                            .missions
                            .first()
                            .cloned()
                            .ok_or_else(|| AppError::invalid("that agent serves no mission"))?
                    };
                (mission, Some(agent.agent.id))
            }
            (None, Some(m)) => {
                if self.config.mission(m).is_none() {
                    return Err(AppError::invalid(format!("unknown mission {m:?}")));
                }
                (m.to_string(), None)
            }
            _ => {
                return Err(AppError::invalid(
                    "give exactly one of agent_id or mission_id",
                ))
            }
        };
        let status = match (&conv.status[..], &assignee) {
            ("resolved", _) => "resolved",
            (_, Some(_)) => "assigned",
            (_, None) => "open",
        };
        let updated = self
            .store
            .update_conversation(id, Some(status), Some(assignee.as_deref()), Some(&mission))
            .await?;
        tracing::info!(conversation = %id, mission = %mission, by = %p.id(), "conversation transferred");
        self.hub.publish(
            &[&conv, &updated],
            Audience::Everyone,
            frames::conversation("transferred", &updated),
            None,
        );
        if mission != conv.mission_id {
            let name = self
                .config
                .mission(&mission)
                .map(|m| m.name.clone())
                .unwrap_or(mission.clone());
            self.system_message(id, format!("Transferred to the {name}."))
                .await?;
        }
        Ok(updated)
    }

    pub async fn resolve(&self, p: &Principal, id: &str) -> AppResult<ConversationRecord> {
        Self::require_staff(p)?;
        let conv = self.conversation_for(p, id).await?;
        if conv.status == "resolved" {
            return Ok(conv);
        }
        let updated = self
            .store
            .update_conversation(id, Some("resolved"), None, None)
            .await?;
        self.hub.publish(
            &[&updated],
            Audience::Everyone,
            frames::conversation("resolved", &updated),
            None,
        );
        Ok(updated)
    }

    pub async fn reopen(&self, p: &Principal, id: &str) -> AppResult<ConversationRecord> {
        Self::require_staff(p)?;
        let conv = self.conversation_for(p, id).await?;
        if conv.status != "resolved" {
            return Ok(conv);
        }
        let status = if conv.assignee_id.is_some() {
            "assigned"
        } else {
            "open"
        };
        let updated = self
            .store
            .update_conversation(id, Some(status), None, None)
            .await?;
        self.hub.publish(
            &[&updated],
            Audience::Everyone,
            frames::conversation("reopened", &updated),
            None,
        );
        Ok(updated)
    }
}
