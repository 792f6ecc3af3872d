//! HTTP adapters. Each submodule exposes a `router()`; they are merged in [`router`]
//! with the middleware stack (request spans with the `Authorization` header masked,
//! a body limit, a panic catcher that answers with the contract's error shape).

mod attachments;
mod conversations;
mod kb;
mod ops;
mod pages;
mod sessions;
mod staff;

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde::de::DeserializeOwned;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::sensitive_headers::SetSensitiveRequestHeadersLayer;
use tower_http::trace::TraceLayer;

use crate::auth::{authenticate, Principal};
use crate::error::AppError;
use crate::server::AppState;

pub fn router(state: AppState) -> Router {
    let body_limit = state.config.limits.http_body_max_bytes;
    Router::new()
        .merge(sessions::router())
        .merge(conversations::router())
        .merge(ops::router())
        .merge(staff::router())
        .merge(kb::router())
        .merge(pages::router(&[]))
        .merge(attachments::router(state.attachments.limits.max_bytes))
        .route("/v1/ws", axum::routing::get(crate::hub::socket::upgrade))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::extract::DefaultBodyLimit::max(body_limit))
        .layer(CatchPanicLayer::custom(|_| {
            tracing::error!("handler panicked");
            AppError::Internal(anyhow::anyhow!("handler panicked")).into_response()
        }))
        .layer(
            TraceLayer::new_for_http().make_span_with(|req: &Request| {
                tracing::info_span!("http", method = %req.method(), path = %req.uri().path())
            }),
        )
        .layer(SetSensitiveRequestHeadersLayer::new([header::AUTHORIZATION]))
        .with_state(state)
}

async fn not_found() -> AppError {
    AppError::NotFound("no such endpoint".into())
}

async fn method_not_allowed() -> Response {
    let body = serde_json::json!({"error": {"code": "method_not_allowed", "message": "method not allowed on this endpoint"}});
    (StatusCode::METHOD_NOT_ALLOWED, axum::Json(body)).into_response()
}

/// JSON body extractor whose rejections use the contract's error shape.
pub struct AppJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for AppJson<T> {
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(AppJson(v)),
            Err(r) => Err(r.into()),
        }
    }
}

/// A JSON body that may be absent entirely (`POST .../assign` with no body).
pub struct OptionalJson<T>(pub Option<T>);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for OptionalJson<T> {
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|_| AppError::TooLarge("request body is too large".into()))?;
        if bytes.iter().all(|b| b.is_ascii_whitespace()) {
            return Ok(OptionalJson(None));
        }
        serde_json::from_slice(&bytes)
            .map(|v| OptionalJson(Some(v)))
            .map_err(|e| AppError::invalid(format!("invalid JSON body: {e}")))
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
            .map_err(AppError::from)
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
        match authenticate(&state.store, token).await? {
            Some((principal, session)) => Ok(Auth { principal, session }),
            None => Err(AppError::unauthorized()),
        }
    }
}

/// The caller when a token is given (public endpoints that show more to editors). A
/// token that is given but invalid is refused, so a client learns its token expired.
pub struct MaybeAuth(pub Option<Auth>);

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
