//! The outbox, worker leases and delivery cursors.

use async_trait::async_trait;
use sqlx::{QueryBuilder, Sqlite, SqliteConnection};

use super::*;
use crate::domain::model::{NewOutboxRow, OutboxRow, OutboxStats};
use crate::domain::ports::OutboxStore;

const OUTBOX_COLUMNS: &str = "id, destination, event_type, payload, created_at, attempts, \
     next_attempt_at, delivered_at, last_error, subject";

#[derive(sqlx::FromRow)]
struct Row {
    id: String,
    destination: String,
    event_type: String,
    payload: String,
    created_at: String,
    attempts: i64,
    next_attempt_at: String,
    delivered_at: Option<String>,
    last_error: Option<String>,
    subject: Option<String>,
}

impl Row {
    fn into_domain(self) -> AppResult<OutboxRow> {
        Ok(OutboxRow {
            id: OutboxId(uuid(&self.id)?),
            destination: self.destination,
            event_type: self.event_type,
            payload: json("outbox payload", &self.payload)?,
            created_at: time(&self.created_at)?,
            attempts: self.attempts,
            next_attempt_at: time(&self.next_attempt_at)?,
            delivered_at: opt_time(self.delivered_at.as_deref())?,
            last_error: self.last_error,
            subject: self.subject,
        })
    }
}

/// Insert rows inside the caller's transaction (the change they announce).
pub(super) async fn insert_rows(
    conn: &mut SqliteConnection,
    rows: &[NewOutboxRow],
) -> AppResult<()> {
    for chunk in rows.chunks(500) {
        let mut q: QueryBuilder<Sqlite> = QueryBuilder::new(
            "INSERT INTO outbox (id, destination, event_type, payload, created_at, attempts, next_attempt_at, subject) ",
        );
        q.push_values(chunk, |mut b, r| {
            b.push_bind(r.id.to_string())
                .push_bind(&r.destination)
                .push_bind(&r.event_type)
                .push_bind(r.payload.to_string())
                .push_bind(fmt_time(r.created_at))
                .push_bind(0i64)
                .push_bind(fmt_time(r.created_at))
                .push_bind(&r.subject);
        });
        q.build().execute(&mut *conn).await?;
    }
    Ok(())
}

/// [`insert_rows`] inside the commit thread's transaction.
pub(super) fn insert_rows_sync(
    conn: &rusqlite::Connection,
    rows: &[NewOutboxRow],
) -> AppResult<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let mut st = conn.prepare_cached(
        "INSERT INTO outbox (id, destination, event_type, payload, created_at, attempts, next_attempt_at, subject) \
         VALUES (?1, ?2, ?3, ?4, ?5, 0, ?5, ?6)",
    )?;
    for r in rows {
        st.execute(rusqlite::params![
            r.id.to_string(),
            r.destination,
            r.event_type,
            r.payload.to_string(),
            fmt_time(r.created_at),
            r.subject,
        ])?;
    }
    Ok(())
}

#[async_trait]
impl OutboxStore for SqliteStore {
    async fn enqueue_outbox(&self, rows: &[NewOutboxRow]) -> AppResult<()> {
        let mut w = self.writer().await;
        insert_rows(&mut w, rows).await
    }

    async fn due_outbox(&self, now: Timestamp, limit: i64) -> AppResult<Vec<OutboxRow>> {
        let rows: Vec<Row> = sqlx::query_as(&format!(
            "SELECT {OUTBOX_COLUMNS} FROM outbox WHERE delivered_at IS NULL AND next_attempt_at <= ? \
             ORDER BY next_attempt_at, id LIMIT ?"
        ))
        .bind(fmt_time(now))
        .bind(limit)
        .fetch_all(&self.read)
        .await?;
        rows.into_iter().map(Row::into_domain).collect()
    }

