//! Emergencies: SOS, escalations to the 12308 hotline, their acknowledgement by the
//! hotline or an agent, and re-escalation when nobody acknowledges in time. The rules
//! of each transition are in the planner (`planner::emergency`); this module gathers
//! what they need and exposes them to the adapters.

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::model::*;
use super::planner::{Action, Change, Draft, EscalationContext, Outcome, Request, Sos, Target};
use super::types::*;
use super::{Access, Domain, Principal};
use crate::error::{AppError, AppResult};

/// Messages before an escalation shown to the hotline.
const CONTEXT_MESSAGES: i64 = 10;

/// A citizen's SOS (app, web chat, messenger bridge).
#[derive(Debug, Default, Clone)]
pub struct SosInput {
    pub conversation_id: Option<String>,
    pub note: Option<String>,
    pub location: Option<GeoPoint>,
}

impl Domain {
    /// What the hotline needs with an escalation: the latest messages and where the
    /// citizen is. Read before the commit: escalations are rare and these are only
    /// shown, never decided on.
    pub(super) async fn escalation_context(
        &self,
        conversation: ConversationId,
        citizen: &Citizen,
        reason: EscalationReason,
        location: Option<GeoPoint>,
    ) -> AppResult<EscalationContext> {
        let recent = self
            .store
            .messages(
                conversation,
                MessagePage {
                    after_seq: None,
                    before_seq: Some(i64::MAX),
                    limit: CONTEXT_MESSAGES,
                    include_notes: false,
                },
            )
            .await?;
        let location = match location {
            Some(l) => Some(l),
            None => self
                .store
                .citizen(citizen.id)
                .await?
                .and_then(|c| c.location),
        };
        Ok(EscalationContext {
            reason,
            recent,
            location,
            locale: citizen.locale.clone(),
        })
    }

    /// The conversation a citizen's request is about: the one named (theirs), else
    /// their open one, else a new one.
    pub(super) async fn citizen_conversation(
        &self,
        p: &Principal,
        c: &Citizen,
        id: Option<&str>,
        channel: Channel,
    ) -> AppResult<ConversationId> {
        if let Some(id) = id {
            return Ok(self.conversation_for(p, id).await?.id);
        }
        if let Some(conv) = self.store.open_conversation_of(c.id).await? {
            return Ok(conv.id);
        }
        let o = self
            .writer
            .submit(Request::Start(self.start_for(c, channel)))
            .await?;
        Ok(o.conversation.id)
    }

    /// SOS: escalate the citizen's conversation at once, whatever their message says.
    /// The outcome carries the escalation and the guidance they were given.
    pub async fn sos(
        &self,
        p: &Principal,
        input: SosInput,
        channel: Channel,
    ) -> AppResult<Outcome> {
        let c = p.require_citizen()?;
        self.limits
            .sends
            .take(&p.id(), 1.0)
            .map_err(|wait| super::limits::limited("too many requests; wait a moment", wait))?;
        let note = input
            .note
            .map(|n| n.trim().to_string())
            .filter(|n| !n.is_empty());
        if let Some(n) = &note {
            if n.chars().count() > self.config.limits.text_max_chars || n.contains('\u{0}') {
                return Err(AppError::invalid(format!(
                    "note must have at most {} characters",
                    self.config.limits.text_max_chars
                )));
            }
        }
        if let Some(at) = input.location {
            self.store.set_citizen_location(c.id, at).await?;
        }
        let conversation_id = self
            .citizen_conversation(p, c, input.conversation_id.as_deref(), channel)
            .await?;
        let context = self
            .escalation_context(conversation_id, c, EscalationReason::Sos, input.location)
            .await?;
        let note = note.map(|body| Draft {
            target: Target::Id(conversation_id),
            client_msg_id: None,
            sender: Sender {
                kind: SenderKind::Citizen,
                id: Some(p.id()),
                display_name: c.display_name.clone(),
            },
            kind: MessageKind::Text,
            triage: Some(self.assess(&body, c.locale.as_ref())),
            body,
            attachments: vec![],
            access: p.access(),
            reopen_if_resolved: true,
            escalate: None,
            locale: c.locale.clone(),
        });
        let started = std::time::Instant::now();
        let o = self
            .writer
            .submit(Request::Sos(Sos {
                conversation_id,
                access: p.access(),
                note,
                context,
            }))
            .await?;
        self.metrics
            .guidance_seconds
            .observe(started.elapsed().as_secs_f64());
        if let Some(e) = &o.escalation {
            tracing::warn!(escalation = %e.id, conversation = %conversation_id, "SOS");
        }
        Ok(o)
    }

    /// Escalations of the caller's missions (admins: all), newest first.
    pub async fn escalations(
        &self,
        p: &Principal,
        state: Option<&str>,
        limit: Option<i64>,
    ) -> AppResult<Vec<Escalation>> {
        p.require_agent()?;
        let limit = limit.unwrap_or(50);
        if !(1..=200).contains(&limit) {
            return Err(AppError::invalid("limit must be between 1 and 200"));
        }
        let state = state
            .filter(|s| !s.trim().is_empty())
            .map(EscalationState::parse)
            .transpose()?;
        self.store
            .escalations(&EscalationFilter {
                missions: (!p.is_admin())
                    .then(|| p.staff_missions(&self.config))
                    .transpose()?,
                state,
                limit,
            })
            .await
    }

