//! A local fake of a webhook receiver (a case system, the 12308 hotline): it checks
//! every request's Standard Webhooks signature, records what arrived, and can be told to
//! be slow or down.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::Sha256;

/// The signing key tests use, and its `whsec_` form for the config.
pub const KEY: &[u8] = b"a test signing key of 32 bytes!!";

pub fn secret() -> String {
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(KEY)
    )
}

/// `v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`.
pub fn signature(key: &[u8], id: &str, timestamp: &str, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    mac.update(format!("{id}.{timestamp}.{body}").as_bytes());
    format!(
        "v1,{}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    )
}

/// Answer deliveries at once.
pub const UP: u8 = 0;
/// Hold each delivery for a while (so one is in flight when the server dies).
pub const SLOW: u8 = 1;
/// Refuse with 503 and `Retry-After: 1`.
pub const DOWN: u8 = 2;

#[derive(Clone, Default)]
pub struct Receiver {
    pub mode: Arc<AtomicU8>,
    /// (webhook-id, body) of every accepted request, in arrival order.
    pub requests: Arc<Mutex<Vec<(String, Value)>>>,
    /// Requests whose signature or headers were wrong.
    pub bad: Arc<Mutex<Vec<String>>>,
    /// Requests that arrived (accepted or not).
    pub started: Arc<AtomicUsize>,
}

impl Receiver {
    pub fn new(mode: u8) -> Receiver {
        let r = Receiver::default();
        r.mode.store(mode, Ordering::SeqCst);
        r
    }

    pub fn set(&self, mode: u8) {
        self.mode.store(mode, Ordering::SeqCst);
    }

    /// Accepted bodies, in arrival order.
    pub fn bodies(&self) -> Vec<(String, Value)> {
        self.requests.lock().unwrap().clone()
    }

    /// Start it on a free port; the receiving path is `/hook`.
    pub async fn start(&self) -> SocketAddr {
        let app = axum::Router::new()
            .route("/hook", axum::routing::post(receive))
            .with_state(self.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        addr
    }

    /// Wait until `pred` holds for the accepted bodies.
    pub async fn wait_for(
        &self,
        within: Duration,
        what: &str,
        pred: impl Fn(&[(String, Value)]) -> bool,
    ) {
        let deadline = std::time::Instant::now() + within;
        loop {
            if pred(&self.bodies()) {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "timed out waiting for {what}; received: {:#?}",
                self.bodies()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

async fn receive(
    axum::extract::State(r): axum::extract::State<Receiver>,
    headers: HeaderMap,
    body: String,
) -> axum::response::Response {
    r.started.fetch_add(1, Ordering::SeqCst);
    let h = |k: &str| {
        headers
            .get(k)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let (id, ts, sig) = (
        h("webhook-id"),
        h("webhook-timestamp"),
        h("webhook-signature"),
    );
    let fresh = ts
        .parse::<i64>()
        .is_ok_and(|t| (chrono::Utc::now().timestamp() - t).abs() < 300);
    if id.is_empty() || sig != signature(KEY, &id, &ts, &body) || !fresh {
        r.bad.lock().unwrap().push(format!("{id} {ts} {sig}"));
    }
    match r.mode.load(Ordering::SeqCst) {
        DOWN => {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                [("retry-after", "1")],
                "down",
            )
                .into_response()
        }
        SLOW => tokio::time::sleep(Duration::from_secs(3)).await,
        _ => {}
    }
    let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    r.requests.lock().unwrap().push((id, v));
    StatusCode::NO_CONTENT.into_response()
}
