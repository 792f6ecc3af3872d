//! The contract's error responses: status, `{"error": {"code", "message"}}`, and
//! `Retry-After` for 429. Errors are logged once, here, where they become a response.

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::error::AppError;

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        self.log();
        let status =
            StatusCode::from_u16(self.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut resp = (status, axum::Json(self.body())).into_response();
        if let AppError::RateLimited {
            retry_after_secs, ..
        } = &self
        {
            if let Ok(v) = HeaderValue::from_str(&retry_after_secs.max(&1).to_string()) {
                resp.headers_mut().insert(header::RETRY_AFTER, v);
            }
        }
        resp
    }
}

/// Query strings that do not parse; the message names the parameter, not a Rust type.
pub fn query_rejection(r: QueryRejection) -> AppError {
    let text = r.body_text();
    let detail = text
        .split_once(": ")
        .map(|(_, d)| d)
        .unwrap_or(&text)
        .to_string();
    AppError::InvalidInput(format!("invalid query string: {detail}"))
}

pub fn path_rejection(_: PathRejection) -> AppError {
    AppError::NotFound("no such resource".into())
}
