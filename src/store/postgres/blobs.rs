//! Image bytes in the database (`blobs`, `bytea`), for several nodes.
//!
//! Why the database and not a shared folder: every node already reaches it, a
//! `pg_dump` backs images up together with the messages that reference them, and
//! nothing else (NFS, an object store) has to be run. Images are at most
//! `limits.image_max_bytes` before re-encoding and usually far smaller after it, so
//! the rows stay moderate; a deployment with heavy image traffic can put this seam on
//! an object store instead.

use async_trait::async_trait;
use sqlx::PgPool;

use crate::domain::attachments::{sha256_hex, BlobStore};

/// How long bytes stay after the last upload that stored them, even when unused: an
/// upload stores its bytes before it records the attachment, and the clean-up of an
/// older unused copy of the same bytes must not remove them in between.
const GRACE: &str = "15 minutes";

#[derive(Clone)]
pub struct PgBlobs {
    pool: PgPool,
}

impl PgBlobs {
    pub fn new(pool: PgPool) -> Self {
        PgBlobs { pool }
    }
}

fn io(e: sqlx::Error) -> std::io::Error {
    std::io::Error::other(e)
}

#[async_trait]
impl BlobStore for PgBlobs {
    async fn put(&self, bytes: Vec<u8>) -> std::io::Result<String> {
        let (sha, bytes) = tokio::task::spawn_blocking(move || (sha256_hex(&bytes), bytes))
            .await
            .map_err(std::io::Error::other)?;
        // Bytes already there are not sent again; only their clock moves.
        let touched = sqlx::query("UPDATE blobs SET touched_at = now() WHERE sha256 = $1")
            .bind(&sha)
            .execute(&self.pool)
            .await
            .map_err(io)?;
        if touched.rows_affected() == 0 {
            sqlx::query(
                "INSERT INTO blobs (sha256, bytes, touched_at) VALUES ($1, $2, now()) \
                 ON CONFLICT (sha256) DO UPDATE SET touched_at = now()",
            )
            .bind(&sha)
            .bind(bytes)
            .execute(&self.pool)
            .await
            .map_err(io)?;
        }
        Ok(sha)
    }

    async fn read(&self, sha: &str) -> std::io::Result<Vec<u8>> {
        let row: Option<(Vec<u8>,)> = sqlx::query_as("SELECT bytes FROM blobs WHERE sha256 = $1")
            .bind(sha)
            .fetch_optional(&self.pool)
            .await
            .map_err(io)?;
        row.map(|r| r.0).ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::NotFound, "no such blob in the database")
        })
    }

    async fn remove(&self, sha: &str) {
        let r = sqlx::query(&format!(
            "DELETE FROM blobs b WHERE b.sha256 = $1 AND b.touched_at < now() - interval '{GRACE}' \
             AND NOT EXISTS (SELECT 1 FROM attachments a WHERE a.sha256 = $1 OR a.thumb_sha256 = $1)"
        ))
        .bind(sha)
        .execute(&self.pool)
        .await;
        if let Err(e) = r {
            tracing::warn!(error = %e, sha, "cannot remove attachment bytes");
        }
    }
}
