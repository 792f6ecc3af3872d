//! Emergencies over HTTP: the triage test, SOS, escalations and their acknowledgement by
//! agents, and the hotline's signed acknowledgement.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::json;
use sha2::Sha256;

use super::{AppJson, AppPath, AppQuery, Auth};
use crate::app::AppState;
use crate::config::signing_key;
use crate::domain::escalations::SosInput;
use crate::domain::types::{Channel, GeoPoint, Locale};
use crate::error::{AppError, AppResult};
use crate::wire::EscalationView;

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/triage", post(triage))
        .route("/v1/emergency", post(emergency))
        .route("/v1/escalations", get(list))
        .route("/v1/escalations/{id}", get(show))
        .route("/v1/escalations/{id}/ack", post(ack))
        .route("/v1/hotline/ack", post(hotline_ack))
}

#[derive(Deserialize)]
struct TriageRequest {
    text: String,
    locale: Option<String>,
}

async fn triage(
    State(state): State<AppState>,
    auth: Auth,
    AppJson(req): AppJson<TriageRequest>,
) -> AppResult<impl IntoResponse> {
    let locale = Locale::parse_opt(req.locale.as_deref())?;
    let t = state
        .domain
        .triage_text(&auth.principal, &req.text, locale.as_ref())?;
    Ok(Json(t))
}

#[derive(Deserialize)]
pub struct Location {
    pub lat: f64,
    pub lon: f64,
    pub accuracy_m: Option<f64>,
}

impl Location {
    pub fn parse(&self) -> AppResult<GeoPoint> {
        GeoPoint::parse(self.lat, self.lon, self.accuracy_m)
    }
}

#[derive(Deserialize)]
struct EmergencyRequest {
    conversation_id: Option<String>,
    note: Option<String>,
    location: Option<Location>,
}

/// SOS: the citizen's conversation is escalated at once; the answer carries the
/// escalation and what the citizen should do now.
async fn emergency(
    State(state): State<AppState>,
    auth: Auth,
    AppJson(req): AppJson<EmergencyRequest>,
) -> AppResult<impl IntoResponse> {
    let location = req.location.as_ref().map(Location::parse).transpose()?;
    let o = state
        .domain
        .sos(
            &auth.principal,
            SosInput {
                conversation_id: req.conversation_id,
                note: req.note,
                location,
            },
            Channel::App,
        )
        .await?;
    let e = o
        .escalation
        .as_ref()
        .ok_or_else(|| AppError::Internal(anyhow::anyhow!("SOS without an escalation")))?;
    Ok((
        axum::http::StatusCode::CREATED,
        Json(json!({
            "escalation": EscalationView::from(e),
            "guidance": o.guidance,
            "conversation_id": o.conversation.id,
        })),
    ))
}

#[derive(Deserialize)]
struct ListQuery {
    state: Option<String>,
    limit: Option<i64>,
}

async fn list(
    State(state): State<AppState>,
    auth: Auth,
    AppQuery(q): AppQuery<ListQuery>,
) -> AppResult<impl IntoResponse> {
    let list = state
        .domain
        .escalations(&auth.principal, q.state.as_deref(), q.limit)
        .await?;
    Ok(Json(
        json!({"escalations": list.iter().map(EscalationView::from).collect::<Vec<_>>()}),
    ))
}

async fn show(
    State(state): State<AppState>,
    auth: Auth,
    AppPath(id): AppPath<String>,
) -> AppResult<impl IntoResponse> {
    let e = state.domain.escalation_for(&auth.principal, &id).await?;
    Ok(Json(json!(EscalationView::from(&e))))
}

async fn ack(
    State(state): State<AppState>,
    auth: Auth,
    AppPath(id): AppPath<String>,
) -> AppResult<impl IntoResponse> {
    let e = state.domain.ack_escalation(&auth.principal, &id).await?;
    Ok(Json(json!(EscalationView::from(&e))))
}

/// How far a signed request's timestamp may be from now.
const SIGNATURE_TOLERANCE_SECS: i64 = 300;

/// Verify a Standard Webhooks signature; any failure is the same 401.
fn verify_signed(key: &[u8], headers: &HeaderMap, body: &[u8]) -> AppResult<()> {
    let bad = || AppError::Unauthorized("missing, invalid or stale signature".into());
    let h = |k: &str| headers.get(k).and_then(|v| v.to_str().ok());
    let id = h("webhook-id").filter(|v| !v.is_empty()).ok_or_else(bad)?;
    let ts = h("webhook-timestamp").ok_or_else(bad)?;
    let ts_num: i64 = ts.trim().parse().map_err(|_| bad())?;
    if (chrono::Utc::now().timestamp() - ts_num).abs() > SIGNATURE_TOLERANCE_SECS {
        return Err(bad());
    }
    let sigs = h("webhook-signature").ok_or_else(bad)?;
    let body = std::str::from_utf8(body).map_err(|_| bad())?;
    let signed = format!("{id}.{ts}.{body}");
    let ok = sigs.split_whitespace().any(|s| {
        let Some(b64) = s.strip_prefix("v1,") else {
            return false;
        };
        let Ok(sig) = base64::engine::general_purpose::STANDARD.decode(b64) else {
            return false;
        };
        let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key");
        mac.update(signed.as_bytes());
        mac.verify_slice(&sig).is_ok()
    });
    if ok {
        Ok(())
    } else {
        Err(bad())
    }
}

#[derive(Deserialize)]
struct HotlineAck {
    escalation_id: String,
}

/// The hotline acknowledges an escalation, with the same signature scheme and secret
/// as the deliveries it receives.
async fn hotline_ack(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> AppResult<impl IntoResponse> {
    let key = signing_key(&state.config.hotline.secret)
        .ok_or_else(|| AppError::Unauthorized("no hotline is configured".into()))?;
    verify_signed(&key, &headers, &body)?;
    let req: HotlineAck = serde_json::from_slice(&body).map_err(|e| {
        AppError::invalid(format!(
            "invalid JSON body: {}",
            crate::wire::json_error(&e)
        ))
    })?;
    let e = state.domain.hotline_ack(&req.escalation_id).await?;
    Ok(Json(json!(EscalationView::from(&e))))
}
