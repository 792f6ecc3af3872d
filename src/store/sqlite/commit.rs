//! The commit thread: the planned commit (the send path) runs on a thread that owns a
//! connection of its own, so a batch costs one hand-over, not one per statement.
//!
//! Through sqlx every statement is a round trip between the async task and the
//! connection's worker thread, and each return waits for a runtime worker that is busy
//! with sockets. A batch of messages took eight such trips (begin, three reads, three
//! writes, commit), and under load they cost more than SQLite's own work. Here the
//! whole transaction — read what the planner needs, plan, write, commit — runs in one
//! call on this thread, with prepared statements kept from batch to batch.
//!
//! The thread's connection is a second write connection to the same file. The store
//! holds its write mutex while a commit runs here, so the two never race for SQLite's
//! write lock.

use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::sync::mpsc;
use std::time::Duration;

use anyhow::Context;
use rusqlite::{Connection, TransactionBehavior};
use tokio::sync::oneshot;

use crate::domain::planner::{Load, Plan};
use crate::domain::ports::PlanFn;
use crate::error::{AppError, AppResult};

type Job = Box<dyn FnOnce(&mut Connection) + Send>;

/// The sending side; the thread stops when the last one is dropped.
pub(super) struct Committer {
    jobs: mpsc::Sender<Job>,
}

/// Statements kept prepared (each per-row statement of the commit is one).
const STATEMENT_CACHE: usize = 32;

impl Committer {
    /// Open the connection (the database exists and is migrated) and start the thread.
    /// `backstop_pages`: the log size past which a commit checkpoints it (as on the
    /// store's write connection).
    pub(super) fn open(path: &Path, backstop_pages: u32) -> anyhow::Result<Committer> {
        let mut conn = Connection::open(path)
            .with_context(|| format!("cannot open database {}", path.display()))?;
        configure(&conn, backstop_pages).context("cannot configure the commit connection")?;
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        let (jobs, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("sqlite-commit".into())
            .spawn(move || {
                for job in rx {
                    // A panic inside a job (the planner's, say) drops its transaction,
                    // which rolls it back, and its reply, which the caller sees as an
                    // error; the thread goes on with the next batch.
                    if std::panic::catch_unwind(AssertUnwindSafe(|| job(&mut conn))).is_err() {
                        tracing::error!("a commit panicked; it was rolled back");
                    }
                }
            })
            .context("cannot start the commit thread")?;
        Ok(Committer { jobs })
    }

    /// Run the planned commit on the thread: one transaction that reads what `load`
    /// names, lets `plan` decide, and writes its writes. An `Err` means nothing was
    /// written.
    pub(super) async fn commit(&self, load: Load, plan: PlanFn) -> AppResult<Plan> {
        let (reply, rx) = oneshot::channel();
        let job: Job = Box::new(move |conn| {
            let _ = reply.send(commit(conn, &load, plan));
        });
        let stopped = || AppError::Unavailable("the database writer stopped; retry".into());
        self.jobs.send(job).map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())?
    }
}

/// The same settings as the sqlx connections (see `options` in the parent module): the
/// file is already in WAL mode.
fn configure(conn: &Connection, backstop_pages: u32) -> rusqlite::Result<()> {
    conn.busy_timeout(Duration::from_secs(10))?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    // The working set of the send path: the idempotency and per-conversation indexes
    // and the conversations (see the write connection in the parent module).
    conn.pragma_update(None, "cache_size", -32768)?;
    conn.pragma_update_and_check(None, "wal_autocheckpoint", backstop_pages, |_| Ok(()))?;
    Ok(())
}

fn commit(conn: &mut Connection, load: &Load, plan: PlanFn) -> AppResult<Plan> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let loaded = super::conversations::load(&tx, load)?;
    let before = loaded.conversations.clone();
    let plan = plan(loaded);
    if !plan.writes.is_empty() {
        super::conversations::write(&tx, &plan.writes, &before)?;
    }
    tx.commit()?;
    Ok(plan)
}
