//! Conversations and messages: starting, sending, reading history, read markers,
//! typing and viewing. The same functions serve the app's socket, the HTTP fallback,
//! the web chat and messenger bridges, so a message takes one path whatever its channel.

use super::events::{Event, Route, UserRef};
use super::model::*;
use super::planner::{Draft, Outcome, Request, Start, Target};
use super::types::*;
use super::{Domain, Principal};
use crate::error::{AppError, AppResult};

/// Most attachments in one message.
const ATTACHMENTS_MAX: usize = 10;

/// What a client asks to send (socket `send` frame, HTTP fallback, a bridge).
#[derive(Debug, Default, Clone)]
pub struct SendInput {
    pub client_msg_id: String,
    pub conversation_id: Option<String>,
    pub kind: Option<String>,
    pub body: Option<String>,
    pub attachment_ids: Vec<String>,
    /// Where a citizen's first message starts its conversation (default `app`).
    pub channel: Option<Channel>,
}

/// Listing conversations, as the caller asked.
#[derive(Debug, Default, Clone)]
pub struct ListRequest {
    pub status: Option<String>,
    pub mine: bool,
    pub priority: Option<String>,
    pub label: Option<String>,
    /// `recent` (default) or `queue`.
    pub order: Option<String>,
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

/// A page of conversations and the cursor of the next one.
pub struct ConversationPage {
    pub conversations: Vec<Conversation>,
    pub next_cursor: Option<String>,
}

/// Cursors are `RANK.ID` of the last row of the previous page.
fn parse_cursor(c: &str) -> AppResult<(i64, ConversationId)> {
    let bad = || AppError::invalid("cursor is not one this server issued");
    let (rank, id) = c.split_once('.').ok_or_else(bad)?;
    let rank: i64 = rank.parse().map_err(|_| bad())?;
    let id = ConversationId::parse(id).map_err(|_| bad())?;
    Ok((rank, id))
}

impl Principal {
    /// How this person appears in typing, read and viewing events.
    pub fn user_ref(&self) -> UserRef {
        UserRef {
            id: self.id(),
            kind: if self.is_citizen() {
                "citizen"
            } else {
                "agent"
            }
            .into(),
            role: self.role_name().into(),
            display_name: self.display_name().to_string(),
        }
    }
}

impl Domain {
    /// A conversation the caller may see: 404 when it does not exist (or the id is
    /// malformed), 403 when it is someone else's.
    pub async fn conversation_for(&self, p: &Principal, id: &str) -> AppResult<Conversation> {
        let id = ConversationId::parse(id)?;
        let conv = self
            .store
            .conversation(id)
            .await?
            .ok_or_else(|| AppError::not_found("conversation"))?;
        if !p.access().allows(&conv) {
            return Err(AppError::forbidden("this conversation is not yours"));
        }
        Ok(conv)
    }

    pub(super) fn start_for(&self, c: &Citizen, channel: Channel) -> Start {
        Start {
            citizen: CitizenRef {
                id: c.id,
                display_name: c.display_name.clone(),
                country: c.country,
            },
            mission: MissionId::from(
                self.config
                    .route(c.country.as_ref().map(CountryCode::as_str)),
            ),
            channel,
        }
    }

    /// The citizen's open conversation, or a new one routed to the mission covering
    /// their country. `true` when it was created.
    pub async fn start_conversation(
        &self,
        p: &Principal,
        channel: Option<&str>,
    ) -> AppResult<(Conversation, bool)> {
        let c = p
            .citizen()
            .ok_or_else(|| AppError::forbidden("only citizens start conversations"))?;
        let channel = match channel {
            None => Channel::App,
            Some(s) => Channel::parse(s)?,
        };
        let o = self
            .writer
            .submit(Request::Start(self.start_for(c, channel)))
            .await?;
        if o.changed {
            tracing::info!(conversation = %o.conversation.id, mission = %o.conversation.mission_id, "conversation created");
        }
        Ok((o.conversation, o.changed))
    }

