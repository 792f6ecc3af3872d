//! The SQLite backend: one file under the data dir, WAL, `synchronous=FULL`, foreign
//! keys on, a busy timeout for the command line writing while the server runs.
//!
//! Reads go through a small pool. Every write of this process is taken under one async
//! mutex, so writers never race each other for SQLite's single write lock (which would
//! turn into `SQLITE_BUSY` on deferred transactions), and the commit writer can put many
//! messages in one fsync. Under that mutex a write runs on one of two connections: the
//! sqlx write connection for everything else, or, for the planned commit of the send
//! path, the commit thread's own connection (see [`commit`]), which runs a whole batch
//! in one hand-over instead of one per statement.
//!
//! Split by aggregate: conversations and messages, people and sessions, workflow and
//! audit, attachments, knowledge base, outbox, Telegram chats.

mod attachments;
mod commit;
mod conversations;
mod escalations;
mod kb;
mod outbox;
mod people;
mod telegram;
mod workflow;

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Connection, SqlitePool};
use tokio::sync::{Mutex, MutexGuard};

use crate::domain::model::AuditEntry;
use crate::domain::ports::Store;
use crate::domain::types::*;
use crate::error::{AppError, AppResult};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// The write connection, held while a write (or a batch of them) runs.
type WriteConn<'a> = MutexGuard<'a, SqliteConnection>;

#[derive(Clone)]
pub struct SqliteStore {
    read: SqlitePool,
    write: Arc<Mutex<SqliteConnection>>,
    /// The planned commit's own connection and thread (see [`commit`]).
    committer: Arc<commit::Committer>,
    /// Stops the checkpointer when the last clone of the store is dropped.
    _checkpointer: Arc<Checkpointer>,
}

/// How often the background checkpointer folds the WAL into the database file. At
/// 10,000 msg/s the log grows by about 100 MB/s. A page that several commits rewrote
/// within one period is copied into the database file once, so a longer period copies
/// less: at 50 ms the checkpoints' writes and fsyncs competed with the commits' own
/// (the commit thread waited in the block layer's writeback throttling) and runs at
/// 10,000 msg/s tipped into a growing queue in about half the tries; at 500 ms none
/// did (see BENCHMARKS.md, round 4). On an idle database a passive checkpoint only
/// reads the log's header.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(500);
/// Pages of SQLite's default 4 KiB per MiB: the backstop is configured in MiB.
const PAGES_PER_MIB: u32 = 256;

/// The WAL is checkpointed on a connection of its own, in the background, instead of
/// by whichever commit crosses SQLite's auto-checkpoint threshold: that commit would
/// copy pages into the database file and fsync it while every message queued behind it
/// waits. A passive checkpoint never blocks the writer.
///
/// The log starts over (the next commit writes from its first frame) only when a
/// commit begins with every frame already copied, which a writer that never pauses
/// never gives a passive checkpoint. And the log must start over often: appending
/// past the end of its file costs each commit's fsync far more than overwriting frames
/// already on disk (with a log left to grow to 4 GiB, 50–75 commits in 15 s at
/// 10,000 msg/s took over 50 ms, against 0–5 with the 128 MiB backstop below). So once
/// the log holds more than [`RESTART_AFTER_MIB`], a tick ends with one pass under the
/// store's write lock: passes without the lock first copy nearly everything, then the
/// pass under the lock (no commit in flight) copies the few frames committed since,
/// and the next commit starts the log over. That pass is the only time commits wait
/// on the checkpointer (round 5 in BENCHMARKS.md).
///
/// The write connection keeps SQLite's own checkpoint as a backstop
/// (`sqlite_wal_max_mib`), for when the log cannot start over this way: another
/// process writing without pause (a bulk import), or a reader still on the log when
/// the commit begins. Past it, a commit copies what is left and the next one starts
/// the log over.
struct Checkpointer(tokio::task::JoinHandle<()>);

