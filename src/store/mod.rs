//! Persistence: implementations of the domain's storage traits
//! (`crate::domain::ports`) and of its blob store. A backend persists exactly what the
//! domain gives it and decides nothing; each keeps its own SQL and its own migrations
//! folder. sqlx's `Any` driver is deliberately not used: it cannot carry UUIDs and
//! timestamps and does not translate placeholders.
//!
//! - `sqlite` — the embedded default: one file under the data dir, one node.
//! - `postgres` — chosen by `database_url`: several nodes share one database.

pub mod postgres;
pub mod sqlite;

use std::sync::Arc;

use anyhow::Context;

pub use postgres::PgStore;
pub use sqlite::SqliteStore;

use crate::config::Config;
use crate::domain::attachments::{BlobStore, Blobs};
use crate::domain::ports::Store;
use crate::error::AppError;

impl From<sqlx::Error> for AppError {
    fn from(e: sqlx::Error) -> Self {
        AppError::Internal(anyhow::Error::new(e))
    }
}

impl From<rusqlite::Error> for AppError {
    fn from(e: rusqlite::Error) -> Self {
        AppError::Internal(anyhow::Error::new(e))
    }
}

/// A backend and where it keeps image bytes.
pub struct Backend {
    pub store: Arc<dyn Store>,
    pub blobs: Arc<dyn BlobStore>,
}

/// Open the backend the configuration names: Postgres when `database_url` is set
/// (image bytes in the database, so every node reaches them), else SQLite and a
/// folder under the data dir. `node` names this node's search index among the
/// followers of the index queue.
pub async fn open(config: &Config, node: &str) -> anyhow::Result<Backend> {
    if config.database_url.is_empty() {
        let store = SqliteStore::open(&config.data_dir, config.sqlite_wal_max_mib).await?;
        let blobs =
            Blobs::open(&config.data_dir).context("cannot create the attachments folder")?;
        Ok(Backend {
            store: Arc::new(store),
            blobs: Arc::new(blobs),
        })
    } else {
        let store = PgStore::open(
            config.database_url.expose(),
            config.database_max_connections,
            node,
        )
        .await?;
        let blobs = postgres::PgBlobs::new(store.pool().clone());
        Ok(Backend {
            store: Arc::new(store),
            blobs: Arc::new(blobs),
        })
    }
}
