//! The outbox, worker leases and delivery cursors.

use async_trait::async_trait;
use sqlx::PgConnection;
use uuid::Uuid;

use super::*;
use crate::domain::model::{NewOutboxRow, OutboxRow, OutboxStats};
use crate::domain::ports::OutboxStore;

const OUTBOX_COLUMNS: &str = "id, destination, event_type, payload, created_at, attempts, \
     next_attempt_at, delivered_at, last_error, subject";

#[derive(sqlx::FromRow)]
struct Row {
    id: Uuid,
    destination: String,
    event_type: String,
    payload: serde_json::Value,
    created_at: Timestamp,
    attempts: i64,
    next_attempt_at: Timestamp,
    delivered_at: Option<Timestamp>,
    last_error: Option<String>,
    subject: Option<String>,
}

impl Row {
    fn into_domain(self) -> OutboxRow {
        OutboxRow {
            id: OutboxId(self.id),
            destination: self.destination,
            event_type: self.event_type,
            payload: self.payload,
            created_at: self.created_at,
            attempts: self.attempts,
            next_attempt_at: self.next_attempt_at,
            delivered_at: self.delivered_at,
            last_error: self.last_error,
            subject: self.subject,
        }
    }
}

/// Insert rows inside the caller's transaction (the change they announce).
pub(super) async fn insert_rows(conn: &mut PgConnection, rows: &[NewOutboxRow]) -> AppResult<()> {
    if rows.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO outbox (id, destination, event_type, payload, created_at, attempts, next_attempt_at, subject) \
         SELECT id, destination, event_type, payload, created_at, 0, created_at, subject \
         FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::jsonb[], $5::timestamptz[], $6::text[]) \
              AS r(id, destination, event_type, payload, created_at, subject)",
    )
    .bind(rows.iter().map(|r| r.id.0).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.destination.as_str()).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.event_type.as_str()).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.payload.clone()).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.created_at).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.subject.as_deref()).collect::<Vec<_>>())
    .execute(conn)
    .await?;
    Ok(())
}

#[async_trait]
impl OutboxStore for PgStore {
    async fn enqueue_outbox(&self, rows: &[NewOutboxRow]) -> AppResult<()> {
        let mut conn = self.pool.acquire().await?;
        insert_rows(&mut conn, rows).await
    }

    async fn due_outbox(&self, now: Timestamp, limit: i64) -> AppResult<Vec<OutboxRow>> {
        let rows: Vec<Row> = sqlx::query_as(&format!(
            "SELECT {OUTBOX_COLUMNS} FROM outbox WHERE delivered_at IS NULL AND next_attempt_at <= $1 \
             ORDER BY next_attempt_at, id LIMIT $2"
        ))
        .bind(now)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(Row::into_domain).collect())
    }

    async fn outbox_delivered(&self, id: OutboxId, at: Timestamp) -> AppResult<()> {
        sqlx::query(
            "UPDATE outbox SET delivered_at = $1, attempts = attempts + 1 WHERE id = $2 AND delivered_at IS NULL",
        )
        .bind(at)
        .bind(id.0)
        .execute(&self.pool)
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
        sqlx::query(
            "UPDATE outbox SET attempts = $1, next_attempt_at = $2, last_error = $3 \
             WHERE id = $4 AND delivered_at IS NULL",
        )
        .bind(attempts)
        .bind(next_attempt_at)
        .bind(error)
        .bind(id.0)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn outbox_row(&self, id: OutboxId) -> AppResult<Option<OutboxRow>> {
        let row: Option<Row> = sqlx::query_as(&format!(
            "SELECT {OUTBOX_COLUMNS} FROM outbox WHERE id = $1"
        ))
        .bind(id.0)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(Row::into_domain))
    }

    async fn outbox_rows_about(&self, subject: &str) -> AppResult<Vec<OutboxRow>> {
        let rows: Vec<Row> = sqlx::query_as(&format!(
            "SELECT {OUTBOX_COLUMNS} FROM outbox WHERE subject = $1 ORDER BY created_at, id"
        ))
        .bind(subject)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(Row::into_domain).collect())
    }

    async fn outbox_stats(&self) -> AppResult<OutboxStats> {
        let (pending, failing, oldest_pending): (i64, i64, Option<Timestamp>) = sqlx::query_as(
            "SELECT COUNT(*), COUNT(*) FILTER (WHERE attempts > 0), MIN(created_at) FROM outbox \
             WHERE delivered_at IS NULL",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(OutboxStats {
            pending,
            failing,
            oldest_pending,
        })
    }

    /// Nodes' clocks may disagree: the lease is timed by the database's clock, for the
    /// length the caller asked for.
    async fn acquire_lease(&self, name: &str, holder: &str, until: Timestamp) -> AppResult<bool> {
        let ttl_ms = (until - now()).num_milliseconds();
        let r = sqlx::query(
            "INSERT INTO leases (name, holder, expires_at) \
             VALUES ($1, $2, clock_timestamp() + $3 * interval '1 millisecond') \
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires_at = excluded.expires_at \
             WHERE leases.holder = excluded.holder OR leases.expires_at < clock_timestamp()",
        )
        .bind(name)
        .bind(holder)
        .bind(ttl_ms as f64)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() > 0)
    }

    async fn cursor(&self, channel: &str, conversation: ConversationId) -> AppResult<i64> {
        let row: Option<(i64,)> = sqlx::query_as(
            "SELECT seq FROM delivery_cursors WHERE channel = $1 AND conversation_id = $2",
        )
        .bind(channel)
        .bind(conversation.0)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map_or(0, |r| r.0))
    }

    async fn advance_cursor(
        &self,
        channel: &str,
        conversation: ConversationId,
        seq: i64,
    ) -> AppResult<()> {
        sqlx::query(
            "INSERT INTO delivery_cursors (channel, conversation_id, seq, updated_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (channel, conversation_id) DO UPDATE SET \
             seq = GREATEST(delivery_cursors.seq, excluded.seq), updated_at = excluded.updated_at",
        )
        .bind(channel)
        .bind(conversation.0)
        .bind(seq)
        .bind(now())
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
