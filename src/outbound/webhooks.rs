//! Webhook delivery with Standard Webhooks signatures: `webhook-id` (the outbox row id,
//! stable across retries), `webhook-timestamp` (Unix seconds of this attempt) and
//! `webhook-signature: v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`.

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;

use crate::config::{signing_key, Config};
use crate::domain::events::Event;
use crate::domain::model::OutboxRow;
use crate::domain::outbox::{Courier, Delivery};
use crate::domain::types::fmt_time;
use crate::domain::webhooks::OutboxPayload;
use crate::wire::{ConversationView, MessageView};

/// The `webhook-signature` value for a body.
pub fn sign(key: &[u8], id: &str, timestamp: i64, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(format!("{id}.{timestamp}.{body}").as_bytes());
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    )
}

struct Endpoint {
    url: String,
    key: Vec<u8>,
}

/// Delivers `webhook:<name>` rows to the configured endpoints.
pub struct WebhookCourier {
    http: reqwest::Client,
    endpoints: HashMap<String, Endpoint>,
}

impl WebhookCourier {
    pub fn new(config: &Config, http: reqwest::Client) -> anyhow::Result<Self> {
        let mut endpoints = HashMap::new();
        for w in &config.webhooks {
            let key = signing_key(&w.secret)
                .ok_or_else(|| anyhow::anyhow!("webhook {:?}: bad secret", w.name))?;
            endpoints.insert(
                format!("webhook:{}", w.name),
                Endpoint {
                    url: w.url.clone(),
                    key,
                },
            );
        }
        Ok(WebhookCourier { http, endpoints })
    }
}

/// The body of a webhook: the event in the contract's terms. Rendered from the row
/// alone, so every retry sends the same bytes.
pub fn webhook_body(row: &OutboxRow) -> Result<String, String> {
    let payload: OutboxPayload = serde_json::from_value(row.payload.clone())
        .map_err(|e| format!("unreadable payload: {e}"))?;
    let data = match &payload {
        OutboxPayload::Event { event } => match event.as_ref() {
            Event::Message { message, .. } => json!({"message": MessageView::staff(message)}),
            Event::Conversation { conversation, .. } => {
                json!({"conversation": ConversationView::staff(conversation)})
            }
            _ => return Err(format!("event {} is not sent to webhooks", row.event_type)),
        },
        OutboxPayload::Hotline { .. } => return Err("a hotline row is not a webhook".into()),
    };
    Ok(json!({
        "type": row.event_type,
        "timestamp": fmt_time(row.created_at),
        "data": data,
    })
    .to_string())
}

/// Parse `Retry-After` (seconds; an HTTP date is treated as "later", one minute).
fn retry_after(h: &reqwest::header::HeaderMap) -> Option<Duration> {
    let v = h.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?.trim();
    match v.parse::<u64>() {
        Ok(s) => Some(Duration::from_secs(s)),
        Err(_) => Some(Duration::from_secs(60)),
    }
}

/// POST a signed body; the result as the outbox sees it.
pub async fn post_signed(
    http: &reqwest::Client,
    url: &str,
    key: &[u8],
    id: &str,
    body: String,
) -> Delivery {
    let ts = chrono::Utc::now().timestamp();
    let signature = sign(key, id, ts, &body);
    let resp = http
        .post(url)
        .header("content-type", "application/json")
        .header("webhook-id", id)
        .header("webhook-timestamp", ts.to_string())
        .header("webhook-signature", signature)
        .body(body)
        .send()
        .await;
    match resp {
        Ok(r) if r.status().is_success() => Delivery::Delivered,
        Ok(r) => Delivery::Retry {
            after: retry_after(r.headers()),
            error: format!("HTTP {}", r.status().as_u16()),
        },
        Err(e) => Delivery::Retry {
            after: None,
            error: if e.is_timeout() {
                "timed out".into()
            } else if e.is_connect() {
                "cannot connect".into()
            } else {
                "request failed".into()
            },
        },
    }
}

#[async_trait]
impl Courier for WebhookCourier {
    async fn deliver(&self, row: &OutboxRow) -> Delivery {
        let Some(ep) = self.endpoints.get(&row.destination) else {
            return Delivery::Retry {
                after: Some(Duration::from_secs(600)),
                error: format!("no destination {:?} is configured", row.destination),
            };
        };
        let body = match webhook_body(row) {
            Ok(b) => b,
            Err(error) => {
                return Delivery::Retry {
                    after: Some(Duration::from_secs(3600)),
                    error,
                }
            }
        };
        post_signed(&self.http, &ep.url, &ep.key, &row.id.to_string(), body).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_follow_the_standard_webhooks_example() {
        // The example of the Standard Webhooks specification.
        let key = base64::engine::general_purpose::STANDARD
            .decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
            .unwrap();
        let sig = sign(
            &key,
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            r#"{"test": 2432232314}"#,
        );
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }
}
