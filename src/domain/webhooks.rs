//! Which domain events other systems subscribe to, and the outbox rows they produce.
//! The planner calls this for every event of a commit, so the rows are written in the
//! same transaction as the change.

use serde::{Deserialize, Serialize};

use super::events::Event;
use super::model::{Conversation, Escalation, Message, NewOutboxRow};
use super::types::*;
use crate::config::Config;

/// What an outbox row carries.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum OutboxPayload {
    /// A domain event for a webhook subscriber.
    Event { event: Box<Event> },
    /// An escalation for the 12308 hotline, with what the operator needs to act.
    Hotline {
        escalation: Box<Escalation>,
        conversation: Box<Conversation>,
        last_messages: Vec<Message>,
        location: Option<GeoPoint>,
    },
}

/// Where escalations go.
pub const HOTLINE: &str = "hotline";

/// The hotline row for an escalation event (`escalation.created`, `.updated`,
/// `.reescalated`); `None` when no hotline is configured.
pub fn hotline_row(
    config: &Config,
    event_type: &str,
    escalation: &Escalation,
    conversation: &Conversation,
    last_messages: Vec<Message>,
    now: Timestamp,
) -> Option<NewOutboxRow> {
    if config.hotline.url.is_empty() {
        return None;
    }
    Some(NewOutboxRow {
        id: OutboxId::new(),
        destination: HOTLINE.into(),
        event_type: event_type.into(),
        payload: serde_json::to_value(OutboxPayload::Hotline {
            escalation: Box::new(escalation.clone()),
            conversation: Box::new(conversation.clone()),
            location: escalation.location,
            last_messages,
        })
        .expect("escalations serialise"),
        created_at: now,
        subject: Some(escalation.id.to_string()),
    })
}

/// The webhook event type of a domain event, for those webhooks may subscribe to.
pub fn webhook_event_type(e: &Event) -> Option<String> {
    match e {
        Event::Message { .. } => Some("message.created".into()),
        Event::Conversation { kind, .. } => Some(format!("conversation.{}", kind.as_str())),
        _ => None,
    }
}

/// The outbox rows an event produces for the configured webhooks.
pub fn rows_for_event(config: &Config, e: &Event, now: Timestamp) -> Vec<NewOutboxRow> {
    if config.webhooks.is_empty() {
        return vec![];
    }
    let Some(ty) = webhook_event_type(e) else {
        return vec![];
    };
    config
        .webhooks
        .iter()
        .filter(|w| w.events.iter().any(|x| x == "*" || *x == ty))
        .map(|w| NewOutboxRow {
            id: OutboxId::new(),
            destination: format!("webhook:{}", w.name),
            event_type: ty.clone(),
            payload: serde_json::to_value(OutboxPayload::Event {
                event: Box::new(e.clone()),
            })
            .expect("events serialise"),
            created_at: now,
            subject: None,
        })
        .collect()
}
