//! Uploaded images (their records; the bytes are in `blobs.rs`).

use async_trait::async_trait;
use uuid::Uuid;

use super::*;
use crate::domain::model::Attachment;
use crate::domain::ports::AttachmentStore;

#[derive(sqlx::FromRow)]
struct AttachmentRow {
    id: Uuid,
    sha256: String,
    content_type: String,
    bytes: i64,
    width: i64,
    height: i64,
    thumb_sha256: String,
    thumb_content_type: String,
    uploader_id: Uuid,
    created_at: Timestamp,
}

#[async_trait]
impl AttachmentStore for PgStore {
    async fn insert_attachment(&self, a: &Attachment) -> AppResult<()> {
        sqlx::query(
            "INSERT INTO attachments (id, sha256, content_type, bytes, width, height, thumb_sha256, \
             thumb_content_type, uploader_id, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(a.id.0)
        .bind(&a.sha256)
        .bind(&a.content_type)
        .bind(a.bytes)
        .bind(a.width)
        .bind(a.height)
        .bind(&a.thumb_sha256)
        .bind(&a.thumb_content_type)
        .bind(a.uploader_id.0)
        .bind(a.created_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn attachment(&self, id: AttachmentId) -> AppResult<Option<Attachment>> {
        let row: Option<AttachmentRow> = sqlx::query_as(
            "SELECT id, sha256, content_type, bytes, width, height, thumb_sha256, thumb_content_type, \
             uploader_id, created_at FROM attachments WHERE id = $1",
        )
        .bind(id.0)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| Attachment {
            id: AttachmentId(r.id),
            sha256: r.sha256,
            content_type: r.content_type,
            bytes: r.bytes,
            width: r.width,
            height: r.height,
            thumb_sha256: r.thumb_sha256,
            thumb_content_type: r.thumb_content_type,
            uploader_id: PersonId(r.uploader_id),
            created_at: r.created_at,
        }))
    }

    async fn unreferenced_upload_bytes(&self, uploader: Option<PersonId>) -> AppResult<i64> {
        let (n,): (Option<i64>,) = sqlx::query_as(
            "SELECT SUM(bytes)::bigint FROM attachments a \
             WHERE ($1::uuid IS NULL OR uploader_id = $1) \
             AND NOT EXISTS (SELECT 1 FROM message_attachments m WHERE m.attachment_id = a.id)",
        )
        .bind(uploader.map(|u| u.0))
        .fetch_one(&self.pool)
        .await?;
        Ok(n.unwrap_or(0))
    }

    async fn attachment_conversations(&self, id: AttachmentId) -> AppResult<Vec<ConversationId>> {
        let rows: Vec<(Uuid,)> = sqlx::query_as(
            "SELECT DISTINCT conversation_id FROM message_attachments WHERE attachment_id = $1",
        )
        .bind(id.0)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|(c,)| ConversationId(c)).collect())
    }

    async fn collect_unreferenced_attachments(&self, cutoff: Timestamp) -> AppResult<Vec<String>> {
        let mut tx = self.pool.begin().await?;
        // SKIP LOCKED: two nodes cleaning up at once split the work instead of waiting.
        let doomed: Vec<(String, String)> = sqlx::query_as(
            "DELETE FROM attachments WHERE id IN ( \
               SELECT id FROM attachments a WHERE created_at < $1 \
               AND NOT EXISTS (SELECT 1 FROM message_attachments m WHERE m.attachment_id = a.id) \
               LIMIT 1000 FOR UPDATE SKIP LOCKED) \
             RETURNING sha256, thumb_sha256",
        )
        .bind(cutoff)
        .fetch_all(&mut *tx)
        .await?;
        let mut hashes: Vec<String> = doomed.into_iter().flat_map(|(a, b)| [a, b]).collect();
        hashes.sort();
        hashes.dedup();
        let unused: Vec<(String,)> = sqlx::query_as(
            "SELECT h FROM unnest($1::text[]) AS h WHERE NOT EXISTS \
             (SELECT 1 FROM attachments a WHERE a.sha256 = h OR a.thumb_sha256 = h)",
        )
        .bind(&hashes)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(unused.into_iter().map(|(h,)| h).collect())
    }
}
