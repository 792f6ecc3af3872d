//! Staff-facing endpoints: colleagues and presence, capacity, canned responses, and
//! the audit log.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::{AppJson, AppPath, AppQuery, Auth};
use crate::app::AppState;
use crate::domain::model::{AuditFilter, CannedResponse};
use crate::domain::types::fmt_time;
use crate::error::{AppError, AppResult};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/agents", get(agents))
        .route("/v1/agents/{id}", axum::routing::patch(update_agent))
        .route("/v1/agent/presence", put(set_presence).post(set_presence))
        .route("/v1/canned-responses", get(list_canned).post(create_canned))
        .route(
            "/v1/canned-responses/{id}",
            put(update_canned)
                .patch(update_canned)
                .delete(delete_canned),
        )
        .route("/v1/audit", get(audit))
        .route("/v1/conversations/{id}/canned-responses", post(render_all))
}

fn canned_json(c: &CannedResponse) -> serde_json::Value {
    json!({
        "id": c.id, "mission_id": c.mission_id, "title": c.title, "body": c.body,
        "created_by": c.created_by, "created_at": fmt_time(c.created_at),
        "updated_at": fmt_time(c.updated_at),
    })
}

#[derive(Deserialize)]
struct MissionQuery {
    mission_id: Option<String>,
}

/// Staff of the caller's missions with presence and load.
async fn agents(
    State(state): State<AppState>,
    auth: Auth,
    AppQuery(q): AppQuery<MissionQuery>,
) -> AppResult<impl IntoResponse> {
    let roster = state
        .domain
        .roster(&auth.principal, q.mission_id.as_deref())
        .await?;
    let out: Vec<_> = roster
        .iter()
        .map(|e| {
            json!({
                "id": e.agent.id, "name": e.agent.name, "email": e.agent.email,
                "role": e.agent.role, "mission_id": e.mission_id, "presence": e.presence,
                "capacity": e.agent.capacity, "open_conversations": e.open_conversations,
            })
        })
        .collect();
    Ok(Json(json!({"agents": out})))
}

#[derive(Deserialize)]
struct UpdateAgent {
    capacity: i64,
}

async fn update_agent(
    State(state): State<AppState>,
    auth: Auth,
    AppPath(id): AppPath<String>,
    AppJson(req): AppJson<UpdateAgent>,
) -> AppResult<impl IntoResponse> {
    let a = state
        .domain
        .set_capacity(&auth.principal, &id, req.capacity)
        .await?;
    Ok(Json(json!({
        "id": a.id, "name": a.name, "email": a.email, "role": a.role,
        "missions": a.missions, "capacity": a.capacity,
    })))
}

#[derive(Deserialize)]
struct PresenceRequest {
    status: String,
}

async fn set_presence(
    State(state): State<AppState>,
    auth: Auth,
    AppJson(req): AppJson<PresenceRequest>,
) -> AppResult<impl IntoResponse> {
    let effective = state
        .domain
        .set_presence(&auth.principal, &req.status)
        .await?;
    Ok(Json(json!({"status": req.status, "presence": effective})))
}

async fn list_canned(
    State(state): State<AppState>,
    auth: Auth,
    AppQuery(q): AppQuery<MissionQuery>,
) -> AppResult<impl IntoResponse> {
    let list = state
        .domain
        .canned_responses(&auth.principal, q.mission_id.as_deref())
        .await?;
    Ok(Json(
        json!({"canned_responses": list.iter().map(canned_json).collect::<Vec<_>>()}),
    ))
}

#[derive(Deserialize)]
struct CreateCanned {
    mission_id: String,
    title: String,
    body: String,
}

async fn create_canned(
    State(state): State<AppState>,
    auth: Auth,
    AppJson(req): AppJson<CreateCanned>,
) -> AppResult<impl IntoResponse> {
    let c = state
        .domain
        .create_canned(&auth.principal, &req.mission_id, &req.title, &req.body)
        .await?;
    Ok((StatusCode::CREATED, Json(canned_json(&c))))
}

#[derive(Deserialize)]
struct UpdateCanned {
    title: Option<String>,
    body: Option<String>,
}

async fn update_canned(
    State(state): State<AppState>,
    auth: Auth,
    AppPath(id): AppPath<String>,
    AppJson(req): AppJson<UpdateCanned>,
) -> AppResult<impl IntoResponse> {
    let c = state
        .domain
        .update_canned(
            &auth.principal,
            &id,
            req.title.as_deref(),
            req.body.as_deref(),
        )
        .await?;
    Ok(Json(canned_json(&c)))
}

async fn delete_canned(
    State(state): State<AppState>,
    auth: Auth,
    AppPath(id): AppPath<String>,
) -> AppResult<StatusCode> {
    state.domain.delete_canned(&auth.principal, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The conversation's mission's canned responses with placeholders filled in.
async fn render_all(
    State(state): State<AppState>,
    auth: Auth,
    AppPath(id): AppPath<String>,
) -> AppResult<impl IntoResponse> {
    let list = state.domain.render_canned(&auth.principal, &id).await?;
    let out: Vec<_> = list
        .iter()
        .map(|r| {
            json!({
                "id": r.canned.id, "title": r.canned.title, "body": r.canned.body,
                "rendered": r.rendered,
            })
        })
        .collect();
    Ok(Json(json!({"canned_responses": out})))
}

#[derive(Deserialize)]
struct AuditQuery {
    action: Option<String>,
    actor_id: Option<String>,
    target_id: Option<String>,
    limit: Option<i64>,
    cursor: Option<String>,
}

/// The audit log, newest first (admins only).
async fn audit(
    State(state): State<AppState>,
    auth: Auth,
    AppQuery(q): AppQuery<AuditQuery>,
) -> AppResult<impl IntoResponse> {
    let limit = q.limit.unwrap_or(100);
    let before = q
        .cursor
        .as_deref()
        .map(|c| {
            uuid::Uuid::try_parse(c)
                .map_err(|_| AppError::invalid("cursor is not one this server issued"))
        })
        .transpose()?;
    let mut rows = state
        .domain
        .audit_log(
            &auth.principal,
            AuditFilter {
                action: q.action,
                actor_id: q.actor_id,
                target_id: q.target_id,
                before,
                limit,
            },
        )
        .await?;
    let next = if rows.len() as i64 > limit {
        rows.truncate(limit as usize);
        rows.last().map(|r| r.id.to_string())
    } else {
        None
    };
    let entries: Vec<_> = rows
        .iter()
        .map(|r| {
            json!({
                "id": r.id, "at": fmt_time(r.at),
                "actor": {"kind": r.actor.kind(), "id": r.actor.id()},
                "action": r.action,
                "target": {"kind": r.target.as_ref().map(|t| &t.0), "id": r.target.as_ref().map(|t| &t.1)},
                "mission_id": r.mission_id, "details": r.details,
            })
        })
        .collect();
    Ok(Json(json!({"entries": entries, "next_cursor": next})))
}
