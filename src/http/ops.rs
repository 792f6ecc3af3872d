//! Liveness, readiness and metrics.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::app::AppState;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
}

async fn healthz() -> impl IntoResponse {
    Json(json!({"status": "ok"}))
}

/// Ready when the database and the search index answer, the message bus (when
/// several nodes run) is connected, and the server is not shutting down: a load
/// balancer sends nobody to a node that would not see other nodes' events.
async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    if state.hub.shutting_down() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "shutting_down"})),
        );
    }
    let r = state.domain.readiness().await;
    let word = |ok: bool| if ok { "ok" } else { "unreachable" };
    let (database, index) = (word(r.database), word(r.index));
    let bus = state
        .metrics
        .bus_connected
        .load(std::sync::atomic::Ordering::Relaxed);
    let ok = r.database && r.index && bus != 0;
    (
        if ok {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        },
        Json(
            json!({"status": if ok { "ready" } else { "unavailable" }, "database": database, "index": index,
                   "bus": match bus { -1 => "none", 0 => "unreachable", _ => "ok" }}),
        ),
    )
}

async fn metrics(State(state): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
}
