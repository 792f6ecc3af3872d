//! The commit planner: a pure function that decides what a batch of requests does to
//! the conversations it touches — idempotency (a resend answers with the original),
//! access (checked against the conversation as it is inside the transaction), gapless
//! `seq` numbering, reopening, and every workflow transition — and what is announced
//! afterwards. The store loads the rows the planner asks for ([`Load`]), calls it inside
//! its transaction, and writes the [`Writes`] it returns; it decides nothing itself.

use std::collections::HashMap;

use serde_json::json;

use super::events::{ConversationEvent, Event, Route};
use super::model::*;
use super::principal::Access;
use super::types::*;
use super::webhooks::rows_for_event;

mod emergency;
use crate::config::Config;
use crate::error::{AppError, AppResult};

/// Most labels a conversation carries.
pub const LABELS_MAX: usize = 20;

/// Which conversation a message goes to.
#[derive(Clone, Debug)]
pub enum Target {
    Id(ConversationId),
    /// The citizen's open conversation, or a new one in this mission and channel.
    OpenOf(Start),
}

/// Start a conversation for a citizen (or find their open one).
#[derive(Clone, Debug)]
pub struct Start {
    pub citizen: CitizenRef,
    pub mission: MissionId,
    pub channel: Channel,
}

/// A message waiting to be committed.
#[derive(Clone, Debug)]
pub struct Draft {
    pub target: Target,
    pub client_msg_id: Option<ClientMsgId>,
    pub sender: Sender,
    pub kind: MessageKind,
    pub body: String,
    pub attachments: Vec<AttachmentRef>,
    /// Checked against the conversation inside the commit.
    pub access: Access,
    /// A citizen writing into a resolved conversation reopens it.
    pub reopen_if_resolved: bool,
    /// The classifier's verdict on a citizen's message: `fraud` and `urgent` change
    /// the conversation here; an emergency comes with `escalate`.
    pub triage: Option<TriageInfo>,
    /// Escalate the conversation with this message (an emergency).
    pub escalate: Option<EscalationContext>,
    /// The citizen's language, for guidance the message may trigger.
    pub locale: Option<Locale>,
}

/// What the domain read before an escalation (rare, so read outside the commit): the
/// conversation's latest messages and where the citizen is, for the hotline.
#[derive(Clone, Debug)]
pub struct EscalationContext {
    pub reason: EscalationReason,
    pub recent: Vec<Message>,
    pub location: Option<GeoPoint>,
    pub locale: Option<Locale>,
}

/// A citizen pressed SOS: escalate the conversation, with their note if they wrote one.
#[derive(Clone, Debug)]
pub struct Sos {
    pub conversation_id: ConversationId,
    pub access: Access,
    pub note: Option<Draft>,
    pub context: EscalationContext,
}

/// An agent a conversation is given to, with what the planner must check.
#[derive(Clone, Debug)]
pub struct AssignTarget {
    pub id: AgentId,
    pub name: String,
    pub is_admin: bool,
    pub missions: Vec<MissionId>,
}

impl AssignTarget {
    fn serves(&self, mission: &MissionId) -> bool {
        self.is_admin || self.missions.contains(mission)
    }
}

#[derive(Clone, Debug)]
pub enum TransferTarget {
    /// To this agent: in the conversation's mission if they serve it, else in their
    /// first mission.
    Agent(AssignTarget),
    /// Into this mission's queue.
    Mission(MissionId),
}

/// A workflow transition.
#[derive(Clone, Debug)]
pub enum Action {
    /// Give the conversation to an agent. With `claim`, only if nobody else holds it
    /// (compare-and-set: two agents never both hold a conversation).
    Assign {
        agent: AssignTarget,
        claim: bool,
    },
    /// Auto-assignment: only if the conversation is still waiting.
    AutoAssign {
        agent: AgentId,
        load: i64,
    },
    Transfer(TransferTarget),
    Resolve,
    Reopen,
    SetPriority(Priority),
    Labels {
        add: Vec<String>,
        remove: Vec<String>,
    },
    /// The hotline or an agent takes the escalation (compare-and-set on its state).
    AckEscalation {
        escalation: EscalationId,
        by: String,
    },
    /// Not acknowledged in time: alert again, the default mission too.
    Reescalate {
        escalation: EscalationId,
    },
}

