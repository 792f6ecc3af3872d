//! Conversations and messages over HTTP: listing, history paging, the send fallback
//! and the basic workflow (assign, transfer, resolve, reopen).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::{AppJson, AppQuery, Auth, OptionalJson};
use crate::auth::Principal;
use crate::chat::SendInput;
use crate::error::{AppError, AppResult};
use crate::server::AppState;
use crate::store::{ConversationFilter, MessagePage};
use crate::views::{message_view, Ack, ConversationView};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/v1/conversations", get(list).post(start))
        .route("/v1/conversations/{id}", get(show))
        .route("/v1/conversations/{id}/messages", get(messages).post(send))
        .route("/v1/conversations/{id}/assign", post(assign))
        .route("/v1/conversations/{id}/transfer", post(transfer))
        .route("/v1/conversations/{id}/resolve", post(resolve))
        .route("/v1/conversations/{id}/reopen", post(reopen))
        .route("/v1/conversations/{id}/priority", post(priority))
        .route(
            "/v1/conversations/{id}/labels",
            post(add_labels).delete(remove_labels),
        )
}

#[derive(Deserialize)]
struct ListQuery {
    status: Option<String>,
    mine: Option<bool>,
    priority: Option<String>,
    label: Option<String>,
    /// `recent` (newest first, default) or `queue` (priority, then oldest first).
    order: Option<String>,
    limit: Option<i64>,
    cursor: Option<String>,
}

/// Cursors are `RANK.ID` of the last row of the previous page.
fn parse_cursor(c: &str) -> AppResult<(i64, String)> {
    let bad = || AppError::invalid("cursor is not one this server issued");
    let (rank, id) = c.split_once('.').ok_or_else(bad)?;
    let rank: i64 = rank.parse().map_err(|_| bad())?;
    uuid::Uuid::parse_str(id).map_err(|_| bad())?;
    Ok((rank, id.to_string()))
}

async fn list(
    State(state): State<AppState>,
    auth: Auth,
    AppQuery(q): AppQuery<ListQuery>,
) -> AppResult<impl IntoResponse> {
    let limit = q.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(AppError::invalid("limit must be between 1 and 200"));
    }
    if let Some(s) = &q.status {
        if !matches!(s.as_str(), "open" | "assigned" | "resolved") {
            return Err(AppError::invalid(
                "status must be open, assigned or resolved",
            ));
        }
    }
    if let Some(p) = &q.priority {
        if !crate::chat::workflow::PRIORITIES.contains(&p.as_str()) {
            return Err(AppError::invalid(
                "priority must be normal, urgent or emergency",
            ));
        }
    }
    let queue_order = match q.order.as_deref() {
        None | Some("recent") => false,
        Some("queue") => true,
        Some(_) => return Err(AppError::invalid("order must be recent or queue")),
    };
    let after = q.cursor.as_deref().map(parse_cursor).transpose()?;
    let mut f = ConversationFilter {
        status: q.status,
        priority: q.priority,
        label: q.label.map(|l| l.trim().to_lowercase()),
        queue_order,
        after,
        limit: limit + 1,
        ..Default::default()
    };
    match &auth.principal {
        Principal::Citizen(c) => f.citizen_id = Some(c.id.clone()),
        Principal::Agent(a) => {
            if !auth.principal.works_conversations() {
                return Err(AppError::forbidden("editors do not work conversations"));
            }
            if !auth.principal.is_admin() {
                f.missions = Some(a.missions.clone());
                f.visible_assignee = Some(a.agent.id.clone());
            }
            if q.mine == Some(true) {
                f.assignee_id = Some(a.agent.id.clone());
            }
        }
    }
    let mut rows = state.store.list_conversations(&f).await?;
    let next_cursor = if rows.len() as i64 > limit {
        rows.truncate(limit as usize);
        rows.last()
            .map(|c| format!("{}.{}", crate::store::priority_rank(&c.priority), c.id))
    } else {
        None
    };
    let convs: Vec<ConversationView> = rows
        .iter()
        .map(|c| ConversationView::for_principal(c, &auth.principal))
        .collect();
    Ok(Json(
        json!({"conversations": convs, "next_cursor": next_cursor}),
    ))
}

#[derive(Deserialize, Default)]
struct StartRequest {
    channel: Option<String>,
}

async fn start(
    State(state): State<AppState>,
    auth: Auth,
    OptionalJson(req): OptionalJson<StartRequest>,
) -> AppResult<impl IntoResponse> {
    let req = req.unwrap_or_default();
    let (conv, created) = state
        .chat
        .start_conversation(&auth.principal, req.channel.as_deref())
        .await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(ConversationView::for_principal(&conv, &auth.principal)).into_response(),
    ))
}

