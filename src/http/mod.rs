//! HTTP adapters. Each submodule exposes a `router()`; they are merged in [`router`]
//! with the middleware stack (request spans with the `Authorization` header masked,
//! a body limit, a panic catcher that answers with the contract's error shape, and the
//! security headers every response carries). Handlers parse, call the domain, render.

mod attachments;
mod conversations;
mod emergencies;
pub mod error;
mod kb;
pub mod listener;
mod ops;
mod pages;
mod sessions;
mod staff;
pub mod ws;

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde::de::DeserializeOwned;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::trace::TraceLayer;

use crate::app::AppState;
use crate::domain::Principal;
use crate::error::AppError;

pub fn router(state: AppState) -> Router {
    router_with(state, None)
}

/// The router with the routes of messenger bridges (their webhooks) merged in, under
/// the same middleware.
pub fn router_with(state: AppState, bridges: Option<Router>) -> Router {
    let body_limit = state.config.limits.http_body_max_bytes;
    let request_timeout = state.config.limits.http_request_timeout_secs;
    let mut app: Router = Router::new()
        .merge(sessions::router())
        .merge(conversations::router())
        .merge(ops::router())
        .merge(staff::router())
        .merge(kb::router())
        .merge(pages::router(&[]))
        .merge(emergencies::router())
        .merge(attachments::router(state.domain.upload_max_bytes()))
        .route("/v1/ws", axum::routing::get(ws::upgrade))
        .with_state(state);
    if let Some(b) = bridges {
        app = app.merge(b);
    }
    app.fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::extract::DefaultBodyLimit::max(body_limit))
        .layer(axum::middleware::from_fn_with_state(
            request_timeout,
            request_deadline,
        ))
        .layer(axum::middleware::from_fn(security_headers))
        .layer(CatchPanicLayer::custom(|_| {
            tracing::error!("handler panicked");
            AppError::Internal(anyhow::anyhow!("handler panicked")).into_response()
        }))
        .layer(
            TraceLayer::new_for_http().make_span_with(|req: &Request| {
                tracing::info_span!("http", method = %req.method(), path = %req.uri().path())
            }),
        )
        .layer(SetSensitiveRequestHeadersLayer::new([
            header::AUTHORIZATION,
            header::HeaderName::from_static("x-telegram-bot-api-secret-token"),
        ]))
}

/// Every response: `nosniff`. API responses (which carry tokens and personal data)
/// must not be stored by caches unless the handler chose a policy (attachments).
async fn security_headers(req: Request, next: Next) -> Response {
    let api = req.uri().path().starts_with("/v1/");
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.entry(header::X_CONTENT_TYPE_OPTIONS)
        .or_insert(HeaderValue::from_static("nosniff"));
    if api {
        h.entry(header::CACHE_CONTROL)
            .or_insert(HeaderValue::from_static("no-store"));
    }
    resp
}

/// A request, body included, must complete within the limit (uploads get longer): a
/// client trickling its body cannot hold a connection and a handler forever.
async fn request_deadline(
    axum::extract::State(secs): axum::extract::State<u64>,
    req: Request,
    next: Next,
) -> Response {
    let upload = req.uri().path() == "/v1/attachments";
    let limit = std::time::Duration::from_secs(if upload { secs * 4 } else { secs });
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(resp) => resp,
        Err(_) => AppError::Timeout(format!(
            "the request took longer than {} s",
            limit.as_secs()
        ))
        .into_response(),
    }
}

async fn not_found() -> AppError {
    AppError::NotFound("no such endpoint".into())
}

async fn method_not_allowed() -> Response {
    let body = serde_json::json!({"error": {"code": "method_not_allowed", "message": "method not allowed on this endpoint"}});
    (StatusCode::METHOD_NOT_ALLOWED, axum::Json(body)).into_response()
}

fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, AppError> {
    serde_json::from_slice(bytes).map_err(|e| {
        AppError::invalid(format!(
            "invalid JSON body: {}",
            crate::wire::json_error(&e)
        ))
    })
}

async fn body_bytes<S: Send + Sync>(
    req: Request,
    state: &S,
) -> Result<axum::body::Bytes, AppError> {
    axum::body::Bytes::from_request(req, state)
        .await
        .map_err(|_| AppError::TooLarge("request body is too large".into()))
}

/// JSON body extractor whose rejections use the contract's error shape and name
/// fields, never the server's types.
pub struct AppJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for AppJson<T> {
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|v| {
                let v = v.trim().to_ascii_lowercase();
                v == "application/json" || (v.starts_with("application/") && v.ends_with("+json"))
            })
            .unwrap_or(false);
        if !json {
            return Err(AppError::UnsupportedMediaType(
                "expected Content-Type: application/json".into(),
            ));
        }
        let bytes = body_bytes(req, state).await?;
        parse_json(&bytes).map(AppJson)
    }
}

/// A JSON body that may be absent entirely (`POST .../assign` with no body).
pub struct OptionalJson<T>(pub Option<T>);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for OptionalJson<T> {
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = body_bytes(req, state).await?;
        if bytes.iter().all(|b| b.is_ascii_whitespace()) {
            return Ok(OptionalJson(None));
        }
        parse_json(&bytes).map(|v| OptionalJson(Some(v)))
    }
}

/// Query extractor with the contract's error shape.
pub struct AppQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for AppQuery<T> {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|q| AppQuery(q.0))
            .map_err(error::query_rejection)
    }
}

/// Path extractor with the contract's error shape (a malformed path is "not found").
pub struct AppPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for AppPath<T> {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|p| AppPath(p.0))
            .map_err(error::path_rejection)
    }
}

/// The signed-in caller, from `Authorization: Bearer <token>`.
pub struct Auth {
    pub principal: Principal,
    /// SHA-256 of the token, to revoke it.
    pub session: String,
}

impl FromRequestParts<AppState> for Auth {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        let token = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim)
            .ok_or_else(AppError::unauthorized)?;
        match state.domain.authenticate(token).await? {
            Some((principal, session)) => Ok(Auth { principal, session }),
            None => Err(AppError::unauthorized()),
        }
    }
}

/// The caller when a token is given (public endpoints that show more to editors). A
/// token that is given but invalid is refused, so a client learns its token expired.
pub struct MaybeAuth(pub Option<Auth>);

impl MaybeAuth {
    pub fn principal(&self) -> Option<&Principal> {
        self.0.as_ref().map(|a| &a.principal)
    }
}

impl FromRequestParts<AppState> for MaybeAuth {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, AppError> {
        if parts.headers.get(header::AUTHORIZATION).is_none() {
            return Ok(MaybeAuth(None));
        }
        Auth::from_request_parts(parts, state)
            .await
            .map(|a| MaybeAuth(Some(a)))
    }
}

/// The client's address, for per-address limits.
pub fn client_ip(info: &ConnectInfo<SocketAddr>) -> std::net::IpAddr {
    info.0.ip()
}