#[derive(Clone, Debug)]
pub struct Change {
    pub conversation_id: ConversationId,
    pub access: Access,
    pub actor: Actor,
    pub action: Action,
}

#[derive(Clone, Debug)]
pub enum Request {
    Message(Draft),
    Change(Change),
    Start(Start),
    Sos(Sos),
}

impl Request {
    fn conversation_id(&self) -> Option<ConversationId> {
        match self {
            Request::Message(Draft {
                target: Target::Id(id),
                ..
            }) => Some(*id),
            Request::Change(c) => Some(c.conversation_id),
            Request::Sos(s) => Some(s.conversation_id),
            _ => None,
        }
    }

    /// Requests that may create, change or close an escalation.
    fn touches_escalation(&self) -> bool {
        match self {
            Request::Message(d) => d.escalate.is_some(),
            Request::Sos(_) => true,
            Request::Change(c) => matches!(
                c.action,
                Action::Resolve | Action::AckEscalation { .. } | Action::Reescalate { .. }
            ),
            Request::Start(_) => false,
        }
    }

    fn starting_citizen(&self) -> Option<CitizenId> {
        match self {
            Request::Message(Draft {
                target: Target::OpenOf(s),
                ..
            })
            | Request::Start(s) => Some(s.citizen.id),
            _ => None,
        }
    }

    fn dedup_key(&self) -> Option<(PersonId, ClientMsgId)> {
        match self {
            Request::Message(d) => Some((d.sender.id?, d.client_msg_id.clone()?)),
            _ => None,
        }
    }
}

/// What the store must read, inside the transaction, before planning.
#[derive(Clone, Debug, Default)]
pub struct Load {
    /// Messages stored under these (sender, client_msg_id) keys.
    pub dedup_keys: Vec<(PersonId, ClientMsgId)>,
    /// These conversations, plus those of any message found by `dedup_keys`.
    pub conversations: Vec<ConversationId>,
    /// The newest unresolved conversation of each of these citizens.
    pub open_of: Vec<CitizenId>,
    /// The open escalation of each of these conversations.
    pub escalations_for: Vec<ConversationId>,
}

impl Load {
    pub fn for_requests(requests: &[Request]) -> Load {
        let mut dedup_keys: Vec<_> = requests.iter().filter_map(Request::dedup_key).collect();
        dedup_keys.sort();
        dedup_keys.dedup();
        let mut conversations: Vec<_> = requests
            .iter()
            .filter_map(Request::conversation_id)
            .collect();
        conversations.sort();
        conversations.dedup();
        let mut open_of: Vec<_> = requests
            .iter()
            .filter_map(Request::starting_citizen)
            .collect();
        open_of.sort();
        open_of.dedup();
        let mut escalations_for: Vec<_> = requests
            .iter()
            .filter(|r| r.touches_escalation())
            .filter_map(Request::conversation_id)
            .collect();
        escalations_for.sort();
        escalations_for.dedup();
        Load {
            dedup_keys,
            conversations,
            open_of,
            escalations_for,
        }
    }
}

/// What the store read.
#[derive(Clone, Debug, Default)]
pub struct Loaded {
    pub existing: HashMap<(PersonId, ClientMsgId), Message>,
    /// Every conversation read, including the open ones of `open_of`.
    pub conversations: HashMap<ConversationId, Conversation>,
    /// The open conversation of each citizen of `open_of` that has one.
    pub open: HashMap<CitizenId, ConversationId>,
    /// The open escalations of `escalations_for`, by conversation.
    pub escalations: HashMap<ConversationId, Escalation>,
}

/// What the store writes, all in one transaction.
#[derive(Clone, Debug, Default)]
pub struct Writes {
    /// Conversations to insert (before the messages).
    pub new_conversations: Vec<Conversation>,
    /// New messages, in order (their attachments are linked to them).
    pub messages: Vec<Message>,
    /// The final state of every conversation the batch changed.
    pub conversations: Vec<Conversation>,
    pub audit: Vec<AuditEntry>,
    /// Deliveries to the outside, sent by the outbox worker after the commit.
    pub outbox: Vec<NewOutboxRow>,
    /// Escalations created or changed (their final state).
    pub escalations: Vec<Escalation>,
}

