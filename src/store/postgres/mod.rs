//! The Postgres backend, for deployments that run several nodes on one database.
//!
//! Same tables and column names as the SQLite backend, with native types (`uuid`,
//! `timestamptz`, `jsonb`, `bytea`), its own migrations (`migrations/postgres`) and a
//! connection pool shared by reads and writes. What SQLite gets from its single
//! writer, Postgres gets from row locks taken inside each transaction, so several
//! processes on several machines can commit at once:
//!
//! - the planned commit locks, in a fixed order, the people whose messages it
//!   deduplicates or whose open conversation it looks up (transaction-scoped advisory
//!   locks), then every conversation it touches (`FOR NO KEY UPDATE`, by id): two
//!   nodes' writers serialise per conversation and per citizen, `seq` stays gapless,
//!   a resend seen by another node finds the original, and a citizen ends up with one
//!   open conversation even when two nodes start it at once;
//! - every connection commits with `synchronous_commit = on`: an ack is sent only for
//!   what is on disk;
//! - times that decide between nodes (leases) are taken from the database's clock.
//!
//! Split by aggregate like the SQLite backend: conversations and messages, people and
//! sessions, workflow and audit, attachments and their bytes, knowledge base, outbox,
//! Telegram chats.

mod attachments;
mod blobs;
mod conversations;
mod escalations;
mod kb;
mod outbox;
mod people;
mod telegram;
mod workflow;

pub use blobs::PgBlobs;

use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::domain::model::AuditEntry;
use crate::domain::ports::Store;
use crate::domain::types::*;
use crate::error::{AppError, AppResult};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// Advisory lock serialising inserts into `index_queue` (see `kb.rs`), in the
/// two-key form. People are locked with one 64-bit key each; the two forms share one
/// space, and a person's key equals this one with a chance of 2^-64.
const LOCK_SPACE: i32 = 0x4c53; // "LS"
const LOCK_INDEX_QUEUE: i32 = 1;

#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
    /// This node's name among the followers of the index queue (its search index).
    follower: Arc<str>,
    /// When this node last recorded its index position, to do it once a minute.
    follower_seen: Arc<std::sync::Mutex<Option<Instant>>>,
}

/// Parse a `postgres://` URL into connect options with what the service relies on.
pub fn connect_options(url: &str) -> anyhow::Result<PgConnectOptions> {
    // The URL may hold a password: never echo it.
    let opts = PgConnectOptions::from_str(url)
        .map_err(|_| anyhow::anyhow!("database_url is not a valid postgres:// URL"))?;
    Ok(opts.application_name("lingshi").options([
        // An ack promises the message is on disk: never commit asynchronously, whatever
        // the server's default.
        ("synchronous_commit", "on"),
        ("timezone", "UTC"),
        // A lock wait this long means something is stuck; fail rather than hang.
        ("lock_timeout", "30s"),
    ]))
}

impl PgStore {
    /// Connect, and apply pending migrations (concurrent starts of several nodes are
    /// safe: sqlx serialises migrations with an advisory lock).
    pub async fn open(url: &str, max_connections: u32, follower: &str) -> anyhow::Result<Self> {
        let opts = connect_options(url)?;
        let pool = PgPoolOptions::new()
            .min_connections(1)
            .max_connections(max_connections.max(2))
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(opts)
            .await
            .context("cannot connect to the Postgres database in database_url")?;
        MIGRATOR
            .run(&pool)
            .await
            .context("cannot apply database migrations")?;
        Ok(PgStore {
            pool,
            follower: follower.into(),
            follower_seen: Arc::new(std::sync::Mutex::new(None)),
        })
    }

    /// The pool, for the blob store that shares it.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

#[async_trait]
impl Store for PgStore {
    async fn ping(&self) -> AppResult<()> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    async fn close(&self) {
        self.pool.close().await;
    }
}

// ----- values to and from columns ----------------------------------------------------

/// A stored value that does not parse: the database was changed behind the service's
/// back. Reported, never read as a default (which could be written back).
fn corrupt(what: &str, value: &str) -> AppError {
    AppError::Internal(anyhow::anyhow!("corrupt {what} in the database: {value:?}"))
}

fn word<T: FromStr>(what: &str, s: &str) -> AppResult<T> {
    s.parse().map_err(|_| corrupt(what, s))
}

fn json<T: serde::de::DeserializeOwned>(what: &str, v: serde_json::Value) -> AppResult<T> {
    serde_json::from_value(v.clone()).map_err(|_| corrupt(what, &v.to_string()))
}

fn to_json<T: serde::Serialize>(v: &T) -> serde_json::Value {
    serde_json::to_value(v).expect("values serialise")
}

fn country(s: Option<&str>) -> AppResult<Option<CountryCode>> {
    s.map(|c| CountryCode::parse(c).map_err(|_| corrupt("country", c)))
        .transpose()
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

/// A fixed-size advisory-lock key for a person (sender or citizen). Two people
/// sharing a key only wait for each other.
fn person_key(id: uuid::Uuid) -> i64 {
    let (hi, lo) = id.as_u64_pair();
    (hi ^ lo) as i64
}

/// Insert audit entries inside a transaction, in one statement.
async fn insert_audit(conn: &mut PgConnection, entries: &[AuditEntry]) -> Result<(), sqlx::Error> {
    if entries.is_empty() {
        return Ok(());
    }
    let mut ids = Vec::with_capacity(entries.len());
    let mut ats = Vec::with_capacity(entries.len());
    let mut kinds = Vec::with_capacity(entries.len());
    let mut actors = Vec::with_capacity(entries.len());
    let mut actions = Vec::with_capacity(entries.len());
    let mut tkinds = Vec::with_capacity(entries.len());
    let mut tids = Vec::with_capacity(entries.len());
    let mut missions = Vec::with_capacity(entries.len());
    let mut details = Vec::with_capacity(entries.len());
    for a in entries {
        ids.push(a.id);
        ats.push(a.at);
        kinds.push(a.actor.kind());
        actors.push(a.actor.id().map(|i| i.to_string()));
        actions.push(a.action.as_str());
        tkinds.push(a.target.as_ref().map(|t| t.0.as_str()));
        tids.push(a.target.as_ref().map(|t| t.1.as_str()));
        missions.push(a.mission_id.as_ref().map(|m| m.as_str()));
        details.push(a.details.clone());
    }
    sqlx::query(
        "INSERT INTO audit_log (id, at, actor_kind, actor_id, action, target_kind, target_id, mission_id, details) \
         SELECT * FROM UNNEST($1::uuid[], $2::timestamptz[], $3::text[], $4::text[], $5::text[], \
                              $6::text[], $7::text[], $8::text[], $9::jsonb[])",
    )
    .bind(ids)
    .bind(ats)
    .bind(kinds)
    .bind(actors)
    .bind(actions)
    .bind(tkinds)
    .bind(tids)
    .bind(missions)
    .bind(details)
    .execute(conn)
    .await?;
    Ok(())
}