async fn show(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> AppResult<impl IntoResponse> {
    let conv = state.chat.conversation_for(&auth.principal, &id).await?;
    Ok(Json(ConversationView::for_principal(&conv, &auth.principal)).into_response())
}

#[derive(Deserialize)]
struct MessagesQuery {
    after_seq: Option<i64>,
    before_seq: Option<i64>,
    limit: Option<i64>,
}

async fn messages(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    AppQuery(q): AppQuery<MessagesQuery>,
) -> AppResult<impl IntoResponse> {
    let limit = q.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(AppError::invalid("limit must be between 1 and 200"));
    }
    if q.after_seq.is_some_and(|s| s < 0) || q.before_seq.is_some_and(|s| s < 0) {
        return Err(AppError::invalid(
            "after_seq and before_seq must not be negative",
        ));
    }
    let conv = state.chat.conversation_for(&auth.principal, &id).await?;
    let rows = state
        .store
        .messages(
            &conv.id,
            MessagePage {
                after_seq: q.after_seq,
                before_seq: q.before_seq,
                limit,
                include_notes: auth.principal.works_conversations(),
            },
        )
        .await?;
    let msgs: Vec<_> = rows.iter().map(message_view).collect();
    Ok(Json(json!({"messages": msgs})))
}

#[derive(Deserialize)]
struct SendRequest {
    client_msg_id: String,
    kind: Option<String>,
    body: Option<String>,
    #[serde(default)]
    attachment_ids: Vec<String>,
}

async fn send(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    AppJson(req): AppJson<SendRequest>,
) -> AppResult<impl IntoResponse> {
    let committed = state
        .chat
        .send(
            &auth.principal,
            SendInput {
                client_msg_id: req.client_msg_id,
                conversation_id: Some(id),
                kind: req.kind,
                body: req.body,
                attachment_ids: req.attachment_ids,
            },
        )
        .await?;
    let status = if committed.duplicate {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, Json(Ack::from(&committed)).into_response()))
}

#[derive(Deserialize, Default)]
struct AssignRequest {
    agent_id: Option<String>,
}

async fn assign(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    OptionalJson(req): OptionalJson<AssignRequest>,
) -> AppResult<impl IntoResponse> {
    let req = req.unwrap_or_default();
    let conv = state
        .chat
        .assign(&auth.principal, &id, req.agent_id.as_deref())
        .await?;
    Ok(Json(ConversationView::from(&conv)).into_response())
}

#[derive(Deserialize)]
struct TransferRequest {
    agent_id: Option<String>,
    mission_id: Option<String>,
}

async fn transfer(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    AppJson(req): AppJson<TransferRequest>,
) -> AppResult<impl IntoResponse> {
    let conv = state
        .chat
        .transfer(
            &auth.principal,
            &id,
            req.agent_id.as_deref(),
            req.mission_id.as_deref(),
        )
        .await?;
    Ok(Json(ConversationView::from(&conv)).into_response())
}

async fn resolve(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> AppResult<impl IntoResponse> {
    let conv = state.chat.resolve(&auth.principal, &id).await?;
    Ok(Json(ConversationView::from(&conv)).into_response())
}

async fn reopen(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
) -> AppResult<impl IntoResponse> {
    let conv = state.chat.reopen(&auth.principal, &id).await?;
    Ok(Json(ConversationView::from(&conv)).into_response())
}

#[derive(Deserialize)]
struct PriorityRequest {
    priority: String,
}

async fn priority(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    AppJson(req): AppJson<PriorityRequest>,
) -> AppResult<impl IntoResponse> {
    let conv = state
        .chat
        .set_priority(Some(&auth.principal), &id, &req.priority)
        .await?;
    Ok(Json(ConversationView::from(&conv)).into_response())
}

#[derive(Deserialize)]
struct LabelsRequest {
    labels: Vec<String>,
}

async fn add_labels(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    AppJson(req): AppJson<LabelsRequest>,
) -> AppResult<impl IntoResponse> {
    let conv = state
        .chat
        .change_labels(&auth.principal, &id, &req.labels, &[])
        .await?;
    Ok(Json(ConversationView::from(&conv)).into_response())
}

async fn remove_labels(
    State(state): State<AppState>,
    auth: Auth,
    Path(id): Path<String>,
    AppJson(req): AppJson<LabelsRequest>,
) -> AppResult<impl IntoResponse> {
    let conv = state
        .chat
        .change_labels(&auth.principal, &id, &[], &req.labels)
        .await?;
    Ok(Json(ConversationView::from(&conv)).into_response())
}