impl Writes {
    pub fn is_empty(&self) -> bool {
        self.new_conversations.is_empty()
            && self.messages.is_empty()
            && self.conversations.is_empty()
            && self.audit.is_empty()
            && self.outbox.is_empty()
            && self.escalations.is_empty()
    }
}

/// What one request did.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// The conversation after the request.
    pub conversation: Conversation,
    /// The stored message (for a resend: the original one).
    pub message: Option<Message>,
    /// A resend of an already stored message.
    pub duplicate: bool,
    /// The request changed something (a resolve of a resolved conversation does not).
    pub changed: bool,
    /// A citizen's message reopened the conversation.
    pub reopened: bool,
    /// The conversation's escalation, when the request created or changed it.
    pub escalation: Option<Escalation>,
    /// What the citizen was told to do (emergency or anti-fraud guidance).
    pub guidance: Option<String>,
    /// Published after the commit, in order.
    pub events: Vec<Event>,
}

#[derive(Debug, Default)]
pub struct Plan {
    pub writes: Writes,
    pub outcomes: Vec<AppResult<Outcome>>,
    /// Missions whose queue gained a waiting conversation or an agent with room.
    pub wake: Vec<MissionId>,
}

/// The transfer notice the citizen sees, in both languages.
pub fn transfer_notice(mission_name: &str) -> String {
    format!("Transferred to the {mission_name}. 已转至{mission_name}。")
}

/// Plan a batch. Requests are applied in order against the loaded state, so a later
/// request sees what an earlier one of the same batch did.
pub fn plan(requests: &[Request], loaded: Loaded, config: &Config, now: Timestamp) -> Plan {
    let Loaded {
        existing,
        mut conversations,
        mut open,
        escalations,
    } = loaded;
    let mut p = Planner {
        plan: Plan::default(),
        touched: Vec::new(),
        earlier: HashMap::new(),
        escalations,
        touched_escalations: Vec::new(),
        config,
        now,
    };
    for r in requests {
        let outcome = match r {
            Request::Message(d) => p.message(d, &existing, &mut conversations, &mut open),
            Request::Start(s) => Ok(p.start(s, &mut conversations, &mut open).1),
            Request::Change(c) => match conversations.get_mut(&c.conversation_id) {
                None => Err(AppError::not_found("conversation")),
                Some(conv) if !c.access.allows(conv) => {
                    Err(AppError::forbidden("this conversation is not yours"))
                }
                Some(conv) => p.change(c, conv),
            },
            Request::Sos(s) => p.sos(s, &existing, &mut conversations, &mut open),
        };
        if let Ok(o) = &outcome {
            for e in &o.events {
                p.plan.writes.outbox.extend(rows_for_event(config, e, now));
            }
        }
        p.plan.outcomes.push(outcome);
    }
    for id in &p.touched {
        if let Some(c) = conversations.get(id) {
            p.plan.writes.conversations.push(c.clone());
        }
    }
    for id in &p.touched_escalations {
        if let Some(e) = p.escalations.values().find(|e| e.id == *id) {
            p.plan.writes.escalations.push(e.clone());
        }
    }
    p.plan.wake.sort();
    p.plan.wake.dedup();
    p.plan
}

struct Planner<'a> {
    plan: Plan,
    touched: Vec<ConversationId>,
    /// Keys stored earlier in this batch (a quick resend), by position in `outcomes`.
    earlier: HashMap<(PersonId, ClientMsgId), usize>,
    /// Open escalations by conversation (as loaded, then as this batch changes them).
    escalations: HashMap<ConversationId, Escalation>,
    touched_escalations: Vec<EscalationId>,
    config: &'a Config,
    now: Timestamp,
}

