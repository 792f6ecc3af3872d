//! Telegram chats linked to citizens, handled updates, the polling offset, and the
//! conversations whose chat is behind.

use async_trait::async_trait;

use super::people::{CitizenRow, CITIZEN_COLUMNS};
use super::*;
use crate::domain::model::{ChannelBacklog, Citizen};
use crate::domain::ports::TelegramStore;

const OFFSET_KEY: &str = "offset";

#[async_trait]
impl TelegramStore for SqliteStore {
    async fn telegram_citizen(&self, chat_id: i64) -> AppResult<Option<Citizen>> {
        let row: Option<CitizenRow> = sqlx::query_as(&format!(
            "SELECT {CITIZEN_COLUMNS} FROM citizens WHERE id = \
             (SELECT citizen_id FROM telegram_chats WHERE chat_id = ?)"
        ))
        .bind(chat_id)
        .fetch_optional(&self.read)
        .await?;
        row.map(CitizenRow::into_domain).transpose()
    }

    async fn link_telegram_chat(
        &self,
        chat_id: i64,
        citizen: &Citizen,
    ) -> AppResult<(Citizen, bool)> {
        let now = fmt_time(now());
        let (row, created): (CitizenRow, bool) = write_tx!(self, |tx| {
            let existing: Option<CitizenRow> = sqlx::query_as(&format!(
                "SELECT {CITIZEN_COLUMNS} FROM citizens WHERE id = \
                 (SELECT citizen_id FROM telegram_chats WHERE chat_id = ?)"
            ))
            .bind(chat_id)
            .fetch_optional(&mut *tx)
            .await?;
            match existing {
                Some(row) => (row, false),
                None => {
                    sqlx::query(
                        "INSERT INTO citizens (id, external_sub, display_name, locale, country, created_at, updated_at) \
                         VALUES (?, NULL, ?, ?, ?, ?, ?)",
                    )
                    .bind(citizen.id.to_string())
                    .bind(&citizen.display_name)
                    .bind(citizen.locale.as_ref().map(|l| l.as_str().to_string()))
                    .bind(citizen.country.map(|c| c.as_str().to_string()))
                    .bind(&now)
                    .bind(&now)
                    .execute(&mut *tx)
                    .await?;
                    sqlx::query(
                        "INSERT INTO telegram_chats (chat_id, citizen_id, created_at) VALUES (?, ?, ?)",
                    )
                    .bind(chat_id)
                    .bind(citizen.id.to_string())
                    .bind(&now)
                    .execute(&mut *tx)
                    .await?;
                    let row: CitizenRow = sqlx::query_as(&format!(
                        "SELECT {CITIZEN_COLUMNS} FROM citizens WHERE id = ?"
                    ))
                    .bind(citizen.id.to_string())
                    .fetch_one(&mut *tx)
                    .await?;
                    (row, true)
                }
            }
        });
        Ok((row.into_domain()?, created))
    }

    async fn telegram_chat_of(&self, citizen: CitizenId) -> AppResult<Option<i64>> {
        let row: Option<(i64,)> =
            sqlx::query_as("SELECT chat_id FROM telegram_chats WHERE citizen_id = ?")
                .bind(citizen.to_string())
                .fetch_optional(&self.read)
                .await?;
        Ok(row.map(|r| r.0))
    }

    async fn telegram_update_handled(&self, update_id: i64) -> AppResult<bool> {
        let row: Option<(i64,)> =
            sqlx::query_as("SELECT update_id FROM telegram_updates WHERE update_id = ?")
                .bind(update_id)
                .fetch_optional(&self.read)
                .await?;
        Ok(row.is_some())
    }

    async fn mark_telegram_update(&self, update_id: i64, at: Timestamp) -> AppResult<bool> {
        let mut w = self.writer().await;
        let r = sqlx::query(
            "INSERT OR IGNORE INTO telegram_updates (update_id, handled_at) VALUES (?, ?)",
        )
        .bind(update_id)
        .bind(fmt_time(at))
        .execute(&mut *w)
        .await?;
        Ok(r.rows_affected() > 0)
    }

    async fn prune_telegram_updates(&self, before: Timestamp) -> AppResult<u64> {
        let mut w = self.writer().await;
        let r = sqlx::query("DELETE FROM telegram_updates WHERE handled_at < ?")
            .bind(fmt_time(before))
            .execute(&mut *w)
            .await?;
        Ok(r.rows_affected())
    }

    async fn telegram_offset(&self) -> AppResult<i64> {
        let row: Option<(i64,)> = sqlx::query_as("SELECT value FROM telegram_state WHERE key = ?")
            .bind(OFFSET_KEY)
            .fetch_optional(&self.read)
            .await?;
        Ok(row.map_or(0, |r| r.0))
    }

    async fn set_telegram_offset(&self, offset: i64) -> AppResult<()> {
        let mut w = self.writer().await;
        sqlx::query(
            "INSERT INTO telegram_state (key, value) VALUES (?, ?) \
             ON CONFLICT (key) DO UPDATE SET value = MAX(value, excluded.value)",
        )
        .bind(OFFSET_KEY)
        .bind(offset)
        .execute(&mut *w)
        .await?;
        Ok(())
    }

    async fn telegram_backlog(&self, limit: i64) -> AppResult<Vec<ChannelBacklog>> {
        let rows: Vec<(String, i64, i64, i64)> = sqlx::query_as(
            "SELECT c.id, t.chat_id, COALESCE(d.seq, 0), c.last_seq FROM conversations c \
             JOIN telegram_chats t ON t.citizen_id = c.citizen_id \
             LEFT JOIN delivery_cursors d ON d.channel = 'telegram' AND d.conversation_id = c.id \
             WHERE c.channel = 'telegram' AND c.last_seq > COALESCE(d.seq, 0) \
             ORDER BY c.updated_at LIMIT ?",
        )
        .bind(limit)
        .fetch_all(&self.read)
        .await?;
        rows.into_iter()
            .map(|(id, chat_id, cursor, last_seq)| {
                Ok(ChannelBacklog {
                    conversation_id: ConversationId(uuid(&id)?),
                    chat_id,
                    cursor,
                    last_seq,
                })
            })
            .collect()
    }
}
