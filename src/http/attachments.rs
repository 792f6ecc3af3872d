//! `POST /v1/attachments` (multipart field `file`) and the guarded downloads.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, DefaultBodyLimit, Multipart, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};

use super::{client_ip, AppPath, Auth};
use crate::app::AppState;
use crate::domain::attachments::{Download, Variant};
use crate::error::{AppError, AppResult};
use crate::wire::attachment_view;

pub fn router(max_bytes: usize) -> Router<AppState> {
    Router::new()
        .route(
            "/v1/attachments",
            // Room for the multipart framing around a file of the maximum size; the
            // file itself is measured below.
            post(upload).layer(DefaultBodyLimit::max(max_bytes + 64 * 1024)),
        )
        .route("/v1/attachments/{id}", get(original))
        .route("/v1/attachments/{id}/thumb", get(thumb))
}

fn too_large(max: usize) -> AppError {
    AppError::TooLarge(format!(
        "the image is larger than {} MiB",
        max / (1024 * 1024)
    ))
}

async fn upload(
    State(state): State<AppState>,
    info: ConnectInfo<SocketAddr>,
    auth: Auth,
    mut multipart: Multipart,
) -> AppResult<impl IntoResponse> {
    let max = state.domain.upload_max_bytes();
    let mut file: Option<Vec<u8>> = None;
    loop {
        let field = match multipart.next_field().await {
            Ok(Some(f)) => f,
            Ok(None) => break,
            Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => return Err(too_large(max)),
            Err(e) => {
                return Err(AppError::invalid(format!(
                    "invalid multipart body: {}",
                    e.body_text()
                )))
            }
        };
        if field.name() != Some("file") {
            continue;
        }
        let mut field = field;
        let mut buf = Vec::new();
        loop {
            match field.chunk().await {
                Ok(Some(chunk)) => {
                    if buf.len() + chunk.len() > max {
                        return Err(too_large(max));
                    }
                    buf.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                    return Err(too_large(max))
                }
                Err(e) => {
                    return Err(AppError::invalid(format!(
                        "invalid multipart body: {}",
                        e.body_text()
                    )))
                }
            }
        }
        file = Some(buf);
        break;
    }
    let bytes = file.ok_or_else(|| AppError::invalid("multipart field \"file\" is missing"))?;
    let rec = state
        .domain
        .upload(&auth.principal, client_ip(&info), bytes)
        .await?;
    Ok((StatusCode::CREATED, Json(attachment_view(&rec))))
}

/// The bytes with headers that keep a browser from treating them as anything but an
/// image of this user's: nosniff, a sandboxing CSP, private caching, an ETag.
fn serve_blob(d: Download, thumb: bool, req_headers: &HeaderMap) -> AppResult<Response> {
    let etag = format!("\"{}\"", d.sha256);
    let mut headers = HeaderMap::new();
    let hv = |s: &str| HeaderValue::from_str(s).map_err(|e| AppError::Internal(e.into()));
    headers.insert(header::CONTENT_TYPE, hv(&d.content_type)?);
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    let suffix = if thumb { "-thumb" } else { "" };
    headers.insert(
        header::CONTENT_DISPOSITION,
        hv(&format!(
            "inline; filename=\"{}{suffix}.{}\"",
            d.id,
            ext(&d.content_type)
        ))?,
    );
    // Content never changes under an id, but access is per user: private caches only.
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=31536000, immutable"),
    );
    headers.insert(header::ETAG, hv(&etag)?);
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; sandbox"),
    );
    if req_headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag))
    {
        return Ok((StatusCode::NOT_MODIFIED, headers).into_response());
    }
    Ok((headers, d.bytes).into_response())
}

fn ext(content_type: &str) -> &'static str {
    match content_type {
        "image/png" => "png",
        "image/jpeg" => "jpg",
        "image/webp" => "webp",
        "image/gif" => "gif",
        _ => "bin",
    }
}

async fn original(
    State(state): State<AppState>,
    auth: Auth,
    AppPath(id): AppPath<String>,
    headers: HeaderMap,
) -> AppResult<Response> {
    let d = state
        .domain
        .download(&auth.principal, &id, Variant::Original)
        .await?;
    serve_blob(d, false, &headers)
}

async fn thumb(
    State(state): State<AppState>,
    auth: Auth,
    AppPath(id): AppPath<String>,
    headers: HeaderMap,
) -> AppResult<Response> {
    let d = state
        .domain
        .download(&auth.principal, &id, Variant::Thumbnail)
        .await?;
    serve_blob(d, true, &headers)
}
