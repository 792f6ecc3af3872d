//! Uploaded images.

use async_trait::async_trait;

use super::*;
use crate::domain::model::Attachment;
use crate::domain::ports::AttachmentStore;

#[derive(sqlx::FromRow)]
struct AttachmentRow {
    id: String,
    sha256: String,
    content_type: String,
    bytes: i64,
    width: i64,
    height: i64,
    thumb_sha256: String,
    thumb_content_type: String,
    uploader_id: String,
    created_at: String,
}

#[async_trait]
impl AttachmentStore for SqliteStore {
    async fn insert_attachment(&self, a: &Attachment) -> AppResult<()> {
        let mut w = self.writer().await;
        sqlx::query(
            "INSERT INTO attachments (id, sha256, content_type, bytes, width, height, thumb_sha256, \
             thumb_content_type, uploader_id, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(a.id.to_string())
        .bind(&a.sha256)
        .bind(&a.content_type)
        .bind(a.bytes)
        .bind(a.width)
        .bind(a.height)
        .bind(&a.thumb_sha256)
        .bind(&a.thumb_content_type)
        .bind(a.uploader_id.to_string())
        .bind(fmt_time(a.created_at))
        .execute(&mut *w)
        .await?;
        Ok(())
    }

    async fn attachment(&self, id: AttachmentId) -> AppResult<Option<Attachment>> {
        let row: Option<AttachmentRow> = sqlx::query_as(
            "SELECT id, sha256, content_type, bytes, width, height, thumb_sha256, thumb_content_type, \
             uploader_id, created_at FROM attachments WHERE id = ?",
        )
        .bind(id.to_string())
        .fetch_optional(&self.read)
        .await?;
        row.map(|r| {
            Ok(Attachment {
                id: AttachmentId(uuid(&r.id)?),
                sha256: r.sha256,
                content_type: r.content_type,
                bytes: r.bytes,
                width: r.width,
                height: r.height,
                thumb_sha256: r.thumb_sha256,
                thumb_content_type: r.thumb_content_type,
                uploader_id: PersonId(uuid(&r.uploader_id)?),
                created_at: time(&r.created_at)?,
            })
        })
        .transpose()
    }

    async fn unreferenced_upload_bytes(&self, uploader: Option<PersonId>) -> AppResult<i64> {
        let unreferenced =
            "NOT EXISTS (SELECT 1 FROM message_attachments m WHERE m.attachment_id = a.id)";
        let (n,): (Option<i64>,) = match uploader {
            Some(u) => {
                sqlx::query_as(&format!(
                    "SELECT SUM(bytes) FROM attachments a WHERE uploader_id = ? AND {unreferenced}"
                ))
                .bind(u.to_string())
                .fetch_one(&self.read)
                .await?
            }
            None => {
                sqlx::query_as(&format!(
                    "SELECT SUM(bytes) FROM attachments a WHERE {unreferenced}"
                ))
                .fetch_one(&self.read)
                .await?
            }
        };
        Ok(n.unwrap_or(0))
    }

    async fn attachment_conversations(&self, id: AttachmentId) -> AppResult<Vec<ConversationId>> {
        let rows: Vec<(String,)> = sqlx::query_as(
            "SELECT DISTINCT conversation_id FROM message_attachments WHERE attachment_id = ?",
        )
        .bind(id.to_string())
        .fetch_all(&self.read)
        .await?;
        rows.into_iter()
            .map(|(c,)| Ok(ConversationId(uuid(&c)?)))
            .collect()
    }

    async fn collect_unreferenced_attachments(&self, cutoff: Timestamp) -> AppResult<Vec<String>> {
        Ok(write_tx!(self, |tx| {
            let doomed: Vec<(String, String, String)> = sqlx::query_as(
                "SELECT id, sha256, thumb_sha256 FROM attachments a WHERE created_at < ? \
                 AND NOT EXISTS (SELECT 1 FROM message_attachments m WHERE m.attachment_id = a.id) LIMIT 1000",
            )
            .bind(fmt_time(cutoff))
            .fetch_all(&mut *tx)
            .await?;
            let mut hashes = Vec::new();
            for (id, sha, thumb) in &doomed {
                sqlx::query("DELETE FROM attachments WHERE id = ?")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                hashes.push(sha.clone());
                hashes.push(thumb.clone());
            }
            hashes.sort();
            hashes.dedup();
            let mut unused = Vec::new();
            for h in hashes {
                let (n,): (i64,) = sqlx::query_as(
                    "SELECT COUNT(*) FROM attachments WHERE sha256 = ? OR thumb_sha256 = ?",
                )
                .bind(&h)
                .bind(&h)
                .fetch_one(&mut *tx)
                .await?;
                if n == 0 {
                    unused.push(h);
                }
            }
            unused
        }))
    }
}
