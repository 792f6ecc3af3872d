//! The planner's emergency rules: what a citizen's message classified as an emergency,
//! a fraud or urgent does to its conversation, SOS, and the life of an escalation
//! (created, updated, acknowledged as a compare-and-set, re-escalated, resolved) — each
//! in the same commit as the message or change that caused it, with its audit entry,
//! its events and its delivery to the hotline.

use super::*;
use crate::domain::emergency::{emergency_guidance, fraud_guidance, FRAUD_LABEL};
use crate::domain::events::EscalationEvent;
use crate::domain::webhooks::hotline_row;

/// Messages of the conversation shown to the hotline with an escalation.
const HOTLINE_MESSAGES: usize = 10;

impl Planner<'_> {
    fn audit_system(&mut self, conv: &Conversation, action: &str, details: serde_json::Value) {
        self.plan.writes.audit.push(AuditEntry {
            at: self.now,
            ..AuditEntry::new(Actor::System, action, details)
                .target("conversation", conv.id)
                .mission(&conv.mission_id)
        });
    }

    /// A message from the service to the citizen, numbered after the last one.
    pub(super) fn post_system_message(
        &mut self,
        conv: &mut Conversation,
        body: String,
        events: &mut Vec<Event>,
    ) -> Message {
        conv.last_seq += 1;
        conv.updated_at = self.now;
        let m = Message {
            id: MessageId::new(),
            conversation_id: conv.id,
            seq: conv.last_seq,
            client_msg_id: None,
            sender: Sender {
                kind: SenderKind::System,
                id: None,
                display_name: "Lingshi".into(),
            },
            kind: MessageKind::System,
            body,
            attachments: vec![],
            created_at: self.now,
            triage: None,
        };
        events.push(Event::Message {
            message: m.clone(),
            route: Route::from(&*conv),
        });
        self.plan.writes.messages.push(m.clone());
        m
    }

    /// Raise the priority (never lower it) and say so.
    fn raise_priority(
        &mut self,
        conv: &mut Conversation,
        to: Priority,
        why: &str,
        events: &mut Vec<Event>,
    ) {
        if conv.priority.rank() >= to.rank() {
            return;
        }
        let from = conv.priority;
        conv.priority = to;
        conv.updated_at = self.now;
        events.push(Event::Conversation {
            kind: ConversationEvent::PriorityChanged,
            conversation: conv.clone(),
            previous: None,
        });
        self.audit_system(
            conv,
            "priority_change",
            json!({"from": from, "to": to, "reason": why}),
        );
        // A waiting conversation moved up the queue.
        self.plan.wake.push(conv.mission_id.clone());
        self.touch(conv.id);
    }

    /// Apply what the classifier found in a citizen's message.
    pub(super) fn after_citizen_message(
        &mut self,
        d: &Draft,
        conv: &mut Conversation,
        message: &Message,
        events: &mut Vec<Event>,
    ) -> (Option<Escalation>, Option<String>) {
        if let Some(ctx) = &d.escalate {
            let (e, g) = self.escalate(conv, ctx, std::slice::from_ref(message), events);
            return (Some(e), g);
        }
        match d.triage.as_ref().map(|t| t.category.as_str()) {
            Some("fraud") => (None, self.fraud(conv, d.locale.as_ref(), events)),
            Some("urgent") => {
                self.raise_priority(conv, Priority::Urgent, "triage", events);
                (None, None)
            }
            _ => (None, None),
        }
    }

    /// A reported fraud: the `fraud-report` label, urgent priority, and the anti-fraud
    /// advice (once per conversation).
    fn fraud(
        &mut self,
        conv: &mut Conversation,
        locale: Option<&Locale>,
        events: &mut Vec<Event>,
    ) -> Option<String> {
        self.raise_priority(conv, Priority::Urgent, "fraud", events);
        if conv.labels.iter().any(|l| l == FRAUD_LABEL) {
            return None;
        }
        conv.labels.push(FRAUD_LABEL.into());
        conv.updated_at = self.now;
        events.push(Event::Conversation {
            kind: ConversationEvent::LabelsChanged,
            conversation: conv.clone(),
            previous: None,
        });
        self.audit_system(
            conv,
            "labels_change",
            json!({"labels": conv.labels, "reason": "fraud"}),
        );
        let text = fraud_guidance(locale);
        self.post_system_message(conv, text.clone(), events);
        self.touch(conv.id);
        Some(text)
    }

    fn hotline(
        &mut self,
        event_type: &str,
        e: &Escalation,
        conv: &Conversation,
        messages: Vec<Message>,
    ) {
        if let Some(row) = hotline_row(self.config, event_type, e, conv, messages, self.now) {
            self.plan.writes.outbox.push(row);
        }
    }

    fn store_escalation(&mut self, e: Escalation) {
        if !self.touched_escalations.contains(&e.id) {
            self.touched_escalations.push(e.id);
        }
        self.escalations.insert(e.conversation_id, e);
    }

    /// Make the conversation an emergency: priority `emergency` (it jumps the queue),
    /// one open escalation (created, or this added to it), the citizen's guidance, the
    /// staff's `escalation` frames and the hotline delivery. Returns the escalation and
    /// the guidance the citizen was given.
    pub(super) fn escalate(
        &mut self,
        conv: &mut Conversation,
        ctx: &EscalationContext,
        trigger: &[Message],
        events: &mut Vec<Event>,
    ) -> (Escalation, Option<String>) {
        if conv.status == Status::Resolved {
            let before = Route::from(&*conv);
            conv.status = Status::Open;
            conv.assignee_id = None;
            events.push(Event::Conversation {
                kind: ConversationEvent::Reopened,
                conversation: conv.clone(),
                previous: Some(before),
            });
        }
        self.raise_priority(conv, Priority::Emergency, ctx.reason.as_str(), events);
        let guidance = emergency_guidance(
            self.config,
            &conv.mission_id,
            conv.citizen.country,
            ctx.locale.as_ref(),
        );
        let mut shown: Vec<Message> = ctx
            .recent
            .iter()
            .chain(trigger)
            .filter(|m| m.kind.citizen_may_see())
            .cloned()
            .collect();
        let (escalation, kind) = match self.escalations.get(&conv.id).cloned() {
            Some(mut e) => {
                // Further emergency messages are added to the open escalation.
                if ctx.location.is_some() {
                    e.location = ctx.location;
                }
                (e, EscalationEvent::Updated)
            }
            None => {
                let g = self.post_system_message(conv, guidance.clone(), events);
                shown.push(g);
                let e = Escalation {
                    id: EscalationId::new(),
                    conversation_id: conv.id,
                    mission_id: conv.mission_id.clone(),
                    citizen: conv.citizen.clone(),
                    reason: ctx.reason,
                    state: EscalationState::Pending,
                    created_at: self.now,
                    delivered_at: None,
                    acknowledged_at: None,
                    acknowledged_by: None,
                    attempts: 0,
                    reescalations: 0,
                    alerted_at: self.now,
                    location: ctx.location,
                };
                (e, EscalationEvent::Created)
            }
        };
        let skip = shown.len().saturating_sub(HOTLINE_MESSAGES);
        let shown: Vec<Message> = shown.into_iter().skip(skip).collect();
        let event_type = match kind {
            EscalationEvent::Created => "escalation.created",
            _ => "escalation.updated",
        };
        self.hotline(event_type, &escalation, conv, shown);
        self.audit_system(
            conv,
            if kind == EscalationEvent::Created {
                "escalation_created"
            } else {
                "escalation_updated"
            },
            json!({"escalation_id": escalation.id, "reason": ctx.reason,
                   "messages": trigger.iter().map(|m| m.id).collect::<Vec<_>>()}),
        );
        events.push(Event::Escalation {
            kind,
            escalation: escalation.clone(),
            missions: vec![conv.mission_id.clone()],
        });
        self.store_escalation(escalation.clone());
        self.touch(conv.id);
        (escalation, Some(guidance))
    }

    /// SOS: the citizen's note (if any) as an ordinary message, then the escalation.
    pub(super) fn sos(
        &mut self,
        s: &Sos,
        existing: &HashMap<(PersonId, ClientMsgId), Message>,
        convs: &mut HashMap<ConversationId, Conversation>,
        open: &mut HashMap<CitizenId, ConversationId>,
    ) -> AppResult<Outcome> {
        let mut events = Vec::new();
        let mut note = None;
        if let Some(d) = &s.note {
            let o = self.message(d, existing, convs, open)?;
            events.extend(o.events);
            note = o.message;
        }
        let conv = convs
            .get_mut(&s.conversation_id)
            .ok_or_else(|| AppError::not_found("conversation"))?;
        if !s.access.allows(conv) {
            return Err(AppError::forbidden("this conversation is not yours"));
        }
        let trigger: Vec<Message> = note.iter().cloned().collect();
        let (escalation, guidance) = self.escalate(conv, &s.context, &trigger, &mut events);
        Ok(Outcome {
            conversation: conv.clone(),
            message: note,
            duplicate: false,
            changed: true,
            reopened: false,
            escalation: Some(escalation),
            guidance,
            events,
        })
    }

    /// Acknowledge the conversation's open escalation: a compare-and-set on its state,
    /// so an acknowledgement racing a resolve cannot reopen it.
    pub(super) fn ack_escalation(
        &mut self,
        c: &Change,
        conv: &mut Conversation,
        id: EscalationId,
        by: &str,
    ) -> AppResult<Outcome> {
        let Some(mut e) = self
            .escalations
            .get(&conv.id)
            .filter(|e| e.id == id)
            .cloned()
        else {
            return Err(AppError::Conflict(
                "the escalation is resolved; nothing to acknowledge".into(),
            ));
        };
        let mut out = self.unchanged(conv);
        if e.state == EscalationState::Acknowledged {
            out.escalation = Some(e);
            return Ok(out);
        }
        e.state = EscalationState::Acknowledged;
        e.acknowledged_at = Some(self.now);
        e.acknowledged_by = Some(by.to_string());
        self.plan.writes.audit.push(AuditEntry {
            at: self.now,
            ..AuditEntry::new(
                c.actor,
                "escalation_acknowledged",
                json!({"escalation_id": e.id, "by": by}),
            )
            .target("conversation", conv.id)
            .mission(&conv.mission_id)
        });
        if by != "hotline" {
            self.hotline("escalation.updated", &e, conv, vec![]);
        }
        out.events.push(Event::Escalation {
            kind: EscalationEvent::Acknowledged,
            escalation: e.clone(),
            missions: vec![conv.mission_id.clone()],
        });
        out.changed = true;
        out.escalation = Some(e.clone());
        self.store_escalation(e);
        Ok(out)
    }

    /// Not acknowledged in time: tell the hotline again and alert the mission's staff
    /// and the default mission's.
    pub(super) fn reescalate(
        &mut self,
        c: &Change,
        conv: &mut Conversation,
        id: EscalationId,
    ) -> AppResult<Outcome> {
        let mut out = self.unchanged(conv);
        let Some(mut e) = self
            .escalations
            .get(&conv.id)
            .filter(|e| e.id == id && e.state.unacknowledged())
            .cloned()
        else {
            return Ok(out);
        };
        e.reescalations += 1;
        e.alerted_at = self.now;
        self.hotline("escalation.reescalated", &e, conv, vec![]);
        self.plan.writes.audit.push(AuditEntry {
            at: self.now,
            ..AuditEntry::new(
                c.actor,
                "escalation_reescalated",
                json!({"escalation_id": e.id, "times": e.reescalations}),
            )
            .target("conversation", conv.id)
            .mission(&conv.mission_id)
        });
        let mut missions = vec![conv.mission_id.clone()];
        let default = MissionId::new(self.config.default_mission.clone());
        if !missions.contains(&default) {
            missions.push(default);
        }
        out.events.push(Event::Escalation {
            kind: EscalationEvent::Reescalated,
            escalation: e.clone(),
            missions,
        });
        out.changed = true;
        out.escalation = Some(e.clone());
        self.store_escalation(e);
        Ok(out)
    }

    /// A resolved conversation resolves its escalation; returns the event to publish.
    pub(super) fn close_escalation(&mut self, c: &Change, conv: &Conversation) -> Option<Event> {
        let mut e = self.escalations.get(&conv.id).cloned()?;
        e.state = EscalationState::Resolved;
        self.hotline("escalation.updated", &e, conv, vec![]);
        self.plan.writes.audit.push(AuditEntry {
            at: self.now,
            ..AuditEntry::new(
                c.actor,
                "escalation_resolved",
                json!({"escalation_id": e.id}),
            )
            .target("conversation", conv.id)
            .mission(&conv.mission_id)
        });
        let event = Event::Escalation {
            kind: EscalationEvent::Resolved,
            escalation: e.clone(),
            missions: vec![conv.mission_id.clone()],
        };
        self.store_escalation(e);
        Some(event)
    }
}