    /// Validate and durably store a message; the outcome is what the `ack` reports.
    pub async fn send(&self, p: &Principal, input: SendInput) -> AppResult<Outcome> {
        let started = std::time::Instant::now();
        let cmid = ClientMsgId::parse(&input.client_msg_id)?;
        if !p.is_citizen() && !p.works_conversations() {
            return Err(AppError::forbidden("editors cannot write in conversations"));
        }
        self.limits.sends.take(&p.id(), 1.0).map_err(|wait| {
            super::limits::limited(
                &format!(
                    "more than {} messages per second; slow down",
                    self.config.limits.frames_per_second
                ),
                wait,
            )
        })?;
        let has_attachments = !input.attachment_ids.is_empty();
        let kind = match input.kind.as_deref() {
            None if has_attachments => MessageKind::Image,
            None => MessageKind::Text,
            Some(k) => match MessageKind::parse(k) {
                Ok(MessageKind::System) | Err(_) => {
                    return Err(AppError::invalid(format!(
                        "kind {k:?} cannot be sent; use text, image or note"
                    )))
                }
                Ok(kind) => kind,
            },
        };
        if kind == MessageKind::Note && p.is_citizen() {
            return Err(AppError::forbidden("citizens cannot write internal notes"));
        }
        let body = input.body.unwrap_or_default();
        if kind == MessageKind::Image {
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
        let chars = body.chars().count();
        if chars > self.config.limits.text_max_chars {
            return Err(AppError::invalid(format!(
                "body has {chars} characters; at most {} are allowed",
                self.config.limits.text_max_chars
            )));
        }
        if body.contains('\u{0}') {
            return Err(AppError::invalid("body must not contain NUL characters"));
        }
        let attachments = self.own_uploads(p, &input.attachment_ids).await?;
        let mut target = match (&input.conversation_id, p) {
            (Some(id), _) => Target::Id(ConversationId::parse(id)?),
            (None, Principal::Citizen(c)) => {
                Target::OpenOf(self.start_for(c, input.channel.unwrap_or(Channel::App)))
            }
            (None, _) => return Err(AppError::invalid("conversation_id is required")),
        };
        // Every citizen message is triaged before it is committed (and so before its
        // ack); staff see the verdict, the planner acts on it.
        let citizen = p.citizen();
        let triage = citizen
            .filter(|_| !body.trim().is_empty())
            .map(|c| self.assess(&body, c.locale.as_ref()));
        let mut escalate = None;
        if let (Some(c), Some(t)) = (citizen, &triage) {
            if t.category == "emergency" {
                // Rare: settle the conversation now and gather what the hotline needs.
                let id = match &target {
                    Target::Id(id) => *id,
                    Target::OpenOf(_) => {
                        self.citizen_conversation(p, c, None, input.channel.unwrap_or(Channel::App))
                            .await?
                    }
                };
                target = Target::Id(id);
                escalate = Some(
                    self.escalation_context(id, c, EscalationReason::Triage, None)
                        .await?,
                );
            }
        }
        let escalating = escalate.is_some();
        let sender = Sender {
            kind: if p.is_citizen() {
                SenderKind::Citizen
            } else {
                SenderKind::Agent
            },
            id: Some(p.id()),
            display_name: p.display_name().to_string(),
        };
        let outcome = self
            .writer
            .submit(Request::Message(Draft {
                target,
                client_msg_id: Some(cmid),
                sender,
                kind,
                body,
                attachments,
                access: p.access(),
                reopen_if_resolved: p.is_citizen(),
                triage,
                escalate,
                locale: citizen.and_then(|c| c.locale.clone()),
            }))
            .await?;
        if escalating {
            self.metrics
                .guidance_seconds
                .observe(started.elapsed().as_secs_f64());
            if let Some(e) = &outcome.escalation {
                tracing::warn!(escalation = %e.id, conversation = %e.conversation_id, "message triaged as an emergency");
            }
        }
        if let (Principal::Citizen(c), Some(m)) = (p, &outcome.message) {
            if !outcome.duplicate && m.kind == MessageKind::Text {
                self.suggest(&outcome.conversation, m, c.locale.as_ref());
            }
        }
        Ok(outcome)
    }

    /// A message from the service itself that the citizen sees (guidance, notices).
    pub async fn system_message(
        &self,
        conversation: ConversationId,
        body: String,
    ) -> AppResult<Outcome> {
        self.writer
            .submit(Request::Message(Draft {
                target: Target::Id(conversation),
                client_msg_id: None,
                sender: Sender {
                    kind: SenderKind::System,
                    id: None,
                    display_name: "Lingshi".into(),
                },
                kind: MessageKind::System,
                body,
                attachments: vec![],
                access: super::Access::All,
                reopen_if_resolved: false,
                triage: None,
                escalate: None,
                locale: None,
            }))
            .await
    }

    /// Check that every upload exists and was uploaded by `p`.
    async fn own_uploads(&self, p: &Principal, ids: &[String]) -> AppResult<Vec<AttachmentRef>> {
        if ids.len() > ATTACHMENTS_MAX {
            return Err(AppError::invalid(format!(
                "at most {ATTACHMENTS_MAX} attachments per message"
            )));
        }
        let mut out: Vec<AttachmentRef> = Vec::with_capacity(ids.len());
        for raw in ids {
            let id = AttachmentId::parse(raw)
                .map_err(|_| AppError::invalid(format!("no upload with id {raw}")))?;
            if out.iter().any(|a| a.id == id) {
                continue;
            }
            let a = self
                .store
                .attachment(id)
                .await?
                .ok_or_else(|| AppError::invalid(format!("no upload with id {raw}")))?;
            if a.uploader_id != p.id() {
                return Err(AppError::forbidden(
                    "only the uploader can attach an upload to a message",
                ));
            }
            out.push(a.to_ref());
        }
        Ok(out)
    }

    /// Conversations the caller may see, filtered and paged.
    pub async fn list_conversations(
        &self,
        p: &Principal,
        q: ListRequest,
    ) -> AppResult<ConversationPage> {
        let limit = q.limit.unwrap_or(50);
        if !(1..=200).contains(&limit) {
            return Err(AppError::invalid("limit must be between 1 and 200"));
        }
        let queue_order = match q.order.as_deref() {
            None | Some("recent") => false,
            Some("queue") => true,
            Some(_) => return Err(AppError::invalid("order must be recent or queue")),
        };
        let mut f = ConversationFilter {
            status: q.status.as_deref().map(Status::parse).transpose()?,
            priority: q.priority.as_deref().map(Priority::parse).transpose()?,
            label: q.label.map(|l| l.trim().to_lowercase()),
            queue_order,
            after: q.cursor.as_deref().map(parse_cursor).transpose()?,
            limit: limit + 1,
            ..Default::default()
        };
        match p {
            Principal::Citizen(c) => f.citizen_id = Some(c.id),
            Principal::Staff(a) => {
                if !p.works_conversations() {
                    return Err(AppError::forbidden("editors do not work conversations"));
                }
                if !p.is_admin() {
                    f.missions = Some(a.missions.clone());
                    f.visible_assignee = Some(a.id);
                }
                if q.mine {
                    f.assignee_id = Some(a.id);
                }
            }
        }
        let mut rows = self.store.list_conversations(&f).await?;
        let next_cursor = if rows.len() as i64 > limit {
            rows.truncate(limit as usize);
            rows.last()
                .map(|c| format!("{}.{}", c.priority.rank(), c.id))
        } else {
            None
        };
        Ok(ConversationPage {
            conversations: rows,
            next_cursor,
        })
    }

    /// The conversations a socket's `welcome` lists: a citizen's own; the active ones
    /// of an agent's missions and assignments; every active one for admins.
    pub async fn welcome_snapshot(&self, p: &Principal) -> AppResult<Vec<Conversation>> {
        let f = match p {
            Principal::Citizen(c) => ConversationFilter {
                citizen_id: Some(c.id),
                limit: 100,
                ..Default::default()
            },
            Principal::Staff(a) if p.works_conversations() => ConversationFilter {
                missions: (!p.is_admin()).then(|| a.missions.clone()),
                visible_assignee: Some(a.id),
                active_only: true,
                limit: 500,
                ..Default::default()
            },
            Principal::Staff(_) => return Ok(vec![]),
        };
        self.store.list_conversations(&f).await
    }

    /// A page of a conversation's history in `seq` order. Citizens never see notes.
    pub async fn history(
        &self,
        p: &Principal,
        conv: &Conversation,
        after_seq: Option<i64>,
        before_seq: Option<i64>,
        limit: i64,
    ) -> AppResult<Vec<Message>> {
        if !(1..=200).contains(&limit) {
            return Err(AppError::invalid("limit must be between 1 and 200"));
        }
        if after_seq.is_some_and(|s| s < 0) || before_seq.is_some_and(|s| s < 0) {
            return Err(AppError::invalid(
                "after_seq and before_seq must not be negative",
            ));
        }
        if !p.access().allows(conv) {
            return Err(AppError::forbidden("this conversation is not yours"));
        }
        self.store
            .messages(
                conv.id,
                MessagePage {
                    after_seq,
                    before_seq,
                    limit,
                    include_notes: p.sees_internal(),
                },
            )
            .await
    }

    /// Remember and announce how far the caller has read.
    pub async fn mark_read(&self, p: &Principal, conversation_id: &str, seq: i64) -> AppResult<()> {
        let conv = self.conversation_for(p, conversation_id).await?;
        if seq < 0 || seq > conv.last_seq {
            return Err(AppError::invalid(format!(
                "seq must be between 0 and {}",
                conv.last_seq
            )));
        }
        self.store.set_read(conv.id, p.id(), seq).await?;
        self.publisher.publish(Event::Read {
            route: Route::from(&conv),
            conversation_id: conv.id,
            user: p.user_ref(),
            seq,
        });
        Ok(())
    }

    /// Tell the others in the conversation that the caller is (no longer) typing.
    pub async fn typing(
        &self,
        p: &Principal,
        conversation_id: &str,
        active: bool,
    ) -> AppResult<()> {
        let conv = self.conversation_for(p, conversation_id).await?;
        self.publisher.publish(Event::Typing {
            route: Route::from(&conv),
            conversation_id: conv.id,
            user: p.user_ref(),
            active,
        });
        Ok(())
    }

    /// Tell colleagues that the caller has the conversation open (or closed it).
    pub async fn viewing(
        &self,
        p: &Principal,
        conversation_id: &str,
        active: bool,
    ) -> AppResult<()> {
        p.require_agent()?;
        let conv = self.conversation_for(p, conversation_id).await?;
        self.publisher.publish(Event::Viewing {
            route: Route::from(&conv),
            conversation_id: conv.id,
            user: p.user_ref(),
            active,
        });
        Ok(())
    }

    /// The caller's read markers for these conversations (staff views show unread
    /// counts).
    pub async fn read_markers(
        &self,
        p: &Principal,
        conversations: &[Conversation],
    ) -> AppResult<std::collections::HashMap<ConversationId, i64>> {
        let ids: Vec<ConversationId> = conversations.iter().map(|c| c.id).collect();
        Ok(self
            .store
            .read_markers(p.id(), &ids)
            .await?
            .into_iter()
            .collect())
    }

    /// A citizen shares where they are (nearby alerts, emergencies).
    pub async fn set_location(&self, p: &Principal, at: GeoPoint) -> AppResult<()> {
        let c = p.require_citizen()?;
        self.store.set_citizen_location(c.id, at).await
    }

    /// A citizen chooses their language or country (a messenger's `/lang`, `/country`).
    /// `country: Some(None)` clears it ("another country"). Conversations already
    /// open stay with their mission; the next one is routed by the new country.
    pub async fn update_citizen_profile(
        &self,
        p: &Principal,
        locale: Option<&str>,
        country: Option<Option<&str>>,
    ) -> AppResult<Principal> {
        let c = p.require_citizen()?;
        let locale = locale.map(Locale::parse).transpose()?;
        let country = country.map(CountryCode::parse_opt).transpose()?;
        let updated = self
            .store
            .update_citizen_profile(c.id, locale.as_ref(), country)
            .await?
            .ok_or_else(|| AppError::not_found("citizen"))?;
        Ok(Principal::Citizen(updated))
    }

    /// The message the caller stored under `client_msg_id`, if any (a bridge checks
    /// before fetching what a redelivered update carries).
    pub async fn sent_message(
        &self,
        p: &Principal,
        client_msg_id: &str,
    ) -> AppResult<Option<Message>> {
        let cmid = ClientMsgId::parse(client_msg_id)?;
        self.store.message_by_client_id(p.id(), &cmid).await
    }

    /// The sender edits a message they sent (messengers let people edit). The message
    /// keeps its place (`seq`) and takes the new body; the old one stays in its edit
    /// history; staff get a `message_updated` frame. `None` when the sender stored no
    /// message under that `client_msg_id`.
    pub async fn edit_message(
        &self,
        p: &Principal,
        client_msg_id: &str,
        body: String,
    ) -> AppResult<Option<Message>> {
        let cmid = ClientMsgId::parse(client_msg_id)?;
        let Some(m) = self.store.message_by_client_id(p.id(), &cmid).await? else {
            return Ok(None);
        };
        match m.kind {
            MessageKind::Text if body.trim().is_empty() => {
                return Err(AppError::invalid("body must not be empty"))
            }
            MessageKind::Text | MessageKind::Image => {}
            MessageKind::Note | MessageKind::System => {
                return Err(AppError::invalid(
                    "only text and image captions can be edited",
                ))
            }
        }
        let chars = body.chars().count();
        if chars > self.config.limits.text_max_chars {
            return Err(AppError::invalid(format!(
                "body has {chars} characters; at most {} are allowed",
                self.config.limits.text_max_chars
            )));
        }
        if body.contains('\u{0}') {
            return Err(AppError::invalid("body must not contain NUL characters"));
        }
        if m.body == body {
            return Ok(Some(m));
        }
        let conv = self
            .store
            .conversation(m.conversation_id)
            .await?
            .ok_or_else(|| AppError::not_found("conversation"))?;
        if !p.access().allows(&conv) {
            return Err(AppError::forbidden("this conversation is not yours"));
        }
        let at = now();
        let Some(updated) = self.store.edit_message(m.id, &body, at).await? else {
            return Ok(None);
        };
        tracing::info!(conversation = %conv.id, seq = updated.seq, "message edited");
        self.publisher.publish(Event::MessageUpdated {
            message: updated.clone(),
            route: Route::from(&conv),
            edited_at: at,
        });
        Ok(Some(updated))
    }
}