    async fn outbox_delivered(&self, id: OutboxId, at: Timestamp) -> AppResult<()> {
        let mut w = self.writer().await;
        sqlx::query("UPDATE outbox SET delivered_at = ?, attempts = attempts + 1 WHERE id = ? AND delivered_at IS NULL")
            .bind(fmt_time(at))
            .bind(id.to_string())
            .execute(&mut *w)
            .await?;
        Ok(())
    }

    async fn outbox_failed(
        &self,
        id: OutboxId,
        attempts: i64,
        next_attempt_at: Timestamp,
        error: &str,
    ) -> AppResult<()> {
        let error: String = error.chars().take(500).collect();
        let mut w = self.writer().await;
        sqlx::query(
            "UPDATE outbox SET attempts = ?, next_attempt_at = ?, last_error = ? \
             WHERE id = ? AND delivered_at IS NULL",
        )
        .bind(attempts)
        .bind(fmt_time(next_attempt_at))
        .bind(error)
        .bind(id.to_string())
        .execute(&mut *w)
        .await?;
        Ok(())
    }

    async fn outbox_row(&self, id: OutboxId) -> AppResult<Option<OutboxRow>> {
        let row: Option<Row> =
            sqlx::query_as(&format!("SELECT {OUTBOX_COLUMNS} FROM outbox WHERE id = ?"))
                .bind(id.to_string())
                .fetch_optional(&self.read)
                .await?;
        row.map(Row::into_domain).transpose()
    }

    async fn outbox_rows_about(&self, subject: &str) -> AppResult<Vec<OutboxRow>> {
        let rows: Vec<Row> = sqlx::query_as(&format!(
            "SELECT {OUTBOX_COLUMNS} FROM outbox WHERE subject = ? ORDER BY created_at, id"
        ))
        .bind(subject)
        .fetch_all(&self.read)
        .await?;
        rows.into_iter().map(Row::into_domain).collect()
    }

    async fn outbox_stats(&self) -> AppResult<OutboxStats> {
        let (pending, failing, oldest): (i64, i64, Option<String>) = sqlx::query_as(
            "SELECT COUNT(*), COALESCE(SUM(attempts > 0), 0), MIN(created_at) FROM outbox \
             WHERE delivered_at IS NULL",
        )
        .fetch_one(&self.read)
        .await?;
        Ok(OutboxStats {
            pending,
            failing,
            oldest_pending: opt_time(oldest.as_deref())?,
        })
    }

    async fn acquire_lease(&self, name: &str, holder: &str, until: Timestamp) -> AppResult<bool> {
        let now = fmt_time(now());
        let mut w = self.writer().await;
        let r = sqlx::query(
            "INSERT INTO leases (name, holder, expires_at) VALUES (?, ?, ?) \
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at \
             WHERE leases.holder = excluded.holder OR leases.expires_at < ?",
        )
        .bind(name)
        .bind(holder)
        .bind(fmt_time(until))
        .bind(&now)
        .execute(&mut *w)
        .await?;
        Ok(r.rows_affected() > 0)
    }

    async fn cursor(&self, channel: &str, conversation: ConversationId) -> AppResult<i64> {
        let row: Option<(i64,)> = sqlx::query_as(
            "SELECT seq FROM delivery_cursors WHERE channel = ? AND conversation_id = ?",
        )
        .bind(channel)
        .bind(conversation.to_string())
        .fetch_optional(&self.read)
        .await?;
        Ok(row.map_or(0, |r| r.0))
    }

    async fn advance_cursor(
        &self,
        channel: &str,
        conversation: ConversationId,
        seq: i64,
    ) -> AppResult<()> {
        let mut w = self.writer().await;
        sqlx::query(
            "INSERT INTO delivery_cursors (channel, conversation_id, seq, updated_at) VALUES (?, ?, ?, ?) \
             ON CONFLICT (channel, conversation_id) DO UPDATE SET seq = MAX(seq, excluded.seq), \
             updated_at = excluded.updated_at",
        )
        .bind(channel)
        .bind(conversation.to_string())
        .bind(seq)
        .bind(fmt_time(now()))
        .execute(&mut *w)
        .await?;
        Ok(())
    }
}