impl Planner<'_> {
    fn touch(&mut self, id: ConversationId) {
        if !self.touched.contains(&id) {
            self.touched.push(id);
        }
    }

    fn mission_name(&self, id: &MissionId) -> String {
        self.config
            .mission(id.as_str())
            .map(|m| m.name.clone())
            .unwrap_or_else(|| id.to_string())
    }

    /// The citizen's open conversation, or a new one. `.0` tells whether it was created.
    fn start(
        &mut self,
        s: &Start,
        convs: &mut HashMap<ConversationId, Conversation>,
        open: &mut HashMap<CitizenId, ConversationId>,
    ) -> (ConversationId, Outcome) {
        if let Some(c) = open.get(&s.citizen.id).and_then(|id| convs.get(id)) {
            if c.status != Status::Resolved {
                return (c.id, self.unchanged(c));
            }
        }
        let c = Conversation {
            id: ConversationId::new(),
            mission_id: s.mission.clone(),
            citizen: s.citizen.clone(),
            channel: s.channel,
            status: Status::Open,
            priority: Priority::Normal,
            assignee_id: None,
            last_seq: 0,
            labels: vec![],
            created_at: self.now,
            updated_at: self.now,
        };
        open.insert(s.citizen.id, c.id);
        convs.insert(c.id, c.clone());
        self.plan.writes.new_conversations.push(c.clone());
        self.plan.wake.push(c.mission_id.clone());
        let id = c.id;
        (
            id,
            Outcome {
                events: vec![Event::Conversation {
                    kind: ConversationEvent::Created,
                    conversation: c.clone(),
                    previous: None,
                }],
                conversation: c,
                message: None,
                duplicate: false,
                changed: true,
                reopened: false,
                escalation: None,
                guidance: None,
            },
        )
    }

    fn message(
        &mut self,
        d: &Draft,
        existing: &HashMap<(PersonId, ClientMsgId), Message>,
        convs: &mut HashMap<ConversationId, Conversation>,
        open: &mut HashMap<CitizenId, ConversationId>,
    ) -> AppResult<Outcome> {
        let key = d.sender.id.zip(d.client_msg_id.clone());
        if let Some(key) = &key {
            let prior = existing.get(key).cloned().or_else(|| {
                self.earlier
                    .get(key)
                    .and_then(|i| self.plan.outcomes[*i].as_ref().ok())
                    .and_then(|o| o.message.clone())
            });
            if let Some(original) = prior {
                let conversation = convs
                    .get(&original.conversation_id)
                    .cloned()
                    .ok_or_else(|| AppError::not_found("conversation"))?;
                return Ok(Outcome {
                    conversation,
                    message: Some(original),
                    duplicate: true,
                    changed: false,
                    reopened: false,
                    escalation: None,
                    guidance: None,
                    events: vec![],
                });
            }
        }
        let mut events = Vec::with_capacity(2);
        let conversation_id = match &d.target {
            Target::Id(id) => *id,
            Target::OpenOf(s) => {
                let (id, started) = self.start(s, convs, open);
                events.extend(started.events);
                id
            }
        };
        let conv = convs
            .get_mut(&conversation_id)
            .ok_or_else(|| AppError::not_found("conversation"))?;
        if !d.access.allows(conv) {
            return Err(AppError::forbidden("this conversation is not yours"));
        }
        let before = Route::from(&*conv);
        let reopened = d.reopen_if_resolved && conv.status == Status::Resolved;
        if reopened {
            // Back to the queue: auto-assignment picks an agent again.
            conv.status = Status::Open;
            conv.assignee_id = None;
        }
        conv.last_seq += 1;
        conv.updated_at = self.now;
        let message = Message {
            id: MessageId::new(),
            conversation_id: conv.id,
            seq: conv.last_seq,
            client_msg_id: d.client_msg_id.clone(),
            sender: d.sender.clone(),
            kind: d.kind,
            body: d.body.clone(),
            attachments: d.attachments.clone(),
            created_at: self.now,
            triage: d.triage.clone(),
        };
        events.push(Event::Message {
            message: message.clone(),
            route: Route::from(&*conv),
        });
        if reopened {
            events.push(Event::Conversation {
                kind: ConversationEvent::Reopened,
                conversation: conv.clone(),
                previous: Some(before),
            });
            self.plan.wake.push(conv.mission_id.clone());
        }
        self.plan.writes.messages.push(message.clone());
        // What the classifier found changes the conversation in the same commit.
        let (escalation, guidance) = self.after_citizen_message(d, conv, &message, &mut events);
        let conversation = conv.clone();
        self.touch(conversation.id);
        if let Some(key) = key {
            self.earlier.insert(key, self.plan.outcomes.len());
        }
        Ok(Outcome {
            conversation,
            message: Some(message),
            duplicate: false,
            changed: true,
            reopened,
            escalation,
            guidance,
            events,
        })
    }

    fn change(&mut self, c: &Change, conv: &mut Conversation) -> AppResult<Outcome> {
        match &c.action {
            Action::AckEscalation { escalation, by } => {
                return self.ack_escalation(c, conv, *escalation, by)
            }
            Action::Reescalate { escalation } => return self.reescalate(c, conv, *escalation),
            _ => {}
        }
        let before = conv.clone();
        let mut extra_events: Vec<Event> = Vec::new();
        let mut system_notice = None;
        let (kind, action, details) = match &c.action {
            Action::Assign { agent, claim } => {
                if !agent.serves(&conv.mission_id) {
                    return Err(AppError::invalid(format!(
                        "agent {} does not serve mission {}; transfer the conversation instead",
                        agent.name, conv.mission_id
                    )));
                }
                if *claim && conv.assignee_id.is_some_and(|a| a != agent.id) {
                    return Err(AppError::Conflict(
                        "another agent holds this conversation already".into(),
                    ));
                }
                if conv.status != Status::Resolved {
                    conv.status = Status::Assigned;
                }
                conv.assignee_id = Some(agent.id);
                if before.assignee_id.is_some_and(|p| p != agent.id) {
                    // The previous assignee has room again.
                    self.plan.wake.push(conv.mission_id.clone());
                }
                (
                    ConversationEvent::Assigned,
                    "assign",
                    json!({"agent_id": agent.id, "previous_agent_id": before.assignee_id}),
                )
            }
            Action::AutoAssign { agent, load } => {
                if !conv.is_waiting() {
                    return Ok(self.unchanged(conv));
                }
                conv.status = Status::Assigned;
                conv.assignee_id = Some(*agent);
                (
                    ConversationEvent::Assigned,
                    "auto_assign",
                    json!({"agent_id": agent, "load": load}),
                )
            }
            Action::Transfer(target) => {
                let (mission, assignee) = match target {
                    TransferTarget::Agent(a) => {
                        let mission = if a.serves(&conv.mission_id) {
                            conv.mission_id.clone()
                        } else {
                            a.missions
                                .first()
                                .cloned()
                                .ok_or_else(|| AppError::invalid("that agent serves no mission"))?
                        };
                        (mission, Some(a.id))
                    }
                    TransferTarget::Mission(m) => (m.clone(), None),
                };
                conv.status = match (conv.status, assignee) {
                    (Status::Resolved, _) => Status::Resolved,
                    (_, Some(_)) => Status::Assigned,
                    (_, None) => Status::Open,
                };
                conv.assignee_id = assignee;
                conv.mission_id = mission.clone();
                if mission != before.mission_id {
                    system_notice = Some(transfer_notice(&self.mission_name(&mission)));
                    self.plan.wake.push(before.mission_id.clone());
                }
                self.plan.wake.push(mission.clone());
                (
                    ConversationEvent::Transferred,
                    "transfer",
                    json!({"from_mission": before.mission_id, "to_mission": mission,
                           "from_agent_id": before.assignee_id, "to_agent_id": assignee}),
                )
            }
            Action::Resolve => {
                if conv.status == Status::Resolved {
                    return Ok(self.unchanged(conv));
                }
                conv.status = Status::Resolved;
                self.plan.wake.push(conv.mission_id.clone());
                extra_events.extend(self.close_escalation(c, conv));
                (
                    ConversationEvent::Resolved,
                    "resolve",
                    json!({"agent_id": conv.assignee_id}),
                )
            }
            Action::Reopen => {
                if conv.status != Status::Resolved {
                    return Ok(self.unchanged(conv));
                }
                conv.status = Status::Open;
                conv.assignee_id = None;
                self.plan.wake.push(conv.mission_id.clone());
                (ConversationEvent::Reopened, "reopen", json!({}))
            }
            Action::SetPriority(p) => {
                if conv.priority == *p {
                    return Ok(self.unchanged(conv));
                }
                conv.priority = *p;
                (
                    ConversationEvent::PriorityChanged,
                    "priority_change",
                    json!({"from": before.priority, "to": p}),
                )
            }
            Action::AckEscalation { .. } | Action::Reescalate { .. } => {
                unreachable!("escalation actions return above")
            }
            Action::Labels { add, remove } => {
                let mut labels = conv.labels.clone();
                for l in add {
                    if !labels.contains(l) {
                        labels.push(l.clone());
                    }
                }
                labels.retain(|l| !remove.contains(l));
                if labels.len() > LABELS_MAX {
                    return Err(AppError::invalid(format!(
                        "at most {LABELS_MAX} labels per conversation"
                    )));
                }
                if labels == conv.labels {
                    return Ok(self.unchanged(conv));
                }
                conv.labels = labels;
                (
                    ConversationEvent::LabelsChanged,
                    "labels_change",
                    json!({"labels": conv.labels}),
                )
            }
        };
        conv.updated_at = self.now;
        let mut events = vec![Event::Conversation {
            kind,
            conversation: conv.clone(),
            previous: Some(Route::from(&before)).filter(|r| *r != Route::from(&*conv)),
        }];
        events.extend(extra_events);
        let mut message = None;
        if let Some(body) = system_notice {
            message = Some(self.post_system_message(conv, body, &mut events));
        }
        self.plan.writes.audit.push(AuditEntry {
            at: self.now,
            ..AuditEntry::new(c.actor, action, details)
                .target("conversation", conv.id)
                .mission(&conv.mission_id)
        });
        self.touch(conv.id);
        Ok(Outcome {
            conversation: conv.clone(),
            message,
            duplicate: false,
            changed: true,
            reopened: kind == ConversationEvent::Reopened,
            escalation: None,
            guidance: None,
            events,
        })
    }

    fn unchanged(&self, conv: &Conversation) -> Outcome {
        Outcome {
            conversation: conv.clone(),
            message: None,
            duplicate: false,
            changed: false,
            reopened: false,
            escalation: None,
            guidance: None,
            events: vec![],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        let mut c = Config::default();
        c.missions.push(crate::config::Mission {
            id: "be".into(),
            name: "Embassy in Belgium".into(),
            countries: vec!["BE".into()],
            ..Default::default()
        });
        c
    }

    fn conv(mission: &str) -> Conversation {
        Conversation {
            id: ConversationId::new(),
            mission_id: MissionId::new(mission),
            citizen: CitizenRef {
                id: CitizenId::new(),
                display_name: "张三".into(),
                country: None,
            },
            channel: Channel::App,
            status: Status::Open,
            priority: Priority::Normal,
            assignee_id: None,
            last_seq: 0,
            labels: vec![],
            created_at: now(),
            updated_at: now(),
        }
    }

    fn draft(c: &Conversation, cmid: &str, body: &str) -> Request {
        Request::Message(Draft {
            target: Target::Id(c.id),
            client_msg_id: Some(ClientMsgId::from_stored(cmid.into())),
            sender: Sender {
                kind: SenderKind::Citizen,
                id: Some(c.citizen.id.into()),
                display_name: c.citizen.display_name.clone(),
            },
            kind: MessageKind::Text,
            body: body.into(),
            attachments: vec![],
            access: Access::Citizen(c.citizen.id),
            reopen_if_resolved: true,
            triage: None,
            escalate: None,
            locale: None,
        })
    }

    fn loaded(convs: &[&Conversation]) -> Loaded {
        Loaded {
            existing: HashMap::new(),
            conversations: convs.iter().map(|c| (c.id, (*c).clone())).collect(),
            open: HashMap::new(),
            escalations: HashMap::new(),
        }
    }

    fn agent(mission: &str) -> AssignTarget {
        AssignTarget {
            id: AgentId::new(),
            name: "Li".into(),
            is_admin: false,
            missions: vec![MissionId::new(mission)],
        }
    }

    fn change(c: &Conversation, action: Action) -> Request {
        Request::Change(Change {
            conversation_id: c.id,
            access: Access::All,
            actor: Actor::System,
            action,
        })
    }

    #[test]
    fn numbers_messages_without_gaps_and_dedups_within_the_batch() {
        let c = conv("be");
        let reqs = vec![
            draft(&c, "a", "one"),
            draft(&c, "b", "two"),
            draft(&c, "a", "resend"),
        ];
        let p = plan(&reqs, loaded(&[&c]), &config(), now());
        let seqs: Vec<i64> = p.writes.messages.iter().map(|m| m.seq).collect();
        assert_eq!(seqs, vec![1, 2]);
        let third = p.outcomes[2].as_ref().unwrap();
        assert!(third.duplicate);
        assert_eq!(third.message.as_ref().unwrap().body, "one");
        assert!(third.events.is_empty());
        assert_eq!(p.writes.conversations.len(), 1);
        assert_eq!(p.writes.conversations[0].last_seq, 2);
    }

    #[test]
    fn a_stored_message_answers_a_resend() {
        let c = conv("be");
        let mut l = loaded(&[&c]);
        let original = Message {
            id: MessageId::new(),
            conversation_id: c.id,
            seq: 7,
            client_msg_id: Some(ClientMsgId::from_stored("a".into())),
            sender: Sender {
                kind: SenderKind::Citizen,
                id: Some(c.citizen.id.into()),
                display_name: "x".into(),
            },
            kind: MessageKind::Text,
            body: "first".into(),
            attachments: vec![],
            created_at: now(),
            triage: None,
        };
        l.existing.insert(
            (c.citizen.id.into(), ClientMsgId::from_stored("a".into())),
            original.clone(),
        );
        let p = plan(&[draft(&c, "a", "again")], l, &config(), now());
        let o = p.outcomes[0].as_ref().unwrap();
        assert!(o.duplicate);
        assert_eq!(o.message.as_ref().unwrap().seq, 7);
        assert!(p.writes.is_empty());
    }

    #[test]
    fn access_is_checked_against_the_loaded_conversation() {
        let c = conv("be");
        let mut r = draft(&c, "a", "hi");
        if let Request::Message(d) = &mut r {
            d.access = Access::Agent {
                id: AgentId::new(),
                missions: vec![MissionId::new("et")],
            };
        }
        let p = plan(&[r], loaded(&[&c]), &config(), now());
        assert!(matches!(p.outcomes[0], Err(AppError::Forbidden(_))));
        assert!(p.writes.is_empty());
        let missing = plan(&[draft(&c, "a", "hi")], Loaded::default(), &config(), now());
        assert!(matches!(missing.outcomes[0], Err(AppError::NotFound(_))));
    }

    #[test]
    fn a_citizen_reopens_a_resolved_conversation() {
        let mut c = conv("be");
        c.status = Status::Resolved;
        c.assignee_id = Some(AgentId::new());
        let p = plan(&[draft(&c, "a", "again")], loaded(&[&c]), &config(), now());
        let o = p.outcomes[0].as_ref().unwrap();
        assert!(o.reopened);
        assert_eq!(o.conversation.status, Status::Open);
        assert_eq!(o.conversation.assignee_id, None);
        assert_eq!(o.events.len(), 2);
        assert_eq!(p.wake, vec![MissionId::new("be")]);
    }

    #[test]
    fn a_claim_is_compare_and_set() {
        let c = conv("be");
        let (a, b) = (agent("be"), agent("be"));
        let reqs = vec![
            change(
                &c,
                Action::Assign {
                    agent: a.clone(),
                    claim: true,
                },
            ),
            change(
                &c,
                Action::Assign {
                    agent: b,
                    claim: true,
                },
            ),
            change(
                &c,
                Action::Assign {
                    agent: a.clone(),
                    claim: true,
                },
            ),
        ];
        let p = plan(&reqs, loaded(&[&c]), &config(), now());
        assert_eq!(
            p.outcomes[0].as_ref().unwrap().conversation.assignee_id,
            Some(a.id)
        );
        assert!(matches!(p.outcomes[1], Err(AppError::Conflict(_))));
        assert!(p.outcomes[2].is_ok(), "claiming one's own is fine");
        assert_eq!(p.writes.audit.len(), 2);
    }

    #[test]
    fn auto_assignment_only_takes_waiting_conversations() {
        let mut c = conv("be");
        let manual = agent("be");
        let reqs = vec![
            change(
                &c,
                Action::Assign {
                    agent: manual.clone(),
                    claim: false,
                },
            ),
            change(
                &c,
                Action::AutoAssign {
                    agent: AgentId::new(),
                    load: 0,
                },
            ),
        ];
        let p = plan(&reqs, loaded(&[&c]), &config(), now());
        let auto = p.outcomes[1].as_ref().unwrap();
        assert!(!auto.changed);
        assert_eq!(auto.conversation.assignee_id, Some(manual.id));
        c.status = Status::Resolved;
        let p = plan(
            &[change(
                &c,
                Action::AutoAssign {
                    agent: AgentId::new(),
                    load: 0,
                },
            )],
            loaded(&[&c]),
            &config(),
            now(),
        );
        assert!(!p.outcomes[0].as_ref().unwrap().changed);
    }

    #[test]
    fn a_transfer_to_another_mission_posts_a_notice_and_moves_visibility() {
        let c = conv("mfa");
        let p = plan(
            &[change(
                &c,
                Action::Transfer(TransferTarget::Mission(MissionId::new("be"))),
            )],
            loaded(&[&c]),
            &config(),
            now(),
        );
        let o = p.outcomes[0].as_ref().unwrap();
        assert_eq!(o.conversation.mission_id, MissionId::new("be"));
        assert_eq!(o.conversation.last_seq, 1);
        let notice = o.message.as_ref().unwrap();
        assert_eq!(notice.kind, MessageKind::System);
        assert!(notice.body.contains("Embassy in Belgium"));
        match &o.events[0] {
            Event::Conversation { previous, .. } => {
                assert_eq!(previous.as_ref().unwrap().mission, MissionId::new("mfa"))
            }
            e => panic!("unexpected {e:?}"),
        }
        assert_eq!(p.wake, vec![MissionId::new("be"), MissionId::new("mfa")]);
    }

    #[test]
    fn no_op_changes_write_nothing() {
        let c = conv("be");
        let reqs = vec![
            change(&c, Action::Reopen),
            change(&c, Action::SetPriority(Priority::Normal)),
            change(
                &c,
                Action::Labels {
                    add: vec![],
                    remove: vec!["x".into()],
                },
            ),
        ];
        let p = plan(&reqs, loaded(&[&c]), &config(), now());
        assert!(p.writes.is_empty());
        assert!(p.outcomes.iter().all(|o| !o.as_ref().unwrap().changed));
    }

    #[test]
    fn a_first_message_starts_the_conversation_in_the_same_batch() {
        let c = conv("be");
        let start = Start {
            citizen: c.citizen.clone(),
            mission: MissionId::new("be"),
            channel: Channel::Web,
        };
        let first = |cmid: &str| {
            let mut r = draft(&c, cmid, "hello");
            if let Request::Message(d) = &mut r {
                d.target = Target::OpenOf(start.clone());
            }
            r
        };
        let p = plan(
            &[first("a"), first("b")],
            Loaded::default(),
            &config(),
            now(),
        );
        assert_eq!(p.writes.new_conversations.len(), 1);
        let a = p.outcomes[0].as_ref().unwrap();
        let b = p.outcomes[1].as_ref().unwrap();
        assert_eq!(a.conversation.id, b.conversation.id);
        assert_eq!(a.conversation.channel, Channel::Web);
        assert_eq!(b.message.as_ref().unwrap().seq, 2);
        assert!(matches!(
            a.events[0],
            Event::Conversation {
                kind: ConversationEvent::Created,
                ..
            }
        ));
        assert_eq!(p.wake, vec![MissionId::new("be")]);
        // A citizen with an open conversation keeps it.
        let mut l = loaded(&[&c]);
        l.open.insert(c.citizen.id, c.id);
        let p = plan(&[Request::Start(start.clone())], l, &config(), now());
        assert!(!p.outcomes[0].as_ref().unwrap().changed);
        assert!(p.writes.new_conversations.is_empty());
    }

    #[test]
    fn labels_are_capped() {
        let c = conv("be");
        let add: Vec<String> = (0..21).map(|i| format!("l{i}")).collect();
        let p = plan(
            &[change(
                &c,
                Action::Labels {
                    add,
                    remove: vec![],
                },
            )],
            loaded(&[&c]),
            &config(),
            now(),
        );
        assert!(matches!(p.outcomes[0], Err(AppError::InvalidInput(_))));
    }

    #[test]
    fn notes_are_staff_only_events() {
        let c = conv("be");
        let mut r = draft(&c, "n", "internal");
        if let Request::Message(d) = &mut r {
            d.kind = MessageKind::Note;
            d.reopen_if_resolved = false;
        }
        let p = plan(&[r], loaded(&[&c]), &config(), now());
        let ev = &p.outcomes[0].as_ref().unwrap().events[0];
        assert!(!ev.audience().citizen);
        assert!(ev.audience().staff);
    }
}
