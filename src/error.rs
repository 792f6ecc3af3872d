//! One error type for the domain and every adapter: HTTP turns it into the contract's
//! `{"error": {"code", "message"}}` body (`crate::http::error`), the socket into an
//! `error` frame.
//! Internal errors are logged once (where they become a response) and returned opaque.

use serde_json::json;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{0}")]
    InvalidInput(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    TooLarge(String),
    #[error("{0}")]
    UnsupportedMediaType(String),
    #[error("{message}")]
    RateLimited {
        message: String,
        retry_after_secs: u64,
    },
    /// The server is shutting down or overloaded; the client should retry.
    #[error("{0}")]
    Unavailable(String),
    /// The request took longer than the server allows.
    #[error("{0}")]
    Timeout(String),
    #[error("internal error")]
    Internal(#[from] anyhow::Error),
}

pub type AppResult<T> = Result<T, AppError>;

impl AppError {
    pub fn invalid(msg: impl Into<String>) -> Self {
        AppError::InvalidInput(msg.into())
    }
    pub fn not_found(what: &str) -> Self {
        AppError::NotFound(format!("{what} not found"))
    }
    pub fn forbidden(msg: impl Into<String>) -> Self {
        AppError::Forbidden(msg.into())
    }
    pub fn unauthorized() -> Self {
        AppError::Unauthorized("missing, invalid or expired token".into())
    }

    /// The contract's error code.
    pub fn code(&self) -> &'static str {
        match self {
            AppError::InvalidInput(_) => "invalid_input",
            AppError::Unauthorized(_) => "unauthorized",
            AppError::Forbidden(_) => "forbidden",
            AppError::NotFound(_) => "not_found",
            AppError::Conflict(_) => "conflict",
            AppError::TooLarge(_) => "too_large",
            AppError::UnsupportedMediaType(_) => "unsupported_media_type",
            AppError::RateLimited { .. } => "rate_limited",
            AppError::Unavailable(_) => "unavailable",
            AppError::Timeout(_) => "request_timeout",
            AppError::Internal(_) => "internal",
        }
    }

    /// The HTTP status of the contract for this error.
    pub fn status(&self) -> u16 {
        match self {
            AppError::InvalidInput(_) => 400,
            AppError::Unauthorized(_) => 401,
            AppError::Forbidden(_) => 403,
            AppError::NotFound(_) => 404,
            AppError::Conflict(_) => 409,
            AppError::TooLarge(_) => 413,
            AppError::UnsupportedMediaType(_) => 415,
            AppError::RateLimited { .. } => 429,
            AppError::Unavailable(_) => 503,
            AppError::Timeout(_) => 408,
            AppError::Internal(_) => 500,
        }
    }

    /// The message shown to the client: never internals.
    pub fn public_message(&self) -> String {
        match self {
            AppError::Internal(_) => "internal error".into(),
            other => other.to_string(),
        }
    }

    /// The full message, internals included: for operators at the command line, never
    /// for remote clients.
    pub fn detail(&self) -> String {
        match self {
            AppError::Internal(e) => format!("internal error: {e:#}"),
            other => other.to_string(),
        }
    }

    /// Log internal errors once, at the place they turn into a response or frame.
    pub fn log(&self) {
        match self {
            AppError::Internal(e) => tracing::error!(error = ?e, "internal error"),
            other => tracing::debug!(code = other.code(), message = %other, "request refused"),
        }
    }

    /// The contract's error body.
    pub fn body(&self) -> serde_json::Value {
        json!({"error": {"code": self.code(), "message": self.public_message()}})
    }
}