/// The log size past which the checkpointer makes the next commit start it over.
const RESTART_AFTER_MIB: u32 = 16;
/// Before the pass under the lock, passes without it run until one finds at most this
/// many frames committed since the one before (at most [`CATCH_UP_PASSES`] of them),
/// so that the pass under the lock usually copies a few milliseconds' worth of
/// commits. It is taken even when the commits outran every pass: skipping it would
/// let the log grow, and a growing log costs more (see [`Checkpointer`]).
const CATCH_UP_FRAMES: i64 = 256;
const CATCH_UP_PASSES: usize = 4;

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What a passive checkpoint reports: the frames in the log (-1 when the database is
/// not in WAL mode).
async fn checkpoint(conn: &mut SqliteConnection) -> sqlx::Result<i64> {
    let (_busy, log, _copied): (i64, i64, i64) = sqlx::query_as("PRAGMA wal_checkpoint(PASSIVE)")
        .fetch_one(conn)
        .await?;
    Ok(log)
}

impl Checkpointer {
    /// `restart_after`: the log's length, in frames, past which a tick ends with the
    /// pass under the write lock.
    fn start(
        mut conn: SqliteConnection,
        write: Arc<Mutex<SqliteConnection>>,
        restart_after: i64,
    ) -> Self {
        Checkpointer(tokio::spawn(async move {
            let mut tick = tokio::time::interval(CHECKPOINT_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            // A failure is logged when it starts and when it ends, not every tick.
            let mut failing = false;
            loop {
                tick.tick().await;
                match Self::tick(&mut conn, &write, restart_after).await {
                    Err(e) if !failing => {
                        failing = true;
                        tracing::warn!(error = %e, "WAL checkpoint failed; retrying every tick");
                    }
                    Ok(()) if failing => {
                        failing = false;
                        tracing::info!("WAL checkpoint succeeded again");
                    }
                    _ => {}
                }
            }
        }))
    }

    /// One tick: a passive pass; if the log is long, more passes without the lock until
    /// one finds few new frames (or [`CATCH_UP_PASSES`] have run), then one under the
    /// write lock, after which the next commit starts the log over (unless a reader is
    /// still on it: then a later tick tries again).
    async fn tick(
        conn: &mut SqliteConnection,
        write: &Mutex<SqliteConnection>,
        restart_after: i64,
    ) -> sqlx::Result<()> {
        let mut log = checkpoint(conn).await?;
        if log <= restart_after {
            return Ok(());
        }
        for _ in 0..CATCH_UP_PASSES {
            let now = checkpoint(conn).await?;
            let fresh = now - log;
            log = now;
            if fresh <= CATCH_UP_FRAMES {
                break;
            }
        }
        let _no_commit_in_flight = write.lock().await;
        checkpoint(conn).await?;
        Ok(())
    }
}

fn options(path: &Path) -> SqliteConnectOptions {
    SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Full)
        .foreign_keys(true)
        .busy_timeout(Duration::from_secs(10))
        .pragma("temp_store", "memory")
}

impl SqliteStore {
    /// Open (creating if needed) `DATA_DIR/lingshi.db` and apply pending migrations.
    /// `wal_max_mib` is the backstop (see [`Checkpointer`]): past that much log a
    /// commit checkpoints it itself. Keep it above what the busiest second writes in
    /// one CHECKPOINT_EVERY (about 50 MiB at 10,000 msg/s), so that it rarely fires on
    /// the send path.
    pub async fn open(data_dir: &Path, wal_max_mib: u32) -> anyhow::Result<Self> {
        let backstop_pages = wal_max_mib.max(1) * PAGES_PER_MIB;
        std::fs::create_dir_all(data_dir)
            .with_context(|| format!("cannot create data dir {}", data_dir.display()))?;
        let path = data_dir.join("lingshi.db");
        let opts = options(&path);
        let mut write = SqliteConnection::connect_with(&opts)
            .await
            .with_context(|| format!("cannot open database {}", path.display()))?;
        MIGRATOR
            .run(&mut write)
            .await
            .context("cannot apply database migrations")?;
        // The writer's working set (the idempotency and per-conversation indexes, the
        // conversations) outgrows SQLite's default 2 MiB page cache quickly; every miss
        // is a read of the file in the middle of a commit.
        sqlx::query("PRAGMA cache_size = -32768")
            .execute(&mut write)
            .await
            .context("cannot configure the write connection")?;
        // The checkpointer keeps the log short; the write connection checkpoints only
        // when the log has grown past the backstop anyway (see the checkpointer).
        sqlx::query(&format!("PRAGMA wal_autocheckpoint = {backstop_pages}"))
            .execute(&mut write)
            .await
            .context("cannot configure the write connection")?;
        let checkpoint = SqliteConnection::connect_with(&opts)
            .await
            .with_context(|| format!("cannot open database {}", path.display()))?;
        let read = SqlitePoolOptions::new()
            .min_connections(1)
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(opts.read_only(true))
            .await
            .context("cannot open database read pool")?;
        let committer = commit::Committer::open(&path, backstop_pages)?;
        let write = Arc::new(Mutex::new(write));
        Ok(SqliteStore {
            read,
            _checkpointer: Arc::new(Checkpointer::start(
                checkpoint,
                write.clone(),
                i64::from(RESTART_AFTER_MIB * PAGES_PER_MIB),
            )),
            write,
            committer: Arc::new(committer),
        })
    }

    async fn writer(&self) -> WriteConn<'_> {
        self.write.lock().await
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn ping(&self) -> AppResult<()> {
        sqlx::query("SELECT 1").execute(&self.read).await?;
        Ok(())
    }

    async fn close(&self) {
        self.read.close().await;
        let mut w = self.write.lock().await;
        // Fold the WAL back into the main file so a restart opens fast.
        let _ = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
            .execute(&mut *w)
            .await;
    }
}

// ----- values to and from columns ----------------------------------------------------

/// A stored value that does not parse: the database was changed behind the service's
/// back. Reported, never read as a default (which could be written back).
fn corrupt(what: &str, value: &str) -> AppError {
    AppError::Internal(anyhow::anyhow!("corrupt {what} in the database: {value:?}"))
}

fn time(s: &str) -> AppResult<Timestamp> {
    parse_time(s).ok_or_else(|| corrupt("time", s))
}

fn opt_time(s: Option<&str>) -> AppResult<Option<Timestamp>> {
    s.map(time).transpose()
}

fn uuid(s: &str) -> AppResult<uuid::Uuid> {
    uuid::Uuid::try_parse(s).map_err(|_| corrupt("id", s))
}

fn word<T: FromStr>(what: &str, s: &str) -> AppResult<T> {
    s.parse().map_err(|_| corrupt(what, s))
}

fn json<T: serde::de::DeserializeOwned>(what: &str, s: &str) -> AppResult<T> {
    serde_json::from_str(s).map_err(|_| corrupt(what, s))
}

fn country(s: Option<&str>) -> AppResult<Option<CountryCode>> {
    s.map(|c| CountryCode::parse(c).map_err(|_| corrupt("country", c)))
        .transpose()
}

fn to_json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("values serialise")
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(d) if d.is_unique_violation())
}

