//! Typed events: everything the domain announces after a change commits. The domain
//! hands them to a [`Publisher`]; the hub (and, across nodes, a message bus) carries
//! them to the connections that may see them. Who may see what is decided here, by
//! the event itself ([`Event::audience`]), and rendered into the wire format in one
//! place (`crate::wire`).

use serde::{Deserialize, Serialize};

use super::model::{Article, Conversation, Escalation, Message};
use super::types::*;

/// Where an event about a conversation may go: its citizen, its mission's staff, its
/// assignee. Taken from the conversation's state when the event is made, so
/// visibility moves with a transfer.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Route {
    pub citizen: CitizenId,
    pub mission: MissionId,
    pub assignee: Option<AgentId>,
    /// Where the citizen is (a messenger bridge follows its own conversations).
    pub channel: Channel,
}

impl From<&Conversation> for Route {
    fn from(c: &Conversation) -> Self {
        Route {
            citizen: c.citizen.id,
            mission: c.mission_id.clone(),
            assignee: c.assignee_id,
            channel: c.channel,
        }
    }
}

/// The person behind a typing, read or viewing event, as others see them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct UserRef {
    pub id: PersonId,
    /// `citizen` or `agent`.
    pub kind: String,
    /// `citizen`, `agent`, `editor` or `admin`.
    pub role: String,
    pub display_name: String,
}

/// What happened to a conversation (the contract's `conversation` frame `event`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConversationEvent {
    Created,
    Assigned,
    Transferred,
    Resolved,
    Reopened,
    PriorityChanged,
    LabelsChanged,
}

impl ConversationEvent {
    pub fn as_str(self) -> &'static str {
        match self {
            ConversationEvent::Created => "created",
            ConversationEvent::Assigned => "assigned",
            ConversationEvent::Transferred => "transferred",
            ConversationEvent::Resolved => "resolved",
            ConversationEvent::Reopened => "reopened",
            ConversationEvent::PriorityChanged => "priority_changed",
            ConversationEvent::LabelsChanged => "labels_changed",
        }
    }

    /// Internal workflow events the citizen is not told about.
    pub fn staff_only(self) -> bool {
        matches!(self, ConversationEvent::LabelsChanged)
    }
}

/// What happened to an escalation (the `event` of an `escalation` frame).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EscalationEvent {
    Created,
    Updated,
    Delivered,
    Acknowledged,
    Reescalated,
    Resolved,
}

impl EscalationEvent {
    pub fn as_str(self) -> &'static str {
        match self {
            EscalationEvent::Created => "created",
            EscalationEvent::Updated => "updated",
            EscalationEvent::Delivered => "delivered",
            EscalationEvent::Acknowledged => "acknowledged",
            EscalationEvent::Reescalated => "reescalated",
            EscalationEvent::Resolved => "resolved",
        }
    }
}

/// A knowledge-base article suggested to staff for a citizen's message.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Suggestion {
    pub id: String,
    pub slug: String,
    pub title: String,
    pub snippet: String,
    pub category: String,
    pub locale: String,
    pub countries: Vec<String>,
    pub score: f32,
}

/// Everything that is published.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// A message was committed.
    Message { message: Message, route: Route },
    /// A citizen edited a message (in a messenger); `message` carries the new body.
    MessageUpdated {
        message: Message,
        route: Route,
        edited_at: Timestamp,
    },
    /// A conversation changed; `previous` is where it was routed before (a transfer),
    /// so the staff who lose it hear about it too.
    Conversation {
        kind: ConversationEvent,
        conversation: Conversation,
        previous: Option<Route>,
    },
    /// Someone is typing (not sent back to them).
    Typing {
        route: Route,
        conversation_id: ConversationId,
        user: UserRef,
        active: bool,
    },
    /// Someone read up to `seq` (not sent back to them).
    Read {
        route: Route,
        conversation_id: ConversationId,
        user: UserRef,
        seq: i64,
    },
    /// A staff member has the conversation open, or closed it (staff only).
    Viewing {
        route: Route,
        conversation_id: ConversationId,
        user: UserRef,
        active: bool,
    },
    /// An agent's presence changed (their missions' staff).
    Presence {
        agent_id: AgentId,
        name: String,
        missions: Vec<MissionId>,
        status: Presence,
    },
    /// Knowledge-base articles for a citizen's message (staff).
    Suggestions {
        route: Route,
        conversation_id: ConversationId,
        message_id: MessageId,
        seq: i64,
        articles: Vec<Suggestion>,
    },
    /// A session was revoked: its sockets close with 4401 on every node.
    SessionRevoked { session: String },
    /// An escalation changed: every staff socket of these missions (and admins).
    Escalation {
        kind: EscalationEvent,
        escalation: Escalation,
        missions: Vec<MissionId>,
    },
    /// A safety alert was published: citizens of these countries (all citizens when
    /// empty and `everyone`), and these citizens whose last location is in its area.
    Alert {
        article: Box<Article>,
        countries: Vec<CountryCode>,
        everyone: bool,
        citizens: Vec<CitizenId>,
    },
}

