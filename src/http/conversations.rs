//! Conversations and messages over HTTP: listing, history paging, the send fallback
//! and the workflow (assign, transfer, resolve, reopen, priority, labels).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::{AppJson, AppPath, AppQuery, Auth, OptionalJson};
use crate::app::AppState;
use crate::domain::conversations::{ListRequest, SendInput};
use crate::domain::model::Conversation;
use crate::error::{AppError, AppResult};
use crate::wire::{AckView, ConversationView, MessageView};

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
    order: Option<String>,
    limit: Option<i64>,
    cursor: Option<String>,
}

async fn list(
    State(state): State<AppState>,
    auth: Auth,
    AppQuery(q): AppQuery<ListQuery>,
) -> AppResult<impl IntoResponse> {
    let p = &auth.principal;
    let page = state
        .domain
        .list_conversations(
            p,
            ListRequest {
                status: q.status,
                mine: q.mine == Some(true),
                priority: q.priority,
                label: q.label,
                order: q.order,
                limit: q.limit,
                cursor: q.cursor,
            },
        )
        .await?;
    let read = if p.sees_internal() {
        state.domain.read_markers(p, &page.conversations).await?
    } else {
        Default::default()
    };
    let convs: Vec<ConversationView> = page
        .conversations
        .iter()
        .map(|c| {
            let v = ConversationView::for_principal(c, p);
            if p.sees_internal() {
                v.with_read_seq(Some(read.get(&c.id).copied().unwrap_or(0)))
            } else {
                v
            }
        })
        .collect();
    Ok(Json(
        json!({"conversations": convs, "next_cursor": page.next_cursor}),
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
        .domain
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
    AppPath(id): AppPath<String>,
) -> AppResult<impl IntoResponse> {
    let conv = state.domain.conversation_for(&auth.principal, &id).await?;
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
    AppPath(id): AppPath<String>,
    AppQuery(q): AppQuery<MessagesQuery>,
) -> AppResult<impl IntoResponse> {
    let p = &auth.principal;
    let limit = q.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(AppError::invalid("limit must be between 1 and 200"));
    }
    let conv = state.domain.conversation_for(p, &id).await?;
    let rows = state
        .domain
        .history(p, &conv, q.after_seq, q.before_seq, limit)
        .await?;
    let msgs: Vec<_> = rows
        .iter()
        .map(|m| MessageView::for_principal(m, p))
        .collect();
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
    AppPath(id): AppPath<String>,
    AppJson(req): AppJson<SendRequest>,
) -> AppResult<impl IntoResponse> {
    let outcome = state
        .domain
        .send(
            &auth.principal,
            SendInput {
                client_msg_id: req.client_msg_id,
                conversation_id: Some(id),
                kind: req.kind,
                body: req.body,
                attachment_ids: req.attachment_ids,
                channel: None,
            },
        )
        .await?;
    let status = if outcome.duplicate {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    let ack = AckView::of(&outcome).ok_or_else(|| AppError::not_found("message"))?;
    Ok((status, Json(ack).into_response()))
}

fn staff_view(conv: &Conversation) -> axum::response::Response {
    Json(ConversationView::staff(conv)).into_response()
}

#[derive(Deserialize, Default)]
struct AssignRequest {
    agent_id: Option<String>,
    /// Compare-and-set: only if nobody else holds it (409 otherwise).
    #[serde(default)]
    if_unassigned: bool,
}

async fn assign(
    State(state): State<AppState>,
    auth: Auth,
    AppPath(id): AppPath<String>,
    OptionalJson(req): OptionalJson<AssignRequest>,
) -> AppResult<impl IntoResponse> {
    let req = req.unwrap_or_default();
    let conv = state
        .domain
        .assign(
            &auth.principal,
            &id,
            req.agent_id.as_deref(),
            req.if_unassigned,
        )
        .await?;
    Ok(staff_view(&conv))
}

#[derive(Deserialize)]
struct TransferRequest {
    agent_id: Option<String>,
    mission_id: Option<String>,
}

async fn transfer(
    State(state): State<AppState>,
    auth: Auth,
    AppPath(id): AppPath<String>,
    AppJson(req): AppJson<TransferRequest>,
) -> AppResult<impl IntoResponse> {
    let conv = state
        .domain
        .transfer(
            &auth.principal,
            &id,
            req.agent_id.as_deref(),
            req.mission_id.as_deref(),
        )
        .await?;
    Ok(staff_view(&conv))
}

async fn resolve(
    State(state): State<AppState>,
    auth: Auth,
    AppPath(id): AppPath<String>,
) -> AppResult<impl IntoResponse> {
    Ok(staff_view(
        &state.domain.resolve(&auth.principal, &id).await?,
    ))
}

async fn reopen(
    State(state): State<AppState>,
    auth: Auth,
    AppPath(id): AppPath<String>,
) -> AppResult<impl IntoResponse> {
    Ok(staff_view(
        &state.domain.reopen(&auth.principal, &id).await?,
    ))
}

#[derive(Deserialize)]
struct PriorityRequest {
    priority: String,
}

async fn priority(
    State(state): State<AppState>,
    auth: Auth,
    AppPath(id): AppPath<String>,
    AppJson(req): AppJson<PriorityRequest>,
) -> AppResult<impl IntoResponse> {
    let conv = state
        .domain
        .set_priority(&auth.principal, &id, &req.priority)
        .await?;
    Ok(staff_view(&conv))
}

#[derive(Deserialize)]
struct LabelsRequest {
    labels: Vec<String>,
}

async fn add_labels(
    State(state): State<AppState>,
    auth: Auth,
    AppPath(id): AppPath<String>,
    AppJson(req): AppJson<LabelsRequest>,
) -> AppResult<impl IntoResponse> {
    let conv = state
        .domain
        .change_labels(&auth.principal, &id, &req.labels, &[])
        .await?;
    Ok(staff_view(&conv))
}

async fn remove_labels(
    State(state): State<AppState>,
    auth: Auth,
    AppPath(id): AppPath<String>,
    AppJson(req): AppJson<LabelsRequest>,
) -> AppResult<impl IntoResponse> {
    let conv = state
        .domain
        .change_labels(&auth.principal, &id, &[], &req.labels)
        .await?;
    Ok(staff_view(&conv))
}