const INSERT_AUDIT: &str = "INSERT INTO audit_log (id, at, actor_kind, actor_id, action, target_kind, target_id, mission_id, details) \
     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)";

/// Insert an audit entry inside a transaction.
async fn insert_audit(conn: &mut SqliteConnection, a: &AuditEntry) -> Result<(), sqlx::Error> {
    sqlx::query(INSERT_AUDIT)
        .bind(a.id.to_string())
        .bind(fmt_time(a.at))
        .bind(a.actor.kind())
        .bind(a.actor.id().map(|i| i.to_string()))
        .bind(&a.action)
        .bind(a.target.as_ref().map(|t| t.0.as_str()))
        .bind(a.target.as_ref().map(|t| t.1.as_str()))
        .bind(a.mission_id.as_ref().map(|m| m.as_str()))
        .bind(a.details.to_string())
        .execute(conn)
        .await?;
    Ok(())
}

/// [`insert_audit`] inside the commit thread's transaction.
fn insert_audit_sync(conn: &rusqlite::Connection, a: &AuditEntry) -> rusqlite::Result<()> {
    conn.prepare_cached(INSERT_AUDIT)?
        .execute(rusqlite::params![
            a.id.to_string(),
            fmt_time(a.at),
            a.actor.kind(),
            a.actor.id().map(|i| i.to_string()),
            a.action,
            a.target.as_ref().map(|t| t.0.as_str()),
            a.target.as_ref().map(|t| t.1.as_str()),
            a.mission_id.as_ref().map(|m| m.as_str()),
            a.details.to_string(),
        ])?;
    Ok(())
}

/// Run `f` in a `BEGIN IMMEDIATE` transaction on the write connection.
macro_rules! write_tx {
    ($store:expr, |$tx:ident| $body:block) => {{
        let mut w = $store.writer().await;
        let mut $tx = sqlx::Connection::begin_with(&mut *w, "BEGIN IMMEDIATE").await?;
        let out = $body;
        $tx.commit().await?;
        out
    }};
}
use write_tx;

#[cfg(test)]
mod tests {
    use super::*;

    /// A writer that never pauses still gets its log started over: the file stops
    /// growing. Without the pass under the write lock, a passive checkpoint never
    /// catches up with the last commit, and the log grows by every commit.
    #[tokio::test]
    async fn a_writer_that_never_pauses_still_starts_the_log_over() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("t.db");
        let opts = options(&path);
        let mut write = SqliteConnection::connect_with(&opts).await.expect("open");
        // No checkpoint by the writer itself (the store's backstop, set out of reach).
        sqlx::query("PRAGMA wal_autocheckpoint = 1000000")
            .execute(&mut write)
            .await
            .expect("pragma");
        sqlx::query("CREATE TABLE t (b BLOB NOT NULL)")
            .execute(&mut write)
            .await
            .expect("create");
        let checkpoint = SqliteConnection::connect_with(&opts).await.expect("open");
        let write = Arc::new(Mutex::new(write));
        let _checkpointer = Checkpointer::start(checkpoint, write.clone(), 64);
        // Back-to-back commits of three pages and more each, for eight ticks.
        let until = tokio::time::Instant::now() + CHECKPOINT_EVERY * 8;
        let mut commits = 0u64;
        while tokio::time::Instant::now() < until {
            let mut w = write.lock().await;
            sqlx::query("INSERT INTO t (b) VALUES (randomblob(10000))")
                .execute(&mut *w)
                .await
                .expect("insert");
            drop(w);
            commits += 1;
        }
        let written = commits * 3 * 4096;
        let wal = std::fs::metadata(path.with_extension("db-wal"))
            .expect("wal")
            .len();
        assert!(commits > 100, "only {commits} commits");
        assert!(
            wal < written / 3,
            "the log is {wal} bytes after {commits} commits ({written} bytes of pages at least)"
        );
    }
}
