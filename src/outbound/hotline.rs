//! Delivery of escalations to the 12308 hotline: a Standard Webhooks–signed POST of
//! `{"type", "escalation", "conversation", "last_messages", "location"?}` (the contract's
//! "Hotline webhook"). The body is rendered from the outbox row alone, so every retry
//! sends the same bytes under the same `webhook-id`.

use std::time::Duration;

use async_trait::async_trait;
use serde_json::json;

use super::webhooks::post_signed;
use crate::config::{signing_key, Config};
use crate::domain::model::OutboxRow;
use crate::domain::outbox::{Courier, Delivery};
use crate::domain::webhooks::OutboxPayload;
use crate::wire::{ConversationView, EscalationView, MessageView};

/// The hotline's endpoint and signing key.
pub struct HotlineCourier {
    http: reqwest::Client,
    url: String,
    key: Vec<u8>,
}

impl HotlineCourier {
    /// `None` when no hotline is configured.
    pub fn new(config: &Config, http: reqwest::Client) -> Option<Self> {
        if config.hotline.url.is_empty() {
            return None;
        }
        Some(HotlineCourier {
            http,
            url: config.hotline.url.clone(),
            key: signing_key(&config.hotline.secret)?,
        })
    }
}

/// The hotline's body for a row.
pub fn hotline_body(row: &OutboxRow) -> Result<String, String> {
    let payload: OutboxPayload = serde_json::from_value(row.payload.clone())
        .map_err(|e| format!("unreadable payload: {e}"))?;
    let OutboxPayload::Hotline {
        escalation,
        conversation,
        last_messages,
        location,
    } = payload
    else {
        return Err("not a hotline row".into());
    };
    let mut body = json!({
        "type": row.event_type,
        "escalation": EscalationView::from(escalation.as_ref()),
        "conversation": ConversationView::staff(&conversation),
        "last_messages": last_messages.iter().map(MessageView::staff).collect::<Vec<_>>(),
    });
    if let Some(l) = location {
        body["location"] = json!(l);
    }
    Ok(body.to_string())
}

#[async_trait]
impl Courier for HotlineCourier {
    async fn deliver(&self, row: &OutboxRow) -> Delivery {
        match hotline_body(row) {
            Ok(body) => {
                post_signed(&self.http, &self.url, &self.key, &row.id.to_string(), body).await
            }
            Err(error) => Delivery::Retry {
                after: Some(Duration::from_secs(3600)),
                error,
            },
        }
    }
}
