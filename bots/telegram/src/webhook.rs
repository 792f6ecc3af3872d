//! `POST /v1/telegram/webhook`: Telegram delivers updates here in webhook mode. The
//! secret token Telegram was given (`setWebhook secret_token`) must come back in
//! `X-Telegram-Bot-Api-Secret-Token`; it is compared in constant time, and anything
//! else is answered 401 before the body is read. The update is handled before the
//! answer: 200 means its effect is done, 503 makes Telegram send it again.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use sha2::{Digest, Sha256};

use crate::{Bridge, Shared, WEBHOOK_PATH};

/// Largest update body accepted (updates are a few kilobytes).
const BODY_MAX: usize = 1024 * 1024;

/// The webhook route, to merge into the server's router.
pub fn router(bridge: &Bridge) -> Router {
    Router::new()
        .route(WEBHOOK_PATH, post(receive))
        .layer(axum::extract::DefaultBodyLimit::max(BODY_MAX))
        .with_state(bridge.shared())
}

/// Equal secrets, in time that depends on neither their contents nor their lengths
/// (both sides are hashed to 32 bytes first).
pub fn secret_matches(given: &[u8], expected: &[u8]) -> bool {
    if expected.is_empty() {
        return false;
    }
    let a = Sha256::digest(given);
    let b = Sha256::digest(expected);
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        axum::Json(serde_json::json!({"error": {"code": code, "message": message}})),
    )
        .into_response()
}

async fn receive(State(shared): State<Arc<Shared>>, headers: HeaderMap, body: Bytes) -> Response {
    let given = headers
        .get("x-telegram-bot-api-secret-token")
        .map(|v| v.as_bytes())
        .unwrap_or_default();
    if !secret_matches(given, shared.settings.secret_token.as_bytes()) {
        return error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "missing or wrong X-Telegram-Bot-Api-Secret-Token",
        );
    }
    let update: teloxide::types::Update = match serde_json::from_slice(&body) {
        Ok(u) => u,
        Err(e) => {
            // Telegram would send it again and again; there is nothing to do with it.
            tracing::warn!(error = %e, "telegram webhook body is not an update; ignored");
            return StatusCode::OK.into_response();
        }
    };
    match shared.handle(update).await {
        Ok(()) => StatusCode::OK.into_response(),
        Err(_) => error(
            StatusCode::SERVICE_UNAVAILABLE,
            "unavailable",
            "the update could not be handled now; send it again",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_match_only_when_equal() {
        assert!(secret_matches(b"s3cret", b"s3cret"));
        assert!(!secret_matches(b"s3cres", b"s3cret"));
        assert!(!secret_matches(b"", b"s3cret"));
        assert!(!secret_matches(b"s3cret-and-more", b"s3cret"));
        assert!(!secret_matches(b"", b""));
    }
}
