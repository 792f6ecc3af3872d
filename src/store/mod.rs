//! Persistence. Every SQL statement of the service lives below this module, behind the
//! narrow interface of [`Store`], so that a Postgres implementation can be added beside
//! the SQLite one (with its own SQL and migrations folder) without touching the hub or
//! the HTTP code. sqlx's `Any` driver is deliberately not used: it cannot carry UUIDs and
//! timestamps and does not translate placeholders.

mod records;
mod sqlite;
mod sqlite_kb;

pub use records::*;
pub use sqlite::{priority_rank, SqliteStore as Store, WriteConn};

use chrono::{DateTime, SecondsFormat, Utc};

/// Times are stored as RFC 3339 UTC text with microseconds, which sorts correctly as text.
pub fn fmt_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

pub fn now_str() -> String {
    fmt_time(Utc::now())
}

/// Parse a stored time; stored times are always written by [`fmt_time`].
pub fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}