    /// One escalation, if the caller serves its mission.
    pub async fn escalation_for(&self, p: &Principal, id: &str) -> AppResult<Escalation> {
        let a = p.require_agent()?;
        let e = self
            .store
            .escalation(EscalationId::parse(id)?)
            .await?
            .ok_or_else(|| AppError::not_found("escalation"))?;
        if !p.is_admin() && !a.missions.contains(&e.mission_id) {
            return Err(AppError::forbidden("this escalation is another mission's"));
        }
        Ok(e)
    }

    async fn acknowledge(&self, e: &Escalation, actor: Actor, by: String) -> AppResult<Escalation> {
        if e.state == EscalationState::Resolved {
            return Err(AppError::Conflict(
                "the escalation is resolved; nothing to acknowledge".into(),
            ));
        }
        let o = self
            .writer
            .submit(Request::Change(Change {
                conversation_id: e.conversation_id,
                access: Access::All,
                actor,
                action: Action::AckEscalation {
                    escalation: e.id,
                    by,
                },
            }))
            .await?;
        o.escalation
            .ok_or_else(|| AppError::Conflict("the escalation changed meanwhile".into()))
    }

    /// An agent of the escalation's mission takes it.
    pub async fn ack_escalation(&self, p: &Principal, id: &str) -> AppResult<Escalation> {
        let e = self.escalation_for(p, id).await?;
        let a = p.require_agent()?;
        self.acknowledge(&e, Actor::Agent(a.id), a.id.to_string())
            .await
    }

    /// The hotline acknowledged (its request was signed; the adapter checked that).
    pub async fn hotline_ack(&self, id: &str) -> AppResult<Escalation> {
        let e = self
            .store
            .escalation(EscalationId::parse(id)?)
            .await?
            .ok_or_else(|| AppError::not_found("escalation"))?;
        self.acknowledge(&e, Actor::System, "hotline".into()).await
    }

    /// Re-escalate what nobody acknowledged within `reescalate_after_secs`. One node
    /// does it at a time (a lease).
    pub async fn reescalate_due(&self, node: &str) -> AppResult<usize> {
        let now = now();
        if !self
            .store
            .acquire_lease("reescalation", node, now + chrono::Duration::seconds(15))
            .await?
        {
            return Ok(0);
        }
        let after = chrono::Duration::seconds(self.config.hotline.reescalate_after_secs as i64);
        let due = self
            .store
            .escalations_to_reescalate(now - after, 100)
            .await?;
        let n = due.len();
        for e in due {
            if let Err(err) = self
                .writer
                .submit(Request::Change(Change {
                    conversation_id: e.conversation_id,
                    access: Access::All,
                    actor: Actor::System,
                    action: Action::Reescalate { escalation: e.id },
                }))
                .await
            {
                err.log();
            } else {
                tracing::warn!(escalation = %e.id, "escalation not acknowledged; re-escalated");
            }
        }
        self.metrics
            .escalations_unacknowledged
            .store(self.store.unacknowledged_escalations().await?, Relaxed);
        Ok(n)
    }

    pub(super) fn spawn_reescalation(&self, stop: CancellationToken) {
        let d = self.clone();
        let node = format!("{}:{}", std::process::id(), uuid::Uuid::now_v7());
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tick.tick() => {
                        if let Err(e) = d.reescalate_due(&node).await {
                            e.log();
                        }
                    }
                }
            }
        });
    }

    /// The duty officer's list on the server's own machine: every mission.
    pub async fn operator_escalations(
        &self,
        state: Option<&str>,
        limit: i64,
    ) -> AppResult<Vec<Escalation>> {
        let state = state
            .filter(|s| !s.trim().is_empty())
            .map(EscalationState::parse)
            .transpose()?;
        self.store
            .escalations(&EscalationFilter {
                missions: None,
                state,
                limit: limit.clamp(1, 10_000),
            })
            .await
    }

    /// One escalation with its hotline deliveries (every attempt's outcome).
    pub async fn operator_escalation(&self, id: &str) -> AppResult<(Escalation, Vec<OutboxRow>)> {
        let id = EscalationId::parse(id)?;
        let e = self
            .store
            .escalation(id)
            .await?
            .ok_or_else(|| AppError::not_found("escalation"))?;
        let deliveries = self.store.outbox_rows_about(&id.to_string()).await?;
        Ok((e, deliveries))
    }

    /// Duty officer's tool: send an escalation's hotline deliveries again (same ids).
    pub async fn redeliver_escalation(&self, id: EscalationId) -> AppResult<u64> {
        self.store
            .escalation(id)
            .await?
            .ok_or_else(|| AppError::not_found("escalation"))?;
        let n = self.store.redeliver_subject(&id.to_string()).await?;
        self.outbox_wake.notify_one();
        Ok(n)
    }
}
