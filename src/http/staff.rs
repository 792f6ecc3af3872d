//! Staff-facing endpoints: colleagues and presence, capacity, canned responses, and
//! the audit log.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::{AppJson, AppQuery, Auth};
use crate::chat::workflow::effective_presence;
use crate::error::{AppError, AppResult};
use crate::server::AppState;

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

/// The caller's missions, or the one asked for if the caller serves it.
fn chosen_missions(state: &AppState, auth: &Auth, asked: Option<String>) -> AppResult<Vec<String>> {
    let missions = state.chat.staff_missions(&auth.principal)?;
    match asked {
        None => Ok(missions),
        Some(m) if missions.contains(&m) => Ok(vec![m]),
        Some(_) => Err(AppError::forbidden("you do not serve that mission")),
    }
}

#[derive(Deserialize)]
struct AgentsQuery {
    mission_id: Option<String>,
}

/// Staff of the caller's missions with presence and load.
async fn agents(
    State(state): State<AppState>,
    auth: Auth,
    AppQuery(q): AppQuery<AgentsQuery>,
) -> AppResult<impl IntoResponse> {
    let missions = chosen_missions(&state, &auth, q.mission_id)?;
    let mut out = Vec::new();
    let mut seen = Vec::new();
    for m in &missions {
        let loads = state.store.agent_loads(m).await?;
        for a in state.store.mission_staff(m).await? {
            if seen.contains(&a.id) {
                continue;
            }
            seen.push(a.id.clone());
            let load = loads.iter().find(|l| l.id == a.id).map(|l| l.load);
            out.push(json!({
                "id": a.id, "name": a.name, "email": a.email, "role": a.role,
                "mission_id": m,
                "presence": effective_presence(state.hub.agent_sockets(&a.id), &a.presence),
                "capacity": a.capacity, "open_conversations": load,
            }));
        }
    }
    Ok(Json(json!({"agents": out})))
}

#[derive(Deserialize)]
struct UpdateAgent {
    capacity: i64,
}

async fn update_agent(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    AppJson(req): AppJson<UpdateAgent>,
) -> AppResult<impl IntoResponse> {
    let a = state
        .chat
        .set_capacity(&auth.principal, &id, req.capacity)
        .await?;
    Ok(Json(json!({
        "id": a.agent.id, "name": a.agent.name, "email": a.agent.email, "role": a.agent.role,
        "missions": a.missions, "capacity": a.agent.capacity,
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
        .chat
        .set_presence(&auth.principal, &req.status)
        .await?;
    Ok(Json(json!({"status": req.status, "presence": effective})))
}

#[derive(Deserialize)]
struct CannedQuery {
    mission_id: Option<String>,
}

async fn list_canned(
    State(state): State<AppState>,
    auth: Auth,
    AppQuery(q): AppQuery<CannedQuery>,
) -> AppResult<impl IntoResponse> {
    let missions = chosen_missions(&state, &auth, q.mission_id)?;
    let list = state.store.canned_responses(&missions).await?;
    Ok(Json(json!({"canned_responses": list})))
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
        .chat
        .create_canned(&auth.principal, &req.mission_id, &req.title, &req.body)
        .await?;
    Ok((StatusCode::CREATED, Json(c)))
}

#[derive(Deserialize)]
struct UpdateCanned {
    title: Option<String>,
    body: Option<String>,
}

async fn update_canned(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    AppJson(req): AppJson<UpdateCanned>,
) -> AppResult<impl IntoResponse> {
    let c = state
        .chat
        .update_canned(
            &auth.principal,
            &id,
            req.title.as_deref(),
            req.body.as_deref(),
        )
        .await?;
    Ok(Json(c))
}

async fn delete_canned(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> AppResult<StatusCode> {
    state.chat.delete_canned(&auth.principal, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The conversation's mission's canned responses with placeholders filled in.
async fn render_all(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> AppResult<impl IntoResponse> {
    state.chat.staff_missions(&auth.principal)?;
    let conv = state.chat.conversation_for(&auth.principal, &id).await?;
    let list = state
        .store
        .canned_responses(std::slice::from_ref(&conv.mission_id))
        .await?;
    let out: Vec<_> = list
        .iter()
        .map(|c| {
            json!({
                "id": c.id, "title": c.title, "body": c.body,
                "rendered": state.chat.render_canned(&c.body, &auth.principal, &conv),
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
    if !auth.principal.is_admin() {
        return Err(AppError::forbidden("only admins read the audit log"));
    }
    let limit = q.limit.unwrap_or(100);
    if !(1..=500).contains(&limit) {
        return Err(AppError::invalid("limit must be between 1 and 500"));
    }
    if let Some(c) = &q.cursor {
        if uuid::Uuid::parse_str(c).is_err() {
            return Err(AppError::invalid("cursor is not one this server issued"));
        }
    }
    let mut rows = state
        .store
        .audit_entries(
            q.action.as_deref(),
            q.actor_id.as_deref(),
            q.target_id.as_deref(),
            q.cursor.as_deref(),
            limit + 1,
        )
        .await?;
    let next = if rows.len() as i64 > limit {
        rows.truncate(limit as usize);
        rows.last().map(|r| r.id.clone())
    } else {
        None
    };
    let entries: Vec<_> = rows
        .iter()
        .map(|r| {
            json!({
                "id": r.id, "at": r.at, "actor": {"kind": r.actor_kind, "id": r.actor_id},
                "action": r.action, "target": {"kind": r.target_kind, "id": r.target_id},
                "mission_id": r.mission_id,
                "details": serde_json::from_str::<serde_json::Value>(&r.details).unwrap_or_default(),
            })
        })
        .collect();
    Ok(Json(json!({"entries": entries, "next_cursor": next})))
}
