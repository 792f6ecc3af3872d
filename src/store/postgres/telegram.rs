//! Telegram chats linked to citizens, handled updates, the polling offset, and the
//! conversations whose chat is behind.

use async_trait::async_trait;

use super::people::{CitizenRow, CITIZEN_COLUMNS};
use super::*;
use crate::domain::model::{ChannelBacklog, Citizen};
use crate::domain::ports::TelegramStore;

const OFFSET_KEY: &str = "offset";

#[async_trait]
impl TelegramStore for PgStore {
    async fn telegram_citizen(&self, chat_id: i64) -> AppResult<Option<Citizen>> {
        let row: Option<CitizenRow> = sqlx::query_as(&format!(
            "SELECT {CITIZEN_COLUMNS} FROM citizens WHERE id = \
             (SELECT citizen_id FROM telegram_chats WHERE chat_id = $1)"
        ))
        .bind(chat_id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(CitizenRow::into_domain).transpose()
    }

    async fn link_telegram_chat(
        &self,
        chat_id: i64,
        citizen: &Citizen,
    ) -> AppResult<(Citizen, bool)> {
        let at = now();
        let mut tx = self.pool.begin().await?;
        // Two nodes seeing a chat's first updates at once (webhook mode) both try to
        // link it; a transaction-scoped advisory lock on the chat id makes the second
        // one wait and then find the first one's citizen. (Single-key advisory locks
        // share one space with the people's keys; a collision only makes two
        // unrelated transactions wait for each other.)
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(chat_id)
            .execute(&mut *tx)
            .await?;
        let existing: Option<CitizenRow> = sqlx::query_as(&format!(
            "SELECT {CITIZEN_COLUMNS} FROM citizens WHERE id = \
             (SELECT citizen_id FROM telegram_chats WHERE chat_id = $1)"
        ))
        .bind(chat_id)
        .fetch_optional(&mut *tx)
        .await?;
        let (row, created) = match existing {
            Some(row) => (row, false),
            None => {
                let row: CitizenRow = sqlx::query_as(&format!(
                    "INSERT INTO citizens (id, external_sub, display_name, locale, country, created_at, updated_at) \
                     VALUES ($1, NULL, $2, $3, $4, $5, $5) RETURNING {CITIZEN_COLUMNS}"
                ))
                .bind(citizen.id.0)
                .bind(&citizen.display_name)
                .bind(citizen.locale.as_ref().map(|l| l.as_str()))
                .bind(citizen.country.as_ref().map(|c| c.as_str()))
                .bind(at)
                .fetch_one(&mut *tx)
                .await?;
                sqlx::query(
                    "INSERT INTO telegram_chats (chat_id, citizen_id, created_at) VALUES ($1, $2, $3)",
                )
                .bind(chat_id)
                .bind(citizen.id.0)
                .bind(at)
                .execute(&mut *tx)
                .await?;
                (row, true)
            }
        };
        tx.commit().await?;
        Ok((row.into_domain()?, created))
    }

    async fn telegram_chat_of(&self, citizen: CitizenId) -> AppResult<Option<i64>> {
        let row: Option<(i64,)> =
            sqlx::query_as("SELECT chat_id FROM telegram_chats WHERE citizen_id = $1")
                .bind(citizen.0)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.map(|r| r.0))
    }

    async fn telegram_update_handled(&self, update_id: i64) -> AppResult<bool> {
        let row: Option<(i64,)> =
            sqlx::query_as("SELECT update_id FROM telegram_updates WHERE update_id = $1")
                .bind(update_id)
                .fetch_optional(&self.pool)
                .await?;
        Ok(row.is_some())
    }

    async fn mark_telegram_update(&self, update_id: i64, at: Timestamp) -> AppResult<bool> {
        let r = sqlx::query(
            "INSERT INTO telegram_updates (update_id, handled_at) VALUES ($1, $2) \
             ON CONFLICT (update_id) DO NOTHING",
        )
        .bind(update_id)
        .bind(at)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected() > 0)
    }

    async fn prune_telegram_updates(&self, before: Timestamp) -> AppResult<u64> {
        let r = sqlx::query("DELETE FROM telegram_updates WHERE handled_at < $1")
            .bind(before)
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected())
    }

    async fn telegram_offset(&self) -> AppResult<i64> {
        let row: Option<(i64,)> = sqlx::query_as("SELECT value FROM telegram_state WHERE key = $1")
            .bind(OFFSET_KEY)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map_or(0, |r| r.0))
    }

    async fn set_telegram_offset(&self, offset: i64) -> AppResult<()> {
        sqlx::query(
            "INSERT INTO telegram_state (key, value) VALUES ($1, $2) \
             ON CONFLICT (key) DO UPDATE SET value = GREATEST(telegram_state.value, excluded.value)",
        )
        .bind(OFFSET_KEY)
        .bind(offset)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn telegram_backlog(&self, limit: i64) -> AppResult<Vec<ChannelBacklog>> {
        let rows: Vec<(Uuid, i64, i64, i64)> = sqlx::query_as(
            "SELECT c.id, t.chat_id, COALESCE(d.seq, 0), c.last_seq FROM conversations c \
             JOIN telegram_chats t ON t.citizen_id = c.citizen_id \
             LEFT JOIN delivery_cursors d ON d.channel = 'telegram' AND d.conversation_id = c.id \
             WHERE c.channel = 'telegram' AND c.last_seq > COALESCE(d.seq, 0) \
             ORDER BY c.updated_at LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(id, chat_id, cursor, last_seq)| ChannelBacklog {
                conversation_id: ConversationId(id),
                chat_id,
                cursor,
                last_seq,
            })
            .collect())
    }
}
