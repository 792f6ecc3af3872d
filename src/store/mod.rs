//! Persistence: implementations of the domain's storage traits
//! (`crate::domain::ports`). A backend persists exactly what the domain gives it and
//! decides nothing; each keeps its own SQL and its own migrations folder. sqlx's `Any`
//! driver is deliberately not used: it cannot carry UUIDs and timestamps and does not
//! translate placeholders.

pub mod sqlite;

pub use sqlite::SqliteStore;

use crate::error::AppError;

impl From<sqlx::Error> for AppError {
    fn from(e: sqlx::Error) -> Self {
        AppError::Internal(anyhow::Error::new(e))
    }
}
