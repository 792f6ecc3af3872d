//! Image uploads: checked and re-encoded by `lingshi-media` (type from the bytes, size
//! and pixel limits from the header, EXIF and all other metadata stripped, thumbnail),
//! stored content-addressed by SHA-256 in a [`BlobStore`] (a folder under
//! `DATA_DIR/attachments` for one node, the database when several nodes share it), and
//! readable only by the uploader, the participants of a conversation holding the
//! image, and that conversation's mission's agents (admins: all).

use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sha2::{Digest, Sha256};
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::limits::limited;
use super::model::Attachment;
use super::types::*;
use super::{Domain, Principal};
use crate::error::{AppError, AppResult};

/// Where image bytes live, by SHA-256. A seam because one node keeps them in a folder
/// next to its database, while several nodes need a store every one of them reaches.
#[async_trait]
pub trait BlobStore: Send + Sync {
    /// Store `bytes` (if not already there) durably and return their hash.
    async fn put(&self, bytes: Vec<u8>) -> std::io::Result<String>;
    /// The bytes of a blob.
    async fn read(&self, sha: &str) -> std::io::Result<Vec<u8>>;
    /// Remove a blob no upload uses any more (after the store said so).
    async fn remove(&self, sha: &str);
}

/// The hex SHA-256 a blob is stored under.
pub fn sha256_hex(bytes: &[u8]) -> String {
    let digest = Sha256::digest(bytes);
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// Content-addressed blob files in a folder, written atomically (temp file, fsync,
/// rename, fsync of the folder).
#[derive(Clone)]
pub struct Blobs {
    dir: PathBuf,
}

impl Blobs {
    pub fn open(data_dir: &Path) -> std::io::Result<Blobs> {
        let dir = data_dir.join("attachments");
        std::fs::create_dir_all(dir.join("tmp"))?;
        Ok(Blobs { dir })
    }

    /// Where the blob with this hash lives (two-level fan-out keeps folders small).
    fn path(&self, sha: &str) -> PathBuf {
        let (a, b) = sha.split_at(2.min(sha.len()));
        self.dir.join(a).join(b)
    }

    /// Blocking: run it on a blocking thread.
    fn put_blocking(&self, bytes: &[u8]) -> std::io::Result<String> {
        let sha = sha256_hex(bytes);
        let path = self.path(&sha);
        if path.exists() {
            return Ok(sha);
        }
        let parent = path.parent().expect("blob paths have a parent");
        std::fs::create_dir_all(parent)?;
        let tmp = self.dir.join("tmp").join(Uuid::now_v7().to_string());
        {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(bytes)?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, &path)?;
        std::fs::File::open(parent)?.sync_all()?;
        Ok(sha)
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> std::io::Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(std::io::Error::other)?
}

#[async_trait]
impl BlobStore for Blobs {
    async fn put(&self, bytes: Vec<u8>) -> std::io::Result<String> {
        let me = self.clone();
        blocking(move || me.put_blocking(&bytes)).await
    }

    async fn read(&self, sha: &str) -> std::io::Result<Vec<u8>> {
        let path = self.path(sha);
        blocking(move || std::fs::read(path)).await
    }

    async fn remove(&self, sha: &str) {
        if let Err(e) = std::fs::remove_file(self.path(sha)) {
            if e.kind() != std::io::ErrorKind::NotFound {
                tracing::warn!(error = %e, sha, "cannot remove attachment file");
            }
        }
    }
}

/// Where uploads go and how big they may be.
pub struct AttachmentState {
    pub blobs: Arc<dyn BlobStore>,
    pub limits: Arc<lingshi_media::Limits>,
}

impl From<lingshi_media::MediaError> for AppError {
    fn from(e: lingshi_media::MediaError) -> Self {
        use lingshi_media::MediaError as M;
        match e {
            M::TooLarge { .. } | M::TooManyPixels { .. } => AppError::TooLarge(e.to_string()),
            M::Unsupported(_) | M::Corrupt(_) => {
                AppError::UnsupportedMediaType(format!("{e}; send a PNG, JPEG, WebP or GIF image"))
            }
        }
    }
}

/// Which file of an attachment to serve.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    Original,
    Thumbnail,
}

/// The bytes of an attachment and how to label them.
pub struct Download {
    pub id: AttachmentId,
    pub sha256: String,
    pub content_type: String,
    pub bytes: Vec<u8>,
}

impl Domain {
    /// Largest upload accepted.
    pub fn upload_max_bytes(&self) -> usize {
        self.attachments.limits.max_bytes
    }

    /// Check, clean and store an upload of `p` from `ip`. Uploads are limited per
    /// person (count per minute, bytes not yet used in a message), per address (bytes
    /// per hour) and for everyone (bytes not yet used in a message), so nobody can fill
    /// the disk with images they never send.
    pub async fn upload(&self, p: &Principal, ip: IpAddr, bytes: Vec<u8>) -> AppResult<Attachment> {
        let l = &self.config.limits;
        self.limits
            .uploads
            .take(&p.id(), 1.0)
            .map_err(|wait| limited("too many uploads; wait a moment", wait))?;
        self.limits
            .upload_bytes
            .take(&ip, bytes.len() as f64)
            .map_err(|wait| limited("too many upload bytes from this address; try later", wait))?;
        let mine = self.store.unreferenced_upload_bytes(Some(p.id())).await?;
        if mine as u64 + bytes.len() as u64 > l.unreferenced_upload_bytes_per_person {
            return Err(limited(
                "you have uploaded many images that are not in a message yet; send them first",
                60,
            ));
        }
        let all = self.store.unreferenced_upload_bytes(None).await?;
        if all as u64 + bytes.len() as u64 > l.unreferenced_upload_bytes_max {
            tracing::warn!(bytes = all, "unreferenced uploads reached their limit");
            return Err(AppError::Unavailable(
                "uploads are paused for a moment; try again later".into(),
            ));
        }
        let limits = self.attachments.limits.clone();
        let mut img = tokio::task::spawn_blocking(move || lingshi_media::process(&bytes, &limits))
            .await
            .map_err(|e| AppError::Internal(e.into()))??;
        let blobs = &self.attachments.blobs;
        let stored_bytes = img.bytes.len() as i64;
        let sha = blobs
            .put(std::mem::take(&mut img.bytes))
            .await
            .map_err(|e| AppError::Internal(e.into()))?;
        let thumb_sha = blobs
            .put(std::mem::take(&mut img.thumb))
            .await
            .map_err(|e| AppError::Internal(e.into()))?;
        let rec = Attachment {
            id: AttachmentId::new(),
            sha256: sha,
            content_type: img.content_type.to_string(),
            bytes: stored_bytes,
            width: img.width as i64,
            height: img.height as i64,
            thumb_sha256: thumb_sha,
            thumb_content_type: img.thumb_content_type.to_string(),
            uploader_id: p.id(),
            created_at: now(),
        };
        self.store.insert_attachment(&rec).await?;
        tracing::info!(attachment = %rec.id, bytes = rec.bytes, width = rec.width, height = rec.height, "image uploaded");
        Ok(rec)
    }

    /// The attachment if `p` may read it: 404 when unknown, 403 when not theirs to see.
    pub async fn readable_attachment(&self, p: &Principal, id: &str) -> AppResult<Attachment> {
        let id = AttachmentId::parse(id)?;
        let a = self
            .store
            .attachment(id)
            .await?
            .ok_or_else(|| AppError::not_found("attachment"))?;
        if a.uploader_id == p.id() || p.is_admin() {
            return Ok(a);
        }
        let access = p.access();
        for cid in self.store.attachment_conversations(id).await? {
            if let Some(conv) = self.store.conversation(cid).await? {
                if access.allows(&conv) {
                    return Ok(a);
                }
            }
        }
        Err(AppError::forbidden("you cannot see this attachment"))
    }

    /// The bytes of an image or its thumbnail for `p`.
    pub async fn download(&self, p: &Principal, id: &str, variant: Variant) -> AppResult<Download> {
        let a = self.readable_attachment(p, id).await?;
        let (sha, content_type) = match variant {
            Variant::Original => (a.sha256, a.content_type),
            Variant::Thumbnail => (a.thumb_sha256, a.thumb_content_type),
        };
        let bytes = self.attachments.blobs.read(&sha).await.map_err(|e| {
            AppError::Internal(anyhow::anyhow!("attachment blob {sha} unreadable: {e}"))
        })?;
        Ok(Download {
            id: a.id,
            sha256: sha,
            content_type,
            bytes,
        })
    }

    /// Remove uploads older than `ttl` that no message references, and their files.
    pub async fn collect_unreferenced_uploads(&self, ttl: Duration) -> AppResult<usize> {
        let cutoff = now() - chrono::Duration::from_std(ttl).unwrap_or_default();
        let unused = self.store.collect_unreferenced_attachments(cutoff).await?;
        for sha in &unused {
            self.attachments.blobs.remove(sha).await;
        }
        if !unused.is_empty() {
            tracing::info!(files = unused.len(), "removed unreferenced uploads");
        }
        Ok(unused.len())
    }

    pub(super) fn spawn_upload_gc(&self, stop: CancellationToken) {
        let ttl = Duration::from_secs(self.config.limits.unreferenced_upload_ttl_secs);
        let every =
            Duration::from_secs(3600.min(self.config.limits.unreferenced_upload_ttl_secs.max(1)));
        let d = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tick.tick() => {
                        if let Err(e) = d.collect_unreferenced_uploads(ttl).await {
                            e.log();
                        }
                    }
                }
            }
        });
    }
}