/// Who an event goes to, decided by the event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Audience {
    /// The conversation's mission staff, its assignee and admins.
    pub staff: bool,
    /// The conversation's citizen.
    pub citizen: bool,
}

impl Event {
    pub fn audience(&self) -> Audience {
        let (staff, citizen) = match self {
            Event::Message { message, .. } => (true, message.kind.citizen_may_see()),
            // The citizen made the edit in their messenger; staff need to see it.
            Event::MessageUpdated { .. } => (true, false),
            Event::Conversation { kind, .. } => (true, !kind.staff_only()),
            Event::Typing { .. } | Event::Read { .. } => (true, true),
            Event::Viewing { .. }
            | Event::Presence { .. }
            | Event::Suggestions { .. }
            | Event::Escalation { .. } => (true, false),
            Event::Alert { .. } => (false, true),
            Event::SessionRevoked { .. } => (false, false),
        };
        Audience { staff, citizen }
    }

    /// The person who caused the event and must not get it back.
    pub fn author(&self) -> Option<PersonId> {
        match self {
            Event::Typing { user, .. } | Event::Read { user, .. } | Event::Viewing { user, .. } => {
                Some(user.id)
            }
            _ => None,
        }
    }

    /// The routes of the conversation(s) the event is about.
    pub fn routes(&self) -> Vec<Route> {
        match self {
            Event::Message { route, .. }
            | Event::MessageUpdated { route, .. }
            | Event::Typing { route, .. }
            | Event::Read { route, .. }
            | Event::Viewing { route, .. }
            | Event::Suggestions { route, .. } => vec![route.clone()],
            Event::Conversation {
                conversation,
                previous,
                ..
            } => {
                let mut r: Vec<Route> = previous.iter().cloned().collect();
                r.push(Route::from(conversation));
                r
            }
            Event::Presence { .. }
            | Event::SessionRevoked { .. }
            | Event::Escalation { .. }
            | Event::Alert { .. } => vec![],
        }
    }

    /// Staff of these missions get the event whatever conversation it is about.
    pub fn missions(&self) -> &[MissionId] {
        match self {
            Event::Presence { missions, .. } | Event::Escalation { missions, .. } => missions,
            _ => &[],
        }
    }
}

/// The seam between the domain and whatever carries events to connections: the
/// in-process hub, and a message bus when several nodes run. Publishing never blocks.
pub trait Publisher: Send + Sync {
    fn publish(&self, event: Event);
}

/// How many sockets an agent has open (across every node): an agent with none is
/// offline, whatever they chose.
pub trait Connections: Send + Sync {
    fn agent_sockets(&self, agent: AgentId) -> u32;
}

/// Looks at every event on its way to the publisher: a bridge's in-process wake-up
/// signal. Runs on the writer's publishing task, so it must be cheap and never block.
pub trait Observer: Send + Sync {
    fn observe(&self, event: &Event);
}

/// A publisher with observers in front of it (no copy of the event is made).
pub struct Observed {
    pub observers: Vec<std::sync::Arc<dyn Observer>>,
    pub publisher: std::sync::Arc<dyn Publisher>,
}

impl Publisher for Observed {
    fn publish(&self, event: Event) {
        for o in &self.observers {
            o.observe(&event);
        }
        self.publisher.publish(event);
    }
}

/// Neither publishes nor counts: for a command-line process with no sockets.
pub struct Offline;

impl Publisher for Offline {
    fn publish(&self, _: Event) {}
}

impl Connections for Offline {
    fn agent_sockets(&self, _: AgentId) -> u32 {
        0
    }
}
